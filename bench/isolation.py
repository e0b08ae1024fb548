"""What running the SDKs in worker processes costs: ``providers.isolation`` inline vs process.

Per setup (every provider path: each cloud's ASR and TTS models, both roles on one daemon)
an inline and a process daemon run side by side against the fake providers (each answering
after a fixed delay), taking turns by blocks of 10 requests. Prints, per setup: the time to
listening, TTS request -> first audio-chunk, ASR audio-stop -> transcript (the audio sent
in real time), CPU seconds per request, the memory of the daemon and its worker processes
together (RSS, its peak, and PSS: shared pages counted once) and of the daemon alone, and, for
process isolation, the worker round trip of each role's last 200 answers from the daemon's
status line (what their requests and answers took between the processes, the provider's own
time left out) and how long after a worker is killed the next request is answered. What the
worker adds is printed with the 95% bootstrap interval of its p95: a difference inside it is
the machine's noise, not the worker's.
The fakes send a TTS answer's audio all at once unless ``--pace`` says how fast a cloud speaks:
a burst keeps the SDK's threads busy while the first audio is handed on.
Run: .venv/bin/python -m bench.isolation [--runs N] [--delay S] [--pace P] [--asr-seconds S]
[--setups azure,cosyvoice,realtime,http]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.paths import Fakes, asr_latency, config, running_fakes, summary, tts_latency
from bench.proc import family_cpu_seconds, family_mb, family_pss_mb, status_mb
from bench.speech_endpoint import percentile
from satellite.daemon import STATUS_EVERY_S
from tests.e2e.daemon import (
    Daemon,
    status_file,
    status_line,
    worker_round_trip_ms,
    workers_of,
)
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


def round_trip(workdir: Path) -> str:
    """The round trip to the worker and back per role, as the daemon's status line has it
    (the requests' time between the processes, the provider's own time left out)."""
    status = status_line(workdir)
    figures = []
    for role in ("TTS", "ASR"):
        found = worker_round_trip_ms(status, role)
        text = f"p50 {found[0]:.2f} ms, p95 {found[1]:.2f} ms" if found else "none in the status"
        figures.append(f"{role} {text}")
    return "round trip " + ", ".join(figures)


@dataclass(frozen=True)
class Setup:
    """One cloud's provider paths, both roles on one daemon: ``models`` picks the paths."""

    key: str  # its name for --setups
    label: str
    provider: str
    models: dict[str, str] = field(default_factory=dict)


SETUPS = [
    Setup("azure", "Azure", "azure"),
    Setup("cosyvoice", "DashScope CosyVoice + paraformer", "dashscope"),
    Setup(
        "realtime",
        "DashScope Qwen realtime",
        "dashscope",
        {"tts": "qwen3-tts-flash-realtime", "asr": "qwen3-asr-flash-realtime"},
    ),
    Setup("http", "DashScope Qwen HTTP TTS + paraformer", "dashscope", {"tts": "qwen3-tts-flash"}),
]


ISOLATIONS = ("inline", "process")
# The daemons take turns by blocks of requests, each after a pause: the other daemon's work
# after its last request (a warm connection reopened) must not fall into this one's.
BLOCK = 10
SETTLE_S = 0.5


@dataclass
class Figures:
    """What one daemon measured: TTS request -> first audio-chunk and ASR audio-stop ->
    transcript, in ms."""

    tts: list[float] = field(default_factory=list)
    asr: list[float] = field(default_factory=list)


