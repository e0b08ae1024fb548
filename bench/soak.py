"""Soak benchmark: the daemon process with both roles under mixed traffic for N minutes.

The daemon serves the speech endpoint (ASR failover list [dashscope, azure], TTS
[dashscope, azure, espeak]) against the fake providers, and the satellite with a command mic
that loops spoken commands in real time (``pv``) and a file speaker. Meanwhile:

- a fake Home Assistant runs the satellite: for each pipeline run it streams the audio to
  the speech endpoint, says voice-started / voice-stopped from the audio's loudness, sends
  the transcript, synthesizes an answer by streaming synthesis, streams that audio back and
  waits for ``played``; it pings every 2 s, as HA does;
- plain ASR and TTS clients (plain and streaming synthesis) keep the endpoint busy;
- twice a minute one fake provider fails for a while (refused, stalled, dropped mid-stream,
  bad key...), and a client sends malformed events or connects and vanishes mid-request.

Each request has a deadline: the total deadlines of its failover list plus a margin. One
that gets neither its answer nor an ``error`` in time is HUNG; one whose connection closes
without either is LOST. At the end of each minute the traffic pauses until nothing is in
flight, and the RSS of the daemon and of its provider workers, its open fds and threads are
read. Targets: no hung or lost request, RSS growth after the warm-up < 5 MB for the daemon and
its workers together and < 2 MB for the daemon's own process, fd count flat. The workers'
memory is a saw (each is replaced every few minutes: killed, recycled, or after a reload, and
grows back as it warms up), so the whole daemon's growth compares the median of the first
``WINDOW_MINUTES`` after the warm-up with that of the last ones; the growth from the end of
the warm-up to the end is printed too. With
``--kill-worker-every`` a provider worker is killed (SIGKILL) every so often. During the
warm-up (the first ``--warmup-minutes``) every fault of every provider is injected in turn,
so each failure path has allocated what it keeps before growth is measured; after it, faults
are drawn at random. The daemon runs with the environment of the systemd unit
(MALLOC_ARENA_MAX).
Run: .venv/bin/python -m bench.soak [--minutes N] [--warmup-minutes W] [--seed S] [--json]
[--reload-every S] [--kill-worker-every S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import re
import signal
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.event import Event, async_write_event
from wyoming.ping import Ping, Pong
from wyoming.satellite import RunSatellite
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop
from wyoming.vad import VoiceStarted, VoiceStopped

from bench.paths import Fakes, provider_blocks, running_fakes
from bench.proc import (
    cpu_seconds_with_children,
    family_cpu_seconds,
    pss_mb,
    status_mb,
    thread_count,
)
from bench.satellite import COMMANDS, wait_for_log
from bench.unit import unit_environment
from satellite.providers.base import Deadlines
from tests.audio.speech import BYTES_PER_SECOND, silence, speech_pcm
from tests.e2e.daemon import Daemon, free_port, launchers_of, port_open, workers_of
from tests.wyoming_client import connect, send_utterance

FAKE_DELAY_S = 0.05
TIMEOUTS = Deadlines(connect=2, first_result=2, total=10)  # of every provider
ASR_CHAIN = ["dashscope", "azure"]
TTS_CHAIN = ["dashscope", "azure", "espeak"]
MARGIN_S = 10.0
ASR_DEADLINE_S = len(ASR_CHAIN) * TIMEOUTS.total + MARGIN_S
TTS_DEADLINE_S = len(TTS_CHAIN) * TIMEOUTS.total + MARGIN_S
BAD_DEADLINE_S = 5.0  # an error for a malformed event
PING_DEADLINE_S = 5.0  # HA drops a satellite silent this long
PING_EVERY_S = 2.0
MAX_SPEECH_S = 15.0  # the satellite's vad.max_speech_s: a run's audio ends by then
PLAYED_MARGIN_S = 10.0  # after the audio's duration
CONNECT_TIMEOUT_S = 5.0
LANGUAGE = "zh"
ANSWERS = ("客厅的灯已经打开了。", "The kitchen light is on.", "现在是下午三点。好的。")
GAP_S = 8.0  # silence after each spoken command on the mic
VOICE_RMS = 300.0  # fake HA's VAD: a chunk this loud is speech
VOICE_STOP_S = 0.5  # ...and this much quiet after speech ends it
ASR_CLIENTS = 2
TTS_CLIENTS = 2
BAD_EVERY_S = 2.0
FAULTS = {
    "dashscope": ("refuse", "stall", "drop", "auth", "task-failed"),
    "azure": ("refuse", "stall", "drop", "auth", "error"),
}
# (fake, from, to) seconds into each minute; both fail in 33-38 s; all is well again by 42 s.
FAULT_WINDOWS_S = (("dashscope", 8.0, 20.0), ("azure", 28.0, 42.0), ("dashscope", 33.0, 38.0))
THINK_S = 0.5  # most a client waits between its requests
FAILOVER = "{failures: 3, cooldown_s: 10}"
QUIET_SETTLE_S = 1.5  # nothing in flight this long before a sample
QUIET_TIMEOUT_S = 30.0
RSS_GROWTH_TARGET_MB = 5.0  # the daemon and its provider workers together
MAIN_RSS_GROWTH_TARGET_MB = 2.0  # the daemon's own process, when the SDKs run in workers
WINDOW_MINUTES = 5  # the whole daemon's growth: median of the first and of the last minutes
FD_TOLERANCE = 3  # warm provider connections reopen on their own schedule


# --- outcomes ------------------------------------------------------------------------


@dataclass
class Answer:
    outcome: str  # "ok" | "error" | "hung" | "lost"
    code: str = ""  # the error event's code
    last: str = ""  # types of the last events received, for the record of a failure


@dataclass
class Tally:
    served: Counter[str] = field(default_factory=Counter)  # kind -> answered (ok or error)
    errors: Counter[str] = field(default_factory=Counter)  # error code -> count
    hung: Counter[str] = field(default_factory=Counter)  # kind -> count
    lost: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0  # connections that vanished mid-request on purpose

    def add(self, other: Tally) -> None:
        self.served += other.served
        self.errors += other.errors
        self.hung += other.hung
        self.lost += other.lost
        self.abandoned += other.abandoned


class Stats:
    def __init__(self) -> None:
        self.minute = Tally()
        self.total = Tally()
        self.failures: list[str] = []  # one line per hung or lost request
        self.ignored_runs = 0  # runs opened while the fake HA answered the previous one

    def record(self, kind: str, answer: Answer) -> None:
        tally = self.minute
        if answer.outcome in ("ok", "error"):
            tally.served[kind] += 1
            if answer.outcome == "error":
                tally.errors[answer.code or "?"] += 1
        else:
            (tally.hung if answer.outcome == "hung" else tally.lost)[kind] += 1
            self.failures.append(
                f"{time.strftime('%H:%M:%S')} {kind} {answer.outcome.upper()} after [{answer.last}]"
            )

    def take_minute(self) -> Tally:
        minute, self.minute = self.minute, Tally()
        self.total.add(minute)
        return minute


async def await_answer(
    client: AsyncTcpClient,
    final: str,
    deadline: float,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
) -> Answer:
    """Read until an event of type ``final`` or an ``error`` (for a streaming synthesis, an
    error is followed by ``final``), by ``deadline`` (``now()``'s clock)."""
    seen: list[str] = []
    code = ""
    try:
        async with asyncio.timeout_at(deadline):
            while (event := await client.read_event()) is not None:
                seen.append(event.type)
                if on_event is not None:
                    await on_event(event)
                if event.type == "error":
                    code = str(event.data.get("code"))
                    if final != "synthesize-stopped":
                        break
                if event.type == final:
                    break
            else:
                return Answer("lost", code, _last(seen))
    except TimeoutError:
        return Answer("hung", code, _last(seen))
    except ConnectionError:
        return Answer("lost", code, _last(seen))
    return Answer("error" if code else "ok", code, _last(seen))


def now() -> float:
    """The event loop's clock, which deadlines (``asyncio.timeout_at``) are in."""
    return asyncio.get_running_loop().time()


def _last(seen: list[str]) -> str:
    kinds = [kind for kind in seen if kind != "audio-chunk"]
    chunks = len(seen) - len(kinds)
    return " ".join(kinds[-4:]) + (f" +{chunks} audio-chunk" if chunks else "")


async def close(client: AsyncTcpClient) -> None:
    with contextlib.suppress(OSError, TimeoutError, RuntimeError):
        await asyncio.wait_for(client.disconnect(), 2.0)


async def request(
    port: int,
    send: Callable[[AsyncTcpClient], Awaitable[None]],
    final: str,
    seconds: float,
    on_event: Callable[[Event], Awaitable[None]] | None = None,
) -> Answer:
    """One request on a fresh connection: ``send`` it, then await its answer; the deadline
    covers both."""
    deadline = now() + seconds
    try:
        client = await asyncio.wait_for(connect(port), CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as exc:
        return Answer("lost", last=f"connect: {exc!r}")
    try:
        try:
            async with asyncio.timeout_at(deadline):
                await send(client)
        except ConnectionError:
            pass  # the server may have answered (an error) before it closed
        except TimeoutError:
            return Answer("hung", last="still sending")
        return await await_answer(client, final, deadline, on_event)
    finally:
        await close(client)


def synthesize_stream(pieces: list[str]) -> Callable[[AsyncTcpClient], Awaitable[None]]:
    """HA 2025.7+'s streaming synthesis of ``pieces``."""

    async def send(client: AsyncTcpClient) -> None:
        await client.write_event(SynthesizeStart().event())
        for piece in pieces:
            await client.write_event(SynthesizeChunk(text=piece).event())
        await client.write_event(Synthesize(text="".join(pieces)).event())
        await client.write_event(SynthesizeStop().event())

    return send


def split_text(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(1, len(text)), 2))
    return [text[: cuts[0]], text[cuts[0] : cuts[1]], text[cuts[1] :]]


# --- traffic -------------------------------------------------------------------------


class Traffic:
    """Lets the client loops start requests, or holds them while the daemon is sampled."""

    def __init__(self) -> None:
        self.stopping = False
        self.in_flight = 0
        self._open = asyncio.Event()
        self._open.set()

    async def go(self) -> bool:
        await self._open.wait()
        return not self.stopping

    @contextlib.asynccontextmanager
    async def busy(self) -> AsyncIterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self.stopping = True
        self._open.set()

    async def quiet(self) -> bool:
        """Wait until nothing has been in flight for QUIET_SETTLE_S; False if that took
        longer than QUIET_TIMEOUT_S (the mic keeps opening pipeline runs)."""
        end = time.monotonic() + QUIET_TIMEOUT_S
        quiet_since: float | None = None
        while time.monotonic() < end:
            if self.in_flight:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET_SETTLE_S:
                return True
            await asyncio.sleep(0.05)
        return False


async def asr_client(port: int, stats: Stats, traffic: Traffic, rng: random.Random) -> None:
    """Transcriptions back to back, chunks of any size (odd ones too), at twice real time."""
    while await traffic.go():
        await asyncio.sleep(rng.uniform(0.0, THINK_S))
        audio = speech_pcm(rng.choice(COMMANDS), pad_before_s=0.2, pad_after_s=0.3)
        chunk = rng.choice((320, 999, 3200, 4095))
        pause = chunk / BYTES_PER_SECOND / 2

        async def send(client: AsyncTcpClient) -> None:
            await send_utterance(client, audio, chunk, LANGUAGE, pause)  # noqa: B023

        async with traffic.busy():
            stats.record("asr", await request(port, send, "transcript", ASR_DEADLINE_S))


async def tts_client(port: int, stats: Stats, traffic: Traffic, rng: random.Random) -> None:
    """Syntheses back to back, plain and streaming."""
    while await traffic.go():
        await asyncio.sleep(rng.uniform(0.0, THINK_S))
        text = rng.choice(ANSWERS)
        async with traffic.busy():
            if rng.random() < 0.5:

                async def send(client: AsyncTcpClient) -> None:
                    await client.write_event(Synthesize(text=text).event())  # noqa: B023

                stats.record("tts", await request(port, send, "audio-stop", TTS_DEADLINE_S))
            else:
                send_stream = synthesize_stream(split_text(text, rng))
                answer = await request(port, send_stream, "synthesize-stopped", TTS_DEADLINE_S)
                stats.record("tts-stream", answer)


# Malformed requests: each must get an ``error`` event.
MALFORMED: dict[str, bytes] = {
    "not JSON": b"this is not a wyoming header\n",
    "chunk without start": b'{"type": "synthesize-chunk", "data": {"text": "hi"}}\n',
    "audio without format": b'{"type": "audio-start", "data": {"rate": "fast"}}\n',
    "stop without audio": b'{"type": "audio-stop"}\n',
}


async def bad_client(port: int, stats: Stats, traffic: Traffic, rng: random.Random) -> None:
    """Malformed events (answered with an error), and requests whose client vanishes."""
    while await traffic.go():
        await asyncio.sleep(rng.uniform(0.5, 1.5) * BAD_EVERY_S)
        async with traffic.busy():
            if rng.random() < 0.4:
                stats.record("bad", await malformed(port, rng.choice(list(MALFORMED.values()))))
            else:
                await vanish(port, rng)
                stats.minute.abandoned += 1


async def malformed(port: int, data: bytes) -> Answer:
    async def send(client: AsyncTcpClient) -> None:
        assert client._writer is not None  # wyoming's client has no raw write
        client._writer.write(data)
        await client._writer.drain()

    return await request(port, send, "error", BAD_DEADLINE_S)


async def vanish(port: int, rng: random.Random) -> None:
    """Start a request, then disappear with a TCP reset, sometimes in the middle of an event."""
    audio = speech_pcm(rng.choice(COMMANDS))
    starts: list[list[Event]] = [
        [Transcribe(language=LANGUAGE).event(), AudioStart(16000, 2, 1).event()]
        + [AudioChunk(16000, 2, 1, audio[i : i + 3200]).event() for i in range(0, 32000, 3200)],
        [Synthesize(text=rng.choice(ANSWERS)).event()],
        [SynthesizeStart().event(), SynthesizeChunk(text=rng.choice(ANSWERS)).event()],
        [],
    ]
    with contextlib.suppress(OSError, TimeoutError):
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S
        )
        for event in rng.choice(starts):
            await async_write_event(event, writer)
        if rng.random() < 0.5:
            writer.write(b'{"type": "audio-chunk", "data_length": 40')  # cut mid-header
        await asyncio.sleep(rng.uniform(0.0, 0.3))  # let the daemon start on it
        writer.transport.abort()


