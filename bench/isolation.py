"""What running the SDKs in worker processes costs: ``providers.isolation`` inline vs process.

The daemon process runs against the fake providers (each answering after a fixed delay),
once per isolation and setup (every provider path: each cloud's ASR and TTS models, both
roles on one daemon). Prints, per setup: the time to listening, TTS request -> first
audio-chunk, ASR audio-stop -> transcript (the audio sent in real time), CPU seconds per
request, the RSS of the daemon and its workers together after the requests and at its peak
(and of the daemon alone), and, for process isolation, how long after a worker is killed the
next request is answered.
Run: .venv/bin/python -m bench.isolation [--runs N] [--delay S] [--asr-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.paths import Fakes, asr_latency, config, running_fakes, summary, tts_latency
from bench.proc import family_cpu_seconds, family_mb, status_mb
from bench.speech_endpoint import percentile
from tests.e2e.daemon import Daemon, workers_of
from tests.wyoming_client import connect, read, send_utterance


async def recovery_ms(daemon: Daemon) -> float:
    """From SIGKILL of the worker to the next transcript (the request sent at once)."""
    (worker,) = workers_of(daemon.process.pid).values()
    killed = time.monotonic()
    os.kill(worker, signal.SIGKILL)
    await asyncio.sleep(0.05)  # the request after the death, not during it
    client = await connect(daemon.port)
    await send_utterance(client, bytes(3200), 3200, language="zh")
    event = await read(client)
    await client.disconnect()
    assert event.type == "transcript", event.data
    return (time.monotonic() - killed) * 1000


@dataclass(frozen=True)
class Setup:
    """One cloud's provider paths, both roles on one daemon: ``models`` picks the paths."""

    label: str
    provider: str
    models: dict[str, str] = field(default_factory=dict)


SETUPS = [
    Setup("Azure", "azure"),
    Setup("DashScope CosyVoice + paraformer", "dashscope"),
    Setup(
        "DashScope Qwen realtime",
        "dashscope",
        {"tts": "qwen3-tts-flash-realtime", "asr": "qwen3-asr-flash-realtime"},
    ),
    Setup("DashScope Qwen HTTP TTS + paraformer", "dashscope", {"tts": "qwen3-tts-flash"}),
]


@dataclass
class Figures:
    """What one daemon measured: TTS request -> first audio-chunk and ASR audio-stop ->
    transcript, in ms."""

    tts: list[float]
    asr: list[float]


async def bench(fakes: Fakes, workdir: Path, setup: Setup, isolation: str, args) -> Figures:
    text = config(
        fakes, setup.provider, setup.provider, 1, models=setup.models, isolation=isolation
    )
    daemon = Daemon(workdir, text)
    try:
        ready = daemon.wait_listening(60)
        await asyncio.sleep(1.0)  # warm connections open after the server listens
        pid = daemon.process.pid
        started = family_cpu_seconds(pid)
        to_chunk, _ = await tts_latency(daemon.port, args.runs, None)
        latency = await asr_latency(daemon.port, args.runs, args.asr_seconds)
        cpu = (family_cpu_seconds(pid) - started) / (2 * args.runs)
        rss, peak = family_mb(pid, "VmRSS"), family_mb(pid, "VmHWM")
        own = status_mb(pid, "VmRSS")
        recovered = await recovery_ms(daemon) if isolation == "process" else None
    finally:
        daemon.stop()
    print(
        f"  {isolation:7} ready {ready * 1000:5.0f} ms | TTS {summary(to_chunk)}"
        f" | ASR {summary(latency)} | CPU {cpu:.3f} s/request | RSS {rss:5.1f} MB"
        f" (daemon {own:5.1f}), peak {peak:5.1f} MB"
        + ("" if recovered is None else f" | killed worker -> next transcript {recovered:.0f} ms")
    )
    return Figures(to_chunk, latency)


def added(inline: list[float], process: list[float]) -> str:
    """What the worker adds to a latency, at p50 / p95."""
    p50 = statistics.median(process) - statistics.median(inline)
    p95 = percentile(process, 0.95) - percentile(inline, 0.95)
    return f"{p50:+.1f} / {p95:+.1f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="requests per figure")
    parser.add_argument("--delay", type=float, default=0.05, help="each fake's answer delay, s")
    parser.add_argument(
        "--asr-seconds", type=float, default=1.0, help="audio per ASR request, sent in real time"
    )
    args = parser.parse_args()
    with running_fakes(args.delay) as fakes, tempfile.TemporaryDirectory() as tmp:
        print(f"providers.isolation ({os.cpu_count()} CPUs, fake delay {args.delay} s)")
        for setup in SETUPS:
            print(setup.label)
            inline = await bench(fakes, Path(tmp), setup, "inline", args)
            process = await bench(fakes, Path(tmp), setup, "process", args)
            print(
                f"  the worker adds, p50 / p95: TTS {added(inline.tts, process.tts)},"
                f" ASR {added(inline.asr, process.asr)}"
            )


if __name__ == "__main__":
    asyncio.run(main())
