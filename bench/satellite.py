"""Satellite benchmark: the daemon as a voice satellite, per wake engine, side by side.

The daemon process runs the satellite alone (speech endpoint off), once per engine and
scenario.

Engines (columns): ``none`` (the VAD alone opens runs, start_stage asr), ``micro``
(okay_nabu), ``micro+clean`` (micro after WebRTC noise suppression 2 and auto gain 31) and
``openwakeword`` (okay_nabu). Scenarios (rows):

- ``silence``: the mic hears silence.
- ``speech``: continuous speech without the wake word (``continuous_speech``): the runs and
  audio that reach HA without a wake word.
- ``commands``: "okay nabu" (voices en-us, en-gb, en-gb-x-rp in turn), 0.5 s, a command, 3 s of
  silence, over and over. The mic is a command (``bench/paced_mic.py``) writing the PCM in
  real time, in 100 ms pieces as a sound card delivers it and cut at each wake word's end,
  and logging the wall-clock time at which it wrote the end of each wake word;
  each ``run-pipeline`` is paired with the latest wake word begun before it and counts as a
  detection when that word ended at most 3 s before (else a false activation).

In silence and speech the mic is PyAudio reading 16 kHz mono s16 through the file-backed ALSA
device (the daemon paces it to real time) unless ``--mic command``; the speaker is a file. A
client plays Home Assistant: it connects, sends ``run-satellite`` and pings 2 s after each
pong. After a warm-up the daemon's CPU time is measured over ``--seconds`` of wall (= mic
audio) time. Prints CPU seconds per minute of mic audio, the runs and audio reaching HA, the
wake-word detection rate and latency, the peak RSS, whether any cloud provider SDK was loaded
and the warnings in the daemon's log.
Run: .venv/bin/python -m bench.satellite [--seconds N] [--engines none,micro,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.ping import Ping, Pong
from wyoming.satellite import RunSatellite

from bench.proc import cpu_seconds, status_mb, thread_count
from bench.speech_endpoint import percentile
from bench.unit import unit_environment
from tests.audio.alsa import use_file_alsa
from tests.audio.speech import BYTES_PER_SECOND, silence
from tests.audio.wake_fixtures import continuous_speech, wake_phrase
from tests.e2e.daemon import Daemon
from tests.wyoming_client import connect

WARMUP_SECONDS = 3.0
HANGOVER_MS = 800  # the config's default: the run ends this long after the speech
PING_EVERY_S = 2.0  # HA pings this long after each pong
PONG_DEADLINE_S = 5.0
PAIR_WINDOW_S = 3.0  # a run-pipeline this long after a wake word's end belongs to it
COMMAND_PAUSE_S = 0.5  # between the wake word and the command
AFTER_COMMAND_S = 3.0  # silence after each command
SOURCE_TAIL_S = 15.0  # source audio beyond the warm-up and the measured window
MIC_PIECE_MS = 100  # the command mic writes this much at a time, as a sound card's period
PACED_MIC = Path(__file__).with_name("paced_mic.py")
WAKE_MODEL = "okay_nabu"
WAKE_TEXT = "okay nabu"
WAKE_VOICES = ("en-us", "en-gb", "en-gb-x-rp")
COMMANDS = (
    "turn on the kitchen light",
    "what time is it",
    "set a timer for five minutes",
    "what is the weather like today",
)
# Mapped files that only a provider SDK brings: Azure's native library; DashScope is pure
# Python, so its name rarely shows, but its websocket stack's (aiohttp) extensions do.
PROVIDER_MAPS = ("dashscope", "Microsoft.CognitiveServices", "/aiohttp/")
PROVIDER_LOG = re.compile(r"provider|dashscope|azure|speech endpoint", re.IGNORECASE)
LOG_PROBLEM = re.compile(r" (WARNING|ERROR|CRITICAL) |Traceback")
LOG_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")
_RUN_EVENTS = {"run-pipeline", "detection", "audio-chunk", "audio-stop"}

# Targets by scenario and figure: {engine: limit}; engines not listed have no target.
CPU_TARGETS: dict[str, dict[str, float]] = {
    "silence": {"none": 0.6, "micro": 0.3},
    "speech": {"micro+clean": 1.0},
}
RSS_TARGETS_MB = {"none": 45.0, "micro": 55.0}
DETECTION_TARGET = 0.95
LATENCY_P95_TARGET_MS = 200.0


@dataclass(frozen=True)
class Engine:
    name: str
    wake: dict[str, Any]
    cleanup: dict[str, int] = field(default_factory=dict)  # mic keys of the WebRTC clean-up

    @property
    def local_wake(self) -> bool:
        return self.wake["engine"] != "none"


ENGINES = (
    Engine("none", {"engine": "none"}),
    Engine("micro", {"engine": "micro", "models": [WAKE_MODEL]}),
    Engine(
        "micro+clean",
        {"engine": "micro", "models": [WAKE_MODEL]},
        {"noise_suppression": 2, "auto_gain": 31},
    ),
    Engine("openwakeword", {"engine": "openwakeword", "models": [WAKE_MODEL]}),
)
ENGINE_NAMES = tuple(engine.name for engine in ENGINES)

MicKind = Literal["pyaudio", "command"]


@dataclass(frozen=True)
class Source:
    """The mic's audio, and the byte spans of the wake words in it."""

    pcm: bytes
    wake_words: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    what: str  # what the mic hears
    build: Callable[[float], Source]  # measured seconds -> the source
    command_mic: bool  # always the paced command mic (wake-word times)