# --- the fake Home Assistant ---------------------------------------------------------------


class FakeHomeAssistant:
    """Connected to the satellite as HA is: runs its pipelines through the speech endpoint."""

    def __init__(
        self, satellite_port: int, speech_port: int, stats: Stats, traffic: Traffic, seed: int
    ) -> None:
        self.satellite_port = satellite_port
        self.speech_port = speech_port
        self.stats = stats
        self.traffic = traffic
        self.rng = random.Random(seed)
        self._client: AsyncTcpClient | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._pong = asyncio.Event()
        self._ping_text = ""
        self._write_lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve the satellite until cancelled; a dropped connection is reopened."""
        while True:
            try:
                self._client = await asyncio.wait_for(
                    connect(self.satellite_port), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError):
                self.stats.record("pipeline", Answer("lost", last="connect to the satellite"))
                await asyncio.sleep(1.0)
                continue
            self._events = asyncio.Queue()
            await self.send(RunSatellite().event())
            tasks = [
                asyncio.create_task(self._read()),
                asyncio.create_task(self._ping()),
                asyncio.create_task(self._pipelines()),
            ]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await close(self._client)
            await asyncio.sleep(1.0)

    async def send(self, event: Event) -> None:
        assert self._client is not None
        async with self._write_lock:
            await self._client.write_event(event)

    async def _read(self) -> None:
        assert self._client is not None
        try:
            while (event := await self._client.read_event()) is not None:
                if Ping.is_type(event.type):
                    await self.send(Pong(text=Ping.from_event(event).text).event())
                elif Pong.is_type(event.type):
                    if Pong.from_event(event).text == self._ping_text:
                        self._pong.set()
                else:
                    self._events.put_nowait(event)
        except ConnectionError:
            pass
        self._events.put_nowait(None)

    async def _ping(self) -> None:
        number = 0
        while True:
            number += 1
            self._ping_text = str(number)
            self._pong.clear()
            await self.send(Ping(text=self._ping_text).event())
            try:
                await asyncio.wait_for(self._pong.wait(), PING_DEADLINE_S)
            except TimeoutError:
                self.stats.record("ping", Answer("hung", last="ping"))
                return  # HA drops the connection
            self.stats.record("ping", Answer("ok"))
            await asyncio.sleep(PING_EVERY_S)

    async def _next(self, deadline: float) -> Event:
        """The satellite's next event; TimeoutError after ``deadline``, EOFError if closed."""
        async with asyncio.timeout_at(deadline):
            event = await self._events.get()
        if event is None:
            raise EOFError
        return event

    async def _pipelines(self) -> None:
        while True:
            event = await self._events.get()
            if event is None:
                return
            if event.type != "run-pipeline":
                continue  # the rest of a run opened while the previous one was answered
            async with self.traffic.busy():
                try:
                    self.stats.record("pipeline", await self._pipeline())
                except (EOFError, ConnectionError):
                    self.stats.record("pipeline", Answer("lost", last="satellite closed"))
                    return
                except TimeoutError as exc:
                    self.stats.record("pipeline", Answer("hung", last=str(exc)))
                    return  # a stuck satellite: reconnect, as HA would

    async def _pipeline(self) -> Answer:
        """One run, from run-pipeline (just received) to ``played``."""
        asr = await self._transcribe()
        self.stats.record("asr", asr.answer)
        if asr.answer.outcome == "error":
            await self.send(Error(text="speech-to-text failed", code=asr.answer.code).event())
        if asr.answer.outcome != "ok":
            return Answer("ok")  # the satellite's part went well
        await self.send(Transcript(text=asr.text).event())
        answer_text = self.rng.choice(ANSWERS)
        await self.send(Synthesize(text=answer_text).event())
        audio_seconds = 0.0
        rate_bytes = 1
        audio_started = audio_stopped = False

        async def forward(event: Event) -> None:
            nonlocal audio_seconds, rate_bytes, audio_started, audio_stopped
            if event.type == "audio-start":
                rate_bytes = int(event.data["rate"]) * int(event.data["width"])
                audio_started = True
            elif event.type == "audio-chunk":
                audio_seconds += len(event.payload or b"") / rate_bytes
            elif event.type == "audio-stop":
                audio_stopped = True
            else:
                return
            await self.send(event)

        tts = await request(
            self.speech_port,
            synthesize_stream(split_text(answer_text, self.rng)),
            "synthesize-stopped",
            TTS_DEADLINE_S,
            forward,
        )
        self.stats.record("tts-stream", tts)
        if audio_started and not audio_stopped:
            await self.send(AudioStop().event())  # what came still plays
        if tts.outcome == "error":
            await self.send(Error(text="text-to-speech failed", code=tts.code).event())
        if not audio_started:
            return Answer("ok")
        deadline = now() + audio_seconds + PLAYED_MARGIN_S
        try:
            while (event := await self._next(deadline)).type != "played":
                # The mic opened a run before the answer played: HA would cancel it.
                self.stats.ignored_runs += event.type == "run-pipeline"
        except TimeoutError:
            raise TimeoutError(f"no played {audio_seconds:.1f} s audio + margin") from None
        return Answer("ok")

    async def _transcribe(self) -> _Transcription:
        """Stream the run's audio to the speech endpoint, ending it as HA's VAD does."""
        end_of_audio = now() + MAX_SPEECH_S + MARGIN_S
        voiced = stopped = False
        quiet = 0.0
        result = _Transcription()

        async def send(client: AsyncTcpClient) -> None:
            nonlocal voiced, stopped, quiet
            await client.write_event(Transcribe(language=LANGUAGE).event())
            await client.write_event(AudioStart(16000, 2, 1).event())
            await self.send(Transcribe(language=LANGUAGE).event())
            while True:
                try:
                    event = await self._next(end_of_audio)
                except TimeoutError:
                    result.satellite_hung = True
                    break
                if event.type == "audio-stop":
                    break
                if event.type != "audio-chunk" or not event.payload:
                    continue
                await client.write_event(event)
                pcm = np.frombuffer(event.payload, dtype="<i2").astype(np.float64)
                if math.sqrt(float(np.mean(pcm**2))) >= VOICE_RMS:
                    quiet = 0.0
                    if not voiced:
                        voiced = True
                        await self.send(VoiceStarted().event())
                elif voiced and not stopped:
                    quiet += len(pcm) / 16000
                    if quiet >= VOICE_STOP_S:
                        stopped = True
                        await self.send(VoiceStopped().event())
            await client.write_event(AudioStop().event())

        result.answer = await request(
            self.speech_port,
            send,
            "transcript",
            MAX_SPEECH_S + MARGIN_S + ASR_DEADLINE_S,
            result.keep_text,
        )
        if result.satellite_hung:
            raise TimeoutError("no audio-stop from the satellite")
        return result