async def bench(fakes: Fakes, workdir: Path, setup: Setup, args) -> dict[str, Figures]:
    """Both isolations side by side, taking turns: whatever else the machine does slows both
    alike, so what the worker adds stands out of the noise."""
    daemons: dict[str, Daemon] = {}
    ready: dict[str, float] = {}
    figures = {isolation: Figures() for isolation in ISOLATIONS}
    try:
        for isolation in ISOLATIONS:  # one at a time: neither slows the other's start
            text = config(
                fakes, setup.provider, setup.provider, 1, models=setup.models, isolation=isolation
            )
            runtime = status_file(workdir / isolation).parent
            runtime.mkdir(parents=True, exist_ok=True)
            daemons[isolation] = daemon = Daemon(
                workdir / isolation, text, env={"RUNTIME_DIRECTORY": str(runtime)}
            )
            ready[isolation] = daemon.wait_listening(60)
        await asyncio.sleep(1.0)  # warm connections open after the server listens
        started = {name: family_cpu_seconds(d.process.pid) for name, d in daemons.items()}
        for block in range(0, args.runs, BLOCK):
            runs = min(BLOCK, args.runs - block)
            order = ISOLATIONS if block % (2 * BLOCK) == 0 else ISOLATIONS[::-1]
            for isolation in order:
                await asyncio.sleep(SETTLE_S)
                port = daemons[isolation].port
                figures[isolation].tts += (await tts_latency(port, runs, None))[0]
                figures[isolation].asr += await asr_latency(port, runs, args.asr_seconds)
        await asyncio.sleep(STATUS_EVERY_S + 0.5)  # the last answers in the status line
        for isolation, daemon in daemons.items():
            pid = daemon.process.pid
            cpu = (family_cpu_seconds(pid) - started[isolation]) / (2 * args.runs)
            rss, peak, pss = family_mb(pid, "VmRSS"), family_mb(pid, "VmHWM"), family_pss_mb(pid)
            own = status_mb(pid, "VmRSS")
            killed = ""
            if isolation == "process":
                killed = f" | {round_trip(workdir / isolation)}"
                killed += f" | killed worker -> next transcript {await recovery_ms(daemon):.0f} ms"
            print(
                f"  {isolation:7} ready {ready[isolation] * 1000:5.0f} ms"
                f" | TTS {summary(figures[isolation].tts)} | ASR {summary(figures[isolation].asr)}"
                f" | CPU {cpu:.3f} s/request | RSS {rss:5.1f} MB (daemon {own:5.1f}),"
                f" peak {peak:5.1f} MB, PSS {pss:5.1f} MB{killed}"
            )
    finally:
        for daemon in daemons.values():
            daemon.stop()
    return figures


RESAMPLES = 1000


def p95_interval(inline: list[float], process: list[float]) -> tuple[float, float]:
    """The 95% bootstrap interval of the p95 difference: what this many requests can tell
    apart from the machine's noise."""
    rng = random.Random(0)
    differences = sorted(
        percentile(rng.choices(process, k=len(process)), 0.95)
        - percentile(rng.choices(inline, k=len(inline)), 0.95)
        for _ in range(RESAMPLES)
    )
    return differences[int(0.025 * RESAMPLES)], differences[int(0.975 * RESAMPLES) - 1]


def added(inline: list[float], process: list[float]) -> str:
    """What the worker adds to a latency, at p50 / p95, with the p95's bootstrap interval."""
    p50 = statistics.median(process) - statistics.median(inline)
    p95 = percentile(process, 0.95) - percentile(inline, 0.95)
    low, high = p95_interval(inline, process)
    return f"{p50:+.1f} / {p95:+.1f} ms (p95 {low:+.1f} to {high:+.1f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="requests per figure")
    parser.add_argument("--delay", type=float, default=0.05, help="each fake's answer delay, s")
    parser.add_argument(
        "--pace",
        type=float,
        default=0.0,
        help="the fakes' seconds per second of TTS audio (0: all of it at once; 0.2: 5x real time)",
    )
    parser.add_argument(
        "--asr-seconds", type=float, default=1.0, help="audio per ASR request, sent in real time"
    )
    keys = [setup.key for setup in SETUPS]
    parser.add_argument(
        "--setups",
        type=lambda text: text.split(","),
        default=keys,
        help=f"comma-separated, from {','.join(keys)} (default: all)",
    )
    args = parser.parse_args()
    if unknown := set(args.setups) - set(keys):
        parser.error(f"unknown setup {', '.join(sorted(unknown))}; choose from {', '.join(keys)}")
    with running_fakes(args.delay, args.pace) as fakes, tempfile.TemporaryDirectory() as tmp:
        print(
            f"providers.isolation ({os.cpu_count()} CPUs, fake delay {args.delay} s,"
            f" pace {args.pace:g} s per s of audio)"
        )
        for setup in (setup for setup in SETUPS if setup.key in args.setups):
            print(setup.label)
            figures = await bench(fakes, Path(tmp), setup, args)
            inline, process = figures["inline"], figures["process"]
            print(
                f"  the worker adds, p50 / p95: TTS {added(inline.tts, process.tts)},"
                f" ASR {added(inline.asr, process.asr)}"
            )


if __name__ == "__main__":
    asyncio.run(main())
