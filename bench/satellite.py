"""Satellite benchmark: the daemon process as a voice satellite alone (speech endpoint off).

The mic is PyAudio reading 16 kHz mono s16 through the file-backed ALSA device (the daemon
paces it to real time), the speaker a file. A client plays Home Assistant: it connects, sends
``run-satellite`` and, after a warm-up, the daemon's CPU time is measured over ``--seconds``
of wall (= mic audio) time, once with a silent mic and once with spoken commands separated by
silence. Prints CPU seconds per minute of mic audio, the pipeline runs opened, the peak RSS
and whether any cloud provider SDK was loaded.
Run: .venv/bin/python -m bench.satellite [--seconds N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.satellite import RunSatellite

from tests.audio.alsa import use_file_alsa
from tests.audio.speech import BYTES_PER_SECOND, silence, speech_pcm
from tests.e2e.daemon import Daemon
from tests.wyoming_client import connect

WARMUP_SECONDS = 3.0
GAP_SECONDS = 2.0  # silence after each utterance
HANGOVER_MS = 800  # the config's default: the run ends this long after the speech
CPU_TARGET = 0.6  # CPU seconds per minute of mic audio
RSS_TARGET_MB = 45.0
COMMANDS = (
    "turn on the kitchen light",
    "what time is it",
    "set a timer for five minutes",
    "what is the weather like today",
)
# Mapped files that only a provider SDK brings: Azure's native library; DashScope is pure
# Python, so its name rarely shows, but its websocket stack's (aiohttp) extensions do.
PROVIDER_MAPS = ("dashscope", "Microsoft.CognitiveServices", "/aiohttp/")
_COUNTED = {"run-pipeline", "audio-chunk", "audio-stop"}  # the events HA's client counts
PROVIDER_LOG = re.compile(r"provider|dashscope|azure|speech endpoint", re.IGNORECASE)


def config_text(sink: Path) -> str:
    return f"""
log_level: info
speech: {{enabled: false}}
satellite:
  enabled: true
  uri: LISTEN_URI
  name: Bench Satellite
  start_stage: asr
  mic: {{backend: pyaudio, rate: 16000, width: 2, channels: 1}}
  speaker: {{backend: file, file: "{sink}"}}
  vad: {{hangover_ms: {HANGOVER_MS}}}