def silence_source(seconds: float) -> Source:
    # The ALSA file capture repeats the last period after the source: silence repeats.
    return Source(silence(2.0))


def speech_source(seconds: float) -> Source:
    spoken = continuous_speech(round(WARMUP_SECONDS + seconds + SOURCE_TAIL_S))
    return Source(spoken + silence(5.0))


def commands_source(seconds: float) -> Source:
    """Silence through the warm-up and 1 s more, then wake word, pause, command and silence,
    over and over, to the end of the measured window and SOURCE_TAIL_S beyond."""
    pcm = bytearray(silence(WARMUP_SECONDS + 1.0))
    spans = []
    end = (WARMUP_SECONDS + seconds + SOURCE_TAIL_S) * BYTES_PER_SECOND
    count = 0
    while len(pcm) < end:
        voice = WAKE_VOICES[count % len(WAKE_VOICES)]
        wake = wake_phrase(WAKE_TEXT, voice)
        spans.append((len(pcm), len(pcm) + len(wake)))
        pcm += wake + silence(COMMAND_PAUSE_S)
        pcm += wake_phrase(COMMANDS[count % len(COMMANDS)], voice) + silence(AFTER_COMMAND_S)
        count += 1
    return Source(bytes(pcm), tuple(spans))


SCENARIOS = (
    Scenario("silence", "silence", "silence", silence_source, command_mic=False),
    Scenario(
        "speech",
        "speech, no wake word",
        "continuous espeak-ng speech in 5 voices, no wake word",
        speech_source,
        command_mic=False,
    ),
    Scenario(
        "commands",
        "commands",
        f'"{WAKE_TEXT}" ({", ".join(WAKE_VOICES)} in turn), {COMMAND_PAUSE_S:g} s, a command,'
        f" {AFTER_COMMAND_S:g} s of silence, repeated",
        commands_source,
        command_mic=True,
    ),
)
SCENARIO_KEYS = tuple(scenario.key for scenario in SCENARIOS)


def mic_description(kind: MicKind) -> str:
    if kind == "command":
        return (
            f"command mic (bench/paced_mic.py: {MIC_PIECE_MS} ms pieces in real time, cut at"
            " each wake word's end)"
        )
    return "pyaudio mic through the file-backed ALSA device"