@dataclass
class _Transcription:
    answer: Answer = field(default_factory=lambda: Answer("lost"))
    text: str = ""
    satellite_hung: bool = False

    async def keep_text(self, event: Event) -> None:
        if event.type == "transcript":
            self.text = str(event.data.get("text", ""))


# --- the daemon ----------------------------------------------------------------------


def mic_command(workdir: Path, minutes: float) -> str:
    """A shell command that plays the commands, each followed by GAP_S of silence, in a
    loop paced to real time, long enough for the whole soak."""
    loop = b"".join(speech_pcm(command) + silence(GAP_S) for command in COMMANDS)
    path = workdir / "mic-loop.raw"
    path.write_bytes(loop)
    repeats = math.ceil((minutes + 3) * 60 * BYTES_PER_SECOND / len(loop))
    return f"for i in $(seq {repeats}); do cat '{path}'; done | pv -qL {BYTES_PER_SECOND}"


def config_text(
    fakes: Fakes, satellite_port: int, workdir: Path, minutes: float, isolation: str
) -> str:
    command = json.dumps(mic_command(workdir, minutes))  # JSON strings are YAML strings
    return f"""
log_level: info
speech:
  uri: LISTEN_URI
  asr: {{provider: [{", ".join(ASR_CHAIN)}], language: {LANGUAGE}}}
  tts: {{provider: [{", ".join(TTS_CHAIN)}]}}
  failover: {FAILOVER}
satellite:
  enabled: true
  uri: tcp://127.0.0.1:{satellite_port}
  name: Soak Satellite
  start_stage: asr
  wake: {{engine: none}}
  mic: {{backend: command, command: {command}, rate: 16000, width: 2, channels: 1}}
  speaker: {{backend: file, file: "{workdir / "speaker.raw"}"}}
  vad: {{max_speech_s: {MAX_SPEECH_S:g}}}
{provider_blocks(fakes, 1, {}, dict.fromkeys(TTS_CHAIN, TIMEOUTS), isolation)}"""