"""


def speech_source(lead_seconds: float, window_seconds: float) -> tuple[bytes, int]:
    """Silence for ``lead_seconds``, then commands each followed by GAP_SECONDS of silence,
    all ending (run hangover included) within ``window_seconds``; then silence. Returns the
    PCM and the number of utterances."""
    pcm = bytearray(silence(lead_seconds))
    end = (lead_seconds + window_seconds - 1.0) * BYTES_PER_SECOND
    count = 0
    while True:
        spoken = speech_pcm(COMMANDS[count % len(COMMANDS)]) + silence(GAP_SECONDS)
        if len(pcm) + len(spoken) > end:
            break
        pcm += spoken
        count += 1
    # The ALSA file capture repeats the last period after the source: end on silence.
    return bytes(pcm + silence(5.0)), count


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of the whole process, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks  # utime, stime


def thread_count(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[17])


def status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def provider_traces(daemon: Daemon) -> list[str]:
    """Log lines about providers and mapped provider libraries; empty when none is loaded."""
    maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
    found = [f"maps: {name}" for name in PROVIDER_MAPS if name.lower() in maps.lower()]
    found += [f"log: {line}" for line in daemon.logs().splitlines() if PROVIDER_LOG.search(line)]
    return found


async def wait_for_log(daemon: Daemon, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.logs():
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in the daemon's log:\n{daemon.logs()}")
        await asyncio.sleep(0.05)


class EventLog:
    """Reads every event the satellite sends, with the time it arrived."""

    def __init__(self, client: AsyncTcpClient) -> None:
        self.events: list[tuple[float, str, int]] = []  # (monotonic, type, payload bytes)
        self.closed = False
        self._task = asyncio.create_task(self._read(client))

    async def _read(self, client: AsyncTcpClient) -> None:
        while (event := await client.read_event()) is not None:
            self.events.append((time.monotonic(), event.type, len(event.payload or b"")))
        self.closed = True

    def between(self, start: float, end: float) -> tuple[Counter[str], int]:
        """Event counts and audio bytes received in [start, end)."""
        window = [(kind, size) for at, kind, size in self.events if start <= at < end]
        audio = sum(size for kind, size in window if kind == "audio-chunk")
        return Counter(kind for kind, _ in window), audio

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError, ValueError):
            await self._task


@dataclass
class Result:
    name: str
    seconds: float
    user: float
    system: float
    counts: Counter[str]
    audio_seconds: float
    utterances: int | None
    peak_rss_mb: float
    rss_mb: float
    threads: int
    providers: list[str]

    @property
    def cpu_per_minute(self) -> float:
        return (self.user + self.system) / self.seconds * 60


async def run_scenario(
    name: str, source: bytes, utterances: int | None, seconds: float, workdir: Path
) -> Result:
    with pytest.MonkeyPatch.context() as env:  # ALSA_CONFIG_PATH, inherited by the daemon
        use_file_alsa(workdir, env, source)
        daemon = Daemon(workdir, config_text(workdir / "speaker.raw"))
    client: AsyncTcpClient | None = None
    events: EventLog | None = None
    try:
        daemon.wait_listening()
        client = await connect(daemon.port)
        events = EventLog(client)
        await client.write_event(RunSatellite().event())
        await wait_for_log(daemon, "started the satellite")
        await wait_for_log(daemon, "microphone: reading")
        await asyncio.sleep(WARMUP_SECONDS)
        pid = daemon.process.pid
        user0, system0 = cpu_seconds(pid)
        started = time.monotonic()
        await asyncio.sleep(seconds)
        user1, system1 = cpu_seconds(pid)
        ended = time.monotonic()
        if events.closed or daemon.process.poll() is not None:
            raise RuntimeError(f"the daemon dropped the client or exited:\n{daemon.logs()}")
        counts, audio_bytes = events.between(started, ended)
        result = Result(
            name=name,
            seconds=ended - started,
            user=user1 - user0,
            system=system1 - system0,
            counts=counts,
            audio_seconds=audio_bytes / BYTES_PER_SECOND,
            utterances=utterances,
            peak_rss_mb=status_mb(pid, "VmHWM"),
            rss_mb=status_mb(pid, "VmRSS"),
            threads=thread_count(pid),
            providers=provider_traces(daemon),
        )
    finally:
        if events is not None:
            await events.stop()
        if client is not None:
            with contextlib.suppress(OSError):
                await client.disconnect()
        code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"the daemon exited with {code}:\n{daemon.logs()}")
    return result


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def report(results: list[Result]) -> None:
    print(
        f"voice-satellite satellite benchmark ({os.cpu_count()} CPUs; pyaudio mic through the"
        f" file-backed ALSA device, file speaker; {results[0].seconds:.1f} s measured after"
        f" {WARMUP_SECONDS:g} s warm-up)"
    )
    rows: list[tuple[str, list[str], str]] = [
        (
            "CPU-s per audio minute",
            [f"{r.cpu_per_minute:.3f} {verdict(r.cpu_per_minute <= CPU_TARGET)}" for r in results],
            f"<= {CPU_TARGET:g}",
        ),
        ("  user / system CPU-s", [f"{r.user:.2f} / {r.system:.2f}" for r in results], ""),
        (
            "pipeline runs opened",
            [
                f"{r.counts['run-pipeline']}"
                + ("" if r.utterances is None else f" of {r.utterances} spoken")
                for r in results
            ],
            "",
        ),
        (
            "audio-chunk / audio-stop",
            [f"{r.counts['audio-chunk']} / {r.counts['audio-stop']}" for r in results],
            "",
        ),
        ("audio streamed to HA", [f"{r.audio_seconds:.1f} s" for r in results], ""),
        (
            "other events from satellite",
            [str(sum(n for k, n in r.counts.items() if k not in _COUNTED)) for r in results],
            "",
        ),
        (
            "peak RSS (VmHWM)",
            [f"{r.peak_rss_mb:.1f} MB {verdict(r.peak_rss_mb <= RSS_TARGET_MB)}" for r in results],
            f"<= {RSS_TARGET_MB:g} MB",
        ),
        ("  RSS now / threads", [f"{r.rss_mb:.1f} MB / {r.threads}" for r in results], ""),
        (
            "provider SDK loaded",
            [f"{'yes' if r.providers else 'no'} {verdict(not r.providers)}" for r in results],
            "no",
        ),
    ]
    print(f"  {'':<28}" + "".join(f"{r.name:>18}" for r in results) + "  target")
    for label, values, target in rows:
        print((f"  {label:<28}" + "".join(f"{v:>18}" for v in values) + f"  {target}").rstrip())
    for r in results:
        for trace in r.providers:
            print(f"  {r.name}: provider trace: {trace}")
    checked = ", ".join(PROVIDER_MAPS)
    print(f"  (provider check: the daemon log and /proc/PID/maps for {checked})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured wall time per scenario (>= 5)"
    )
    args = parser.parse_args()
    seconds = max(5.0, args.seconds)
    lead = WARMUP_SECONDS + 1.0  # the speech starts about 1 s into the measurement
    speech, utterances = speech_source(lead, seconds - 1.0)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, spoken in (
            ("idle", silence(2.0), None),
            ("speech", speech, utterances),
        ):
            workdir = Path(tmp, name)
            workdir.mkdir()
            results.append(await run_scenario(name, source, spoken, seconds, workdir))
    report(results)


if __name__ == "__main__":
    asyncio.run(main())