def config_text(engine: Engine, mic: dict[str, Any], sink: Path) -> str:
    # JSON is YAML's flow style: nested values need no escaping of their own.
    return f"""
log_level: info
zeroconf: false
speech: {{enabled: false}}
satellite:
  enabled: true
  uri: LISTEN_URI
  name: Bench Satellite
  start_stage: asr
  wake: {json.dumps(engine.wake)}
  mic: {json.dumps({**mic, **engine.cleanup})}
  speaker: {json.dumps({"backend": "file", "file": str(sink)})}
  vad: {{hangover_ms: {HANGOVER_MS}}}
"""


def command_mic(source: Path, marks: Path, times: Path) -> dict[str, Any]:
    command = [
        sys.executable,
        str(PACED_MIC),
        str(source),
        "--marks",
        str(marks),
        "--times",
        str(times),
        "--piece-ms",
        str(MIC_PIECE_MS),
    ]
    return {"backend": "command", "command": shlex.join(command)}


PYAUDIO_MIC: dict[str, Any] = {"backend": "pyaudio", "rate": 16000, "width": 2, "channels": 1}


def provider_traces(daemon: Daemon) -> list[str]:
    """Log lines about providers and mapped provider libraries; empty when none is loaded."""
    maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
    found = [f"maps: {name}" for name in PROVIDER_MAPS if name.lower() in maps.lower()]
    found += [f"log: {line}" for line in daemon.logs().splitlines() if PROVIDER_LOG.search(line)]
    return found


def log_problems(text: str) -> list[str]:
    """Warnings, errors and tracebacks of a daemon log, without their time stamps."""
    return [LOG_STAMP.sub("", line) for line in text.splitlines() if LOG_PROBLEM.search(line)]


async def wait_for_log(daemon: Daemon, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.logs():
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} in the daemon's log:\n{daemon.logs()}")
        await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Received:
    monotonic: float
    wall: float  # time.time() when the event was read
    type: str
    payload_bytes: int


class FakeHa:
    """Home Assistant's side of the connection: ``run-satellite``, then a ping 2 s after each
    pong; records every event the satellite sends, with the time it arrived."""

    def __init__(self, client: AsyncTcpClient) -> None:
        self.client = client
        self.events: list[Received] = []
        self.closed = False
        self.pings = 0
        self.late_pongs = 0  # pongs that took longer than PONG_DEADLINE_S (HA would drop us)
        self._pong = asyncio.Event()
        self._ping_text = ""
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, port: int) -> FakeHa:
        ha = cls(await connect(port))
        ha._tasks.append(asyncio.create_task(ha._read()))
        await ha.send(RunSatellite().event())
        ha._tasks.append(asyncio.create_task(ha._ping()))
        return ha

    async def send(self, event: Event) -> None:
        async with self._write_lock:
            await self.client.write_event(event)

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError):
            while (event := await self.client.read_event()) is not None:
                now, wall = time.monotonic(), time.time()
                self.events.append(Received(now, wall, event.type, len(event.payload or b"")))
                if Ping.is_type(event.type):
                    await self.send(Pong(text=Ping.from_event(event).text).event())
                elif Pong.is_type(event.type) and Pong.from_event(event).text == self._ping_text:
                    self._pong.set()
        self.closed = True

    async def _ping(self) -> None:
        while not self.closed:
            self.pings += 1
            self._ping_text = str(self.pings)
            self._pong.clear()
            await self.send(Ping(text=self._ping_text).event())
            try:
                await asyncio.wait_for(self._pong.wait(), PONG_DEADLINE_S)
            except TimeoutError:
                self.late_pongs += 1
                await self._pong.wait()
            await asyncio.sleep(PING_EVERY_S)

    def between(self, start: float, end: float) -> list[Received]:
        """Events received in [start, end) (monotonic), pongs left out."""
        return [e for e in self.events if start <= e.monotonic < end and e.type != "pong"]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, OSError, ValueError):
                await task
        with contextlib.suppress(OSError):
            await self.client.disconnect()