@dataclass
class Sample:
    rss_mb: float  # the daemon's own process
    # Its provider workers and their launchers together: proportional set size, as a worker
    # shares most of its pages with the launcher it was forked from.
    workers_mb: float
    workers: int
    fds: int
    threads: int
    quiet: bool  # nothing was in flight (else the figures include requests in progress)
    peak_mb: float  # the daemon's own process, VmHWM
    cpu_s: float  # so far: the daemon, its launchers and workers (the ones reaped included)

    @classmethod
    def read(cls, pid: int, quiet: bool) -> Sample:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        workers = workers_of(pid).values()
        processes = [*launchers_of(pid).values(), *workers]
        workers_mb = sum(pss_mb(process) for process in processes)
        return cls(
            status_mb(pid, "VmRSS"),
            workers_mb,
            len(workers),
            fds,
            thread_count(pid),
            quiet,
            status_mb(pid, "VmHWM"),
            sum(cpu_seconds_with_children(process) for process in (pid, *processes)),
        )


async def sleep_until(monotonic: float) -> None:
    await asyncio.sleep(max(0.0, monotonic - time.monotonic()))


async def inject_faults(
    fakes: Fakes, rng: random.Random, started: float, warmup_minutes: int, log: list[str]
) -> None:
    """Each minute, the fakes fail in FAULT_WINDOWS_S: during the warm-up each fake's faults
    in turn, then at random; ``log`` gets each fault."""
    minute = 0
    turns = dict.fromkeys(FAULTS, 0)  # faults injected so far, per fake
    try:
        while True:
            changes: list[tuple[float, str, str | None]] = []
            for name, begin, end in FAULT_WINDOWS_S:
                if minute < warmup_minutes:
                    fault = FAULTS[name][turns[name] % len(FAULTS[name])]
                else:
                    fault = rng.choice(FAULTS[name])
                turns[name] += 1
                changes += [(begin, name, fault), (end, name, None)]
            for at, name, fault in sorted(changes, key=lambda change: change[0]):
                await sleep_until(started + minute * 60 + at)
                await asyncio.to_thread(setattr, getattr(fakes, name), "fault", fault)
                if fault is not None:
                    log.append(f"{name}:{fault}")
            minute += 1
    finally:
        for fake in (fakes.dashscope, fakes.azure):
            fake.fault = None