@dataclass
class WakeFigures:
    """Wake words spoken in the measured window and the runs that answered them."""

    spoken: int
    detected: int
    latencies_ms: list[float]  # wake word's end -> run-pipeline at HA
    false_activations: int  # run-pipelines without a wake word ended <= PAIR_WINDOW_S before


def read_wake_times(path: Path) -> list[tuple[float, float]]:
    """(start, end) wall-clock times of the wake words the mic has written, in order."""
    if not path.exists():
        return []
    words = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            words.append((float(parts[1]), float(parts[2])))
    return sorted(words)


def pair_runs(
    runs: list[float], words: list[tuple[float, float]], start: float, end: float
) -> WakeFigures:
    """Pairs each run-pipeline (wall time at HA) with the latest wake word begun before it.
    ``runs`` may go on past ``end`` (the last words' runs); only words ending and runs
    arriving in [start, end) are counted."""
    answered: dict[int, float] = {}  # word index -> its run-pipeline's time
    false_activations = 0
    for run in sorted(runs):
        index = max((i for i, (begun, _) in enumerate(words) if begun <= run), default=None)
        if index is not None and index not in answered and run - words[index][1] <= PAIR_WINDOW_S:
            answered[index] = run
        elif run < end:
            false_activations += 1
    measured = [i for i, (_, ended) in enumerate(words) if start <= ended < end]
    latencies = [(answered[i] - words[i][1]) * 1000 for i in measured if i in answered]
    return WakeFigures(len(measured), len(latencies), latencies, false_activations)


@dataclass
class Result:
    engine: Engine
    scenario: str
    seconds: float
    user: float
    system: float
    counts: Counter[str]
    audio_seconds: float
    peak_rss_mb: float
    rss_mb: float
    threads: int
    providers: list[str]
    problems: list[str]  # warnings and errors of the daemon's log
    pings: int
    late_pongs: int
    wake: WakeFigures | None

    @property
    def cpu_per_minute(self) -> float:
        return (self.user + self.system) / self.seconds * 60


async def run_case(
    engine: Engine,
    scenario: Scenario,
    source: Source,
    mic_kind: MicKind,
    seconds: float,
    workdir: Path,
) -> Result:
    """One daemon for one engine and scenario; the daemon and the client are always stopped."""
    source_path = workdir / "mic-source.raw"
    times_path = workdir / "wake-times.txt"
    with pytest.MonkeyPatch.context() as env:  # ALSA_CONFIG_PATH, inherited by the daemon
        if mic_kind == "pyaudio":
            use_file_alsa(workdir, env, source.pcm)
            mic = PYAUDIO_MIC
        else:
            source_path.write_bytes(source.pcm)
            marks_path = workdir / "wake-marks.txt"
            marks_path.write_text("".join(f"{a} {b}\n" for a, b in source.wake_words))
            mic = command_mic(source_path, marks_path, times_path)
        daemon = Daemon(
            workdir, config_text(engine, mic, workdir / "speaker.raw"), env=unit_environment()
        )
    ha: FakeHa | None = None
    try:
        daemon.wait_listening()
        ha = await FakeHa.start(daemon.port)
        await wait_for_log(daemon, "started the satellite")
        await wait_for_log(daemon, "microphone: reading")
        await asyncio.sleep(WARMUP_SECONDS)
        pid = daemon.process.pid
        user0, system0 = cpu_seconds(pid)
        started, started_wall = time.monotonic(), time.time()
        await asyncio.sleep(seconds)
        user1, system1 = cpu_seconds(pid)
        ended, ended_wall = time.monotonic(), time.time()
        peak_rss, rss, threads = status_mb(pid, "VmHWM"), status_mb(pid, "VmRSS"), thread_count(pid)
        wake = None
        if source.wake_words:
            await asyncio.sleep(PAIR_WINDOW_S)  # the runs of the last wake words
            runs = [
                e.wall for e in ha.events if e.type == "run-pipeline" and e.wall >= started_wall
            ]
            wake = pair_runs(runs, read_wake_times(times_path), started_wall, ended_wall)
        if ha.closed or daemon.process.poll() is not None:
            raise RuntimeError(f"the daemon dropped the client or exited:\n{daemon.logs()}")
        window = ha.between(started, ended)
        audio_bytes = sum(e.payload_bytes for e in window if e.type == "audio-chunk")
        result = Result(
            engine=engine,
            scenario=scenario.key,
            seconds=ended - started,
            user=user1 - user0,
            system=system1 - system0,
            counts=Counter(e.type for e in window),
            audio_seconds=audio_bytes / BYTES_PER_SECOND,
            peak_rss_mb=peak_rss,
            rss_mb=rss,
            threads=threads,
            providers=provider_traces(daemon),
            problems=[],
            pings=ha.pings,
            late_pongs=ha.late_pongs,
            wake=wake,
        )
    finally:
        if ha is not None:
            await ha.stop()
        code = daemon.stop()
    if code != 0:
        raise RuntimeError(f"the daemon exited with {code}:\n{daemon.logs()}")
    result.problems = log_problems(daemon.logs())
    return result


# --- report ----------------------------------------------------------------------------

Cell = Result | str  # a result, or why the case failed
COLUMN = 20


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def judged(text: str, ok: bool | None) -> str:
    return text if ok is None else f"{text} {verdict(ok)}"


def limit_text(limits: dict[str, float], unit: str = "") -> str:
    return ", ".join(f"<= {limit:g}{unit} {name}" for name, limit in limits.items())


def wake_rows(cells: list[Cell]) -> list[tuple[str, list[str], str]]:
    def figure(render: Callable[[Result, WakeFigures], str]) -> list[str]:
        values = []
        for cell in cells:
            if isinstance(cell, str):
                values.append("failed")
            elif cell.wake is None or not cell.engine.local_wake:
                values.append("n/a")
            else:
                values.append(render(cell, cell.wake))
        return values

    def rate(_: Result, wake: WakeFigures) -> str:
        if not wake.spoken:
            return "none spoken"
        share = wake.detected / wake.spoken
        return judged(f"{wake.detected}/{wake.spoken} {share:.0%}", share >= DETECTION_TARGET)

    def latency(_: Result, wake: WakeFigures) -> str:
        if not wake.latencies_ms:
            return "no detection"
        p50 = statistics.median(wake.latencies_ms)
        p95 = percentile(wake.latencies_ms, 0.95)
        return judged(f"{p50:.0f} / {p95:.0f} ms", p95 <= LATENCY_P95_TARGET_MS)

    def spread(_: Result, wake: WakeFigures) -> str:
        if not wake.latencies_ms:
            return "-"
        return f"{min(wake.latencies_ms):.0f} / {max(wake.latencies_ms):.0f} ms"

    spoken = [
        "failed" if isinstance(cell, str) else str(cell.wake.spoken if cell.wake else 0)
        for cell in cells
    ]
    return [
        ("wake words spoken", spoken, ""),
        ("detected (rate)", figure(rate), f">= {DETECTION_TARGET:.0%}"),
        (
            "wake end -> run-pipeline",
            figure(latency),
            f"p50 / p95; p95 <= {LATENCY_P95_TARGET_MS:g} ms",
        ),
        ("  min / max", figure(spread), ""),
        (
            "false activations",
            figure(lambda _, wake: judged(str(wake.false_activations), not wake.false_activations)),
            "0",
        ),
    ]