def catches(pid: int, signum: int) -> bool:
    """Whether the process has a handler for ``signum`` (else SIGHUP would end it)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signum - 1) & 1)
    return False


def applied_reloads(daemon: Daemon) -> int:
    return len(re.findall(r"reload.*applied", daemon.logs()))


@dataclass
class Reloads:
    sent: int = 0
    applied: int = 0  # reloads the daemon logged as applied before the next was due
    seconds: list[float] = field(default_factory=list)  # SIGHUP -> "applied" in the log
    note: str = ""


async def reload_periodically(daemon: Daemon, every: float, reloads: Reloads) -> None:
    """Every ``every`` seconds swap the providers' order in the config file and send SIGHUP,
    then wait for the daemon to log it applied (a reload that changes a provider starts a new
    worker first); stops when the daemon does not handle SIGHUP."""
    order = ("dashscope, azure", "azure, dashscope")
    while True:
        await asyncio.sleep(every)
        if not catches(daemon.process.pid, signal.SIGHUP):
            reloads.note = "the daemon does not handle SIGHUP: reloads skipped"
            return
        logged = applied_reloads(daemon)
        text = daemon.config_path.read_text(encoding="utf-8")
        swapped = text.replace(order[0], "\0").replace(order[1], order[0]).replace("\0", order[1])
        daemon.config_path.write_text(swapped, encoding="utf-8")
        sent = time.monotonic()
        daemon.process.send_signal(signal.SIGHUP)
        reloads.sent += 1
        while time.monotonic() - sent < every - 1:
            await asyncio.sleep(0.1)
            if applied_reloads(daemon) > logged:
                reloads.applied += 1
                reloads.seconds.append(time.monotonic() - sent)
                break


async def kill_workers_periodically(
    daemon: Daemon, every: float, rng: random.Random, kills: list[str]
) -> None:
    """Every ``every`` seconds SIGKILL one of the daemon's provider workers, as the kernel's
    OOM killer or a crashing SDK would; ``kills`` gets the provider of each."""
    while True:
        await asyncio.sleep(every)
        workers = workers_of(daemon.process.pid)
        if workers:
            provider = rng.choice(sorted(workers))
            with contextlib.suppress(ProcessLookupError):
                os.kill(workers[provider], signal.SIGKILL)
                kills.append(provider)


# --- report --------------------------------------------------------------------------


def minute_record(
    minute: int, tally: Tally, sample: Sample, cpu_s: float, faults: list[str]
) -> dict[str, Any]:
    """One minute's figures; ``cpu_s``: the CPU seconds the daemon and its workers used in it."""
    return {
        "minute": minute,
        "served": dict(sorted(tally.served.items())),
        "errors": dict(sorted(tally.errors.items())),
        "hung": sum(tally.hung.values()),
        "lost": sum(tally.lost.values()),
        "abandoned": tally.abandoned,
        "faults": faults,
        "rss_mb": round(sample.rss_mb, 1),
        "workers_mb": round(sample.workers_mb, 1),
        "workers": sample.workers,
        "fds": sample.fds,
        "threads": sample.threads,
        "quiet": sample.quiet,
        "peak_mb": round(sample.peak_mb, 1),
        "cpu_s": round(cpu_s, 2),
    }