def scenario_rows(scenario: Scenario, cells: list[Cell]) -> list[tuple[str, list[str], str]]:
    def each(render: Callable[[Result], str]) -> list[str]:
        return ["failed" if isinstance(cell, str) else render(cell) for cell in cells]

    cpu_limits = CPU_TARGETS.get(scenario.key, {})

    def cpu(r: Result) -> str:
        limit = cpu_limits.get(r.engine.name)
        return judged(
            f"{r.cpu_per_minute:.3f}", None if limit is None else r.cpu_per_minute <= limit
        )

    def rss(r: Result) -> str:
        limit = RSS_TARGETS_MB.get(r.engine.name)
        return judged(f"{r.peak_rss_mb:.1f} MB", None if limit is None else r.peak_rss_mb <= limit)

    def runs(r: Result) -> str:
        opened = r.counts["run-pipeline"]
        if scenario.key == "speech" and r.engine.local_wake:
            return judged(str(opened), opened == 0)
        return str(opened)

    def reaching(r: Result) -> str:
        total = sum(r.counts.values())
        if scenario.key == "speech" and r.engine.local_wake:
            return judged(str(total), total == 0)
        return str(total)

    rows: list[tuple[str, list[str], str]] = [
        ("CPU-s per audio minute", each(cpu), limit_text(cpu_limits)),
        ("  user / system CPU-s", each(lambda r: f"{r.user:.2f} / {r.system:.2f}"), ""),
        (
            "pipeline runs opened",
            each(runs),
            "0 for wake engines" if scenario.key == "speech" else "",
        ),
    ]
    if scenario.key == "commands":
        rows += wake_rows(cells)
    rows += [
        (
            "events reaching HA",
            each(reaching),
            "0 for wake engines" if scenario.key == "speech" else "(pongs left out)",
        ),
        ("  detection", each(lambda r: str(r.counts["detection"])), ""),
        (
            "  audio-chunk / -stop",
            each(lambda r: f"{r.counts['audio-chunk']} / {r.counts['audio-stop']}"),
            "",
        ),
        (
            "  other events",
            each(lambda r: str(sum(n for k, n in r.counts.items() if k not in _RUN_EVENTS))),
            "",
        ),
        ("audio streamed to HA", each(lambda r: f"{r.audio_seconds:.1f} s"), ""),
        ("peak RSS (VmHWM)", each(rss), limit_text(RSS_TARGETS_MB, " MB")),
        ("  RSS now / threads", each(lambda r: f"{r.rss_mb:.1f} MB / {r.threads}"), ""),
        (
            "provider SDK loaded",
            each(lambda r: judged("yes" if r.providers else "no", not r.providers)),
            "no",
        ),
        ("pings / late pongs", each(lambda r: f"{r.pings} / {r.late_pongs}"), ""),
        ("daemon log warnings", each(lambda r: str(len(r.problems))), ""),
    ]
    return rows


def report(
    engines: list[Engine],
    scenarios: list[Scenario],
    results: dict[tuple[str, str], Cell],
    seconds: float,
    mic_kind: MicKind,
) -> None:
    print(
        f"voice-satellite satellite benchmark ({os.cpu_count()} CPUs; file speaker;"
        f" {seconds:g} s measured per engine and scenario after {WARMUP_SECONDS:g} s warm-up;"
        f" HA connected: run-satellite, a ping {PING_EVERY_S:g} s after each pong)"
    )
    for scenario in scenarios:
        cells = [results[scenario.key, engine.name] for engine in engines]
        kind: MicKind = "command" if scenario.command_mic else mic_kind
        print()
        print(f"{scenario.title}: {scenario.what}; {mic_description(kind)}")
        print(f"  {'':<28}" + "".join(f"{e.name:>{COLUMN}}" for e in engines) + "  target")
        for label, values, target in scenario_rows(scenario, cells):
            line = f"  {label:<28}" + "".join(f"{v:>{COLUMN}}" for v in values) + f"  {target}"
            print(line.rstrip())
        for engine, cell in zip(engines, cells, strict=True):
            if isinstance(cell, str):
                print(f"  {engine.name}: failed: {cell}")
                continue
            for trace in cell.providers:
                print(f"  {engine.name}: provider trace: {trace}")
            for problem, count in Counter(cell.problems).items():
                print(
                    f"  {engine.name}: daemon log: {problem}"
                    + (f" (x{count})" if count > 1 else "")
                )
    print()
    checked = ", ".join(PROVIDER_MAPS)
    print(
        f"  (measured: the daemon process alone, from /proc; runs and events: those HA received"
        f" in the measured window; wake words: those whose end the mic wrote in it, each"
        f" answered by a run-pipeline at most {PAIR_WINDOW_S:g} s after its end; provider check:"
        f" the daemon log and /proc/PID/maps for {checked})"
    )