def counts(values: dict[str, int]) -> str:
    return " ".join(f"{key} {value}" for key, value in values.items()) or "none"


def minute_line(record: dict[str, Any]) -> str:
    busy = "" if record["quiet"] else " (not quiet)"
    return (
        f"min {record['minute']:>2} | served {counts(record['served'])} | errors"
        f" {counts(record['errors'])} | hung {record['hung']} lost {record['lost']}"
        f" abandoned {record['abandoned']} | RSS {record['rss_mb']:.1f} MB + workers (PSS)"
        f" {record['workers_mb']:.1f} MB ({record['workers']}) fds {record['fds']}"
        f" threads {record['threads']}{busy} | CPU {record['cpu_s']:.1f} s"
        f" | faults {' '.join(record['faults']) or '-'}"
    )


def summary_record(
    minutes: list[dict[str, Any]],
    warmup_minutes: int,
    stats: Stats,
    reloads: Reloads | None,
    worker_kills: list[str] | None,
    daemon: Daemon,
) -> dict[str, Any]:
    total = stats.total
    start = min(warmup_minutes, len(minutes)) - 1  # the end of the warm-up, or the run's end
    first, last = minutes[start], minutes[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    measured = [m["rss_mb"] + m["workers_mb"] for m in minutes[start:]]  # daemon and workers
    whole = [measured[0], measured[-1]]
    window = min(WINDOW_MINUTES, max(1, len(measured) // 2))
    medians = [statistics.median(measured[:window]), statistics.median(measured[-window:])]
    fd_change = last["fds"] - first["fds"]
    measured_minutes = minutes[start + 1 :] or minutes[start:]
    cpu_s = sum(m["cpu_s"] for m in measured_minutes)
    requests = sum(sum(m["served"].values()) for m in measured_minutes)
    checks = {
        "no hung or lost request": not (total.hung or total.lost),
        f"RSS growth after the warm-up, daemon and workers (medians over {window} min)"
        f" < {RSS_GROWTH_TARGET_MB:g} MB": medians[1] - medians[0] < RSS_GROWTH_TARGET_MB,
        f"fds flat (within +/-{FD_TOLERANCE})": abs(fd_change) <= FD_TOLERANCE,
    }
    if last["workers"]:  # the SDKs' memory is the workers'
        checks[f"RSS growth after the warm-up, daemon alone < {MAIN_RSS_GROWTH_TARGET_MB:g} MB"] = (
            growth < MAIN_RSS_GROWTH_TARGET_MB
        )
    log = daemon.logs().splitlines()
    return {
        "minutes": len(minutes),
        "warmup_minutes": warmup_minutes,
        "served": dict(sorted(total.served.items())),
        "errors": dict(sorted(total.errors.items())),
        "hung": dict(total.hung),
        "lost": dict(total.lost),
        "abandoned": total.abandoned,
        "failures": stats.failures,
        "ignored_runs": stats.ignored_runs,
        "rss_mb": [first["rss_mb"], last["rss_mb"]],
        "rss_growth_mb": round(growth, 1),
        "whole_rss_mb": [round(whole[0], 1), round(whole[1], 1)],
        "whole_rss_growth_mb": round(whole[1] - whole[0], 1),
        "whole_median_mb": [round(medians[0], 1), round(medians[1], 1)],
        "window_minutes": window,
        "fds": [first["fds"], last["fds"]],
        "threads": [first["threads"], last["threads"]],
        "peak_mb": last["peak_mb"],
        "cpu_s_per_minute": round(cpu_s / len(measured_minutes), 2),
        "cpu_ms_per_request": round(1000 * cpu_s / requests, 1) if requests else None,
        "reloads": None if reloads is None else vars(reloads),
        "worker_kills": None if worker_kills is None else dict(Counter(worker_kills)),
        "worker_deaths_logged": sum(
            bool(re.search(r"worker died \(.*\); restarting", line)) for line in log
        ),
        "daemon_log": {
            level: sum(f" {level} " in line for line in log) for level in ("WARNING", "ERROR")
        }
        | {"Traceback": sum(line.startswith("Traceback") for line in log)},
        "checks": checks,
        "result": "PASS" if all(checks.values()) else "FAIL",
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(f"summary over {summary['minutes']} min")
    print(f"  served     {counts(summary['served'])}")
    print(f"  errors     {counts(summary['errors'])}")
    print(f"  hung       {counts(summary['hung'])}; lost {counts(summary['lost'])}")
    print(f"  abandoned  {summary['abandoned']} connections vanished mid-request on purpose")
    for failure in summary["failures"][:20]:
        print(f"    {failure}")
    ignored = summary["ignored_runs"]
    print(f"  pipeline runs the fake HA ignored (opened before an answer played): {ignored}")
    rss = summary["rss_mb"]
    print(
        f"  RSS        {rss[0]:.1f} MB at the end of the warm-up (minute"
        f" {summary['warmup_minutes']}) -> {rss[1]:.1f} MB at the end:"
        f" {summary['rss_growth_mb']:+.1f} MB (the daemon's process)"
    )
    whole = summary["whole_rss_mb"]
    print(
        f"  RSS        {whole[0]:.1f} MB -> {whole[1]:.1f} MB:"
        f" {summary['whole_rss_growth_mb']:+.1f} MB (the daemon; its workers and launchers"
        " by PSS)"
    )
    medians, window = summary["whole_median_mb"], summary["window_minutes"]
    print(
        f"  RSS        {medians[0]:.1f} MB -> {medians[1]:.1f} MB:"
        f" {medians[1] - medians[0]:+.1f} MB (the same, medians over the first and the last"
        f" {window} min after the warm-up)"
    )
    print(f"  peak RSS   {summary['peak_mb']:.1f} MB (the daemon's process, VmHWM)")
    per_request = summary["cpu_ms_per_request"]
    print(
        f"  CPU        {summary['cpu_s_per_minute']:.1f} s per minute after the warm-up (the"
        " daemon, its launchers and workers), "
        + ("no request served" if per_request is None else f"{per_request:.1f} ms per request")
        + " served"
    )
    print(f"  fds        {summary['fds'][0]} -> {summary['fds'][1]} (tolerance +/-{FD_TOLERANCE})")
    print(f"  threads    {summary['threads'][0]} -> {summary['threads'][1]}")
    if summary["reloads"] is not None:
        reloads = summary["reloads"]
        took = sorted(reloads["seconds"]) or [0.0]
        print(
            f"  reloads    {reloads['sent']} sent, {reloads['applied']} logged applied before"
            f" the next; SIGHUP -> applied p50 {statistics.median(took):.1f} s, max"
            f" {took[-1]:.1f} s {reloads['note']}"
        )
    if summary["worker_kills"] is not None:
        kills = summary["worker_kills"]
        print(
            f"  killed     workers {counts(kills)}; deaths logged {summary['worker_deaths_logged']}"
        )
    print(f"  daemon log {counts(summary['daemon_log'])}")
    for check, ok in summary["checks"].items():
        print(f"  {'PASS' if ok else 'FAIL'}  {check}")
    print(summary["result"])


# --- main ----------------------------------------------------------------------------


async def soak(args: argparse.Namespace, fakes: Fakes, workdir: Path) -> bool:
    rng = random.Random(args.seed)
    satellite_port = free_port()
    config = config_text(fakes, satellite_port, workdir, args.minutes, args.isolation)
    daemon = Daemon(workdir, config, env=unit_environment())
    stats, traffic = Stats(), Traffic()
    tasks: list[asyncio.Task[None]] = []
    try:
        daemon.wait_listening()
        deadline = time.monotonic() + 20
        while not port_open(satellite_port):
            if time.monotonic() > deadline or daemon.process.poll() is not None:
                raise RuntimeError(f"the satellite is not listening:\n{daemon.logs()}")
            await asyncio.sleep(0.05)
        port = daemon.port
        home_assistant = FakeHomeAssistant(
            satellite_port, port, stats, traffic, rng.randrange(2**32)
        )
        tasks.append(asyncio.create_task(home_assistant.run()))
        await wait_for_log(daemon, "started the satellite")
        await wait_for_log(daemon, "microphone: reading")
        clients = [
            *(
                asr_client(port, stats, traffic, random.Random(rng.random()))
                for _ in range(ASR_CLIENTS)
            ),
            *(
                tts_client(port, stats, traffic, random.Random(rng.random()))
                for _ in range(TTS_CLIENTS)
            ),
            bad_client(port, stats, traffic, random.Random(rng.random())),
        ]
        loops = [asyncio.create_task(client) for client in clients]
        started = time.monotonic()
        faults: list[str] = []
        tasks.append(
            asyncio.create_task(inject_faults(fakes, rng, started, args.warmup_minutes, faults))
        )
        reloads = Reloads() if args.reload_every else None
        if reloads is not None:
            tasks.append(
                asyncio.create_task(reload_periodically(daemon, args.reload_every, reloads))
            )
        worker_kills: list[str] | None = [] if args.kill_worker_every else None
        if worker_kills is not None:
            tasks.append(
                asyncio.create_task(
                    kill_workers_periodically(
                        daemon, args.kill_worker_every, random.Random(rng.random()), worker_kills
                    )
                )
            )
        if not args.json:
            print(
                f"voice-satellite soak: {args.minutes} min, seed {args.seed},"
                f" {os.cpu_count()} CPUs, isolation {args.isolation};"
                f" ASR {ASR_CHAIN}, TTS {TTS_CHAIN}, fakes answer after {FAKE_DELAY_S:g} s;"
                f" deadlines ASR {ASR_DEADLINE_S:g} s, TTS {TTS_DEADLINE_S:g} s"
            )
        minutes: list[dict[str, Any]] = []
        cpu_before = family_cpu_seconds(daemon.process.pid)
        for minute in range(1, args.minutes + 1):
            await sleep_until(started + 60 * minute)
            if daemon.process.poll() is not None:
                raise RuntimeError(f"the daemon exited with {daemon.process.returncode}")
            traffic.pause()
            quiet = await traffic.quiet()
            sample = Sample.read(daemon.process.pid, quiet)
            traffic.resume()
            cpu_s, cpu_before = sample.cpu_s - cpu_before, sample.cpu_s
            record = minute_record(minute, stats.take_minute(), sample, cpu_s, faults[:])
            faults.clear()
            minutes.append(record)
            print(json.dumps(record) if args.json else minute_line(record), flush=True)
        traffic.stop()
        await asyncio.wait(loops, timeout=TTS_DEADLINE_S + MARGIN_S)
        tasks += loops
        stats.take_minute()  # requests that ended after the last sample
        summary = summary_record(minutes, args.warmup_minutes, stats, reloads, worker_kills, daemon)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        code = daemon.stop()
    summary["daemon_exit"] = code
    if args.json:
        print(json.dumps(summary))
    else:
        print_summary(summary)
        print(f"daemon exit code {code}; log: {daemon.log_path}")
    return summary["result"] == "PASS" and code == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=15, help="soak duration, warm-up included")
    parser.add_argument(
        "--warmup-minutes",
        type=int,
        default=5,
        help="minutes of faults injected in turn before growth is measured (5: every fault"
        " of each provider once)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic and faults")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--reload-every",
        type=float,
        default=0.0,
        metavar="S",
        help="send SIGHUP every S seconds, the providers' order swapped (0: off)",
    )
    parser.add_argument(
        "--isolation",
        choices=("process", "inline"),
        default="process",
        help="providers.isolation: the SDKs in worker processes (the default) or in the daemon",
    )
    parser.add_argument(
        "--kill-worker-every",
        type=float,
        default=0.0,
        metavar="S",
        help="SIGKILL one provider worker every S seconds (0: off)",
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the config, daemon log and audio here (default: removed)"
    )
    args = parser.parse_args()
    with running_fakes(FAKE_DELAY_S) as fakes, tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        passed = asyncio.run(soak(args, fakes, workdir))
    raise SystemExit(0 if passed else 1)


if __name__ == "__main__":
    main()