def device_floor(seconds: float, workdir: Path) -> float:
    """CPU seconds per minute that PyAudio reading the file-backed ALSA device costs alone."""
    with pytest.MonkeyPatch.context() as env:
        use_file_alsa(workdir, env, silence(seconds + 5))
        child = subprocess.run(
            [sys.executable, "-m", "bench.device_floor", str(seconds)],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
            cwd=Path(__file__).parent.parent,
        )
    return float(child.stdout.split()[-1])


def names(text: str, known: tuple[str, ...], what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(known)}"
        )
    return chosen


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=60.0, help="measured wall time per scenario (>= 5)"
    )
    parser.add_argument(
        "--engines",
        type=lambda text: names(text, ENGINE_NAMES, "engine"),
        default=list(ENGINE_NAMES),
        help=f"comma-separated, from {','.join(ENGINE_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: names(text, SCENARIO_KEYS, "scenario"),
        default=list(SCENARIO_KEYS),
        help=f"comma-separated, from {','.join(SCENARIO_KEYS)} (default: all)",
    )
    parser.add_argument(
        "--mic",
        choices=("pyaudio", "command"),
        default="pyaudio",
        help="the mic of silence and speech (commands always use the command mic)",
    )
    parser.add_argument("--logs", type=Path, help="copy each daemon's log into this folder")
    args = parser.parse_args()
    seconds = max(5.0, args.seconds)
    engines = [engine for engine in ENGINES if engine.name in args.engines]
    scenarios = [scenario for scenario in SCENARIOS if scenario.key in args.scenarios]
    sources = {scenario.key: scenario.build(seconds) for scenario in scenarios}
    results: dict[tuple[str, str], Cell] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in scenarios:
            kind: MicKind = "command" if scenario.command_mic else args.mic
            for engine in engines:
                name = f"{scenario.key}-{engine.name}"
                workdir = Path(tmp, name)
                workdir.mkdir()
                print(f"running {scenario.key} with {engine.name}...", file=sys.stderr, flush=True)
                try:
                    results[scenario.key, engine.name] = await run_case(
                        engine, scenario, sources[scenario.key], kind, seconds, workdir
                    )
                except Exception as exc:  # reported in the table; the other cases still run
                    results[scenario.key, engine.name] = str(exc).splitlines()[0]
                    print(f"{name} failed: {exc}", file=sys.stderr, flush=True)
                finally:
                    if args.logs is not None and (workdir / "daemon.log").exists():
                        args.logs.mkdir(parents=True, exist_ok=True)
                        shutil.copyfile(workdir / "daemon.log", args.logs / f"{name}.log")
        floor = None
        if args.mic == "pyaudio" and any(not scenario.command_mic for scenario in scenarios):
            (Path(tmp) / "floor").mkdir()
            floor = device_floor(seconds, Path(tmp) / "floor")
    report(engines, scenarios, results, seconds, args.mic)
    if floor is not None:
        print(
            f"  (the PyAudio mic's floor: the file-backed ALSA device read in 100 ms blocks by"
            f" PyAudio alone, without the daemon: {floor:.3f} CPU-s per audio minute)"
        )


if __name__ == "__main__":
    asyncio.run(main())
