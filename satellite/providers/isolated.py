"""Stand-ins for providers whose SDK runs in a worker process (``providers.isolation:
process``): the same interfaces as the providers, so the speech endpoint, failover and the
circuit breakers do not know the difference.

The worker enforces the provider's deadlines as it would in the daemon; the stand-in
enforces them too, a little later (SLACK_S), so a worker that hangs still ends its request
with ``timeout``, and is then pinged and, when silent, replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..audio.pcm import SPEECH_FORMAT
from ..errors import ErrorCode, ProviderError
from .base import (
    AsrProvider,
    AsrResult,
    AsrSession,
    CallClock,
    Deadlines,
    EncodedAudio,
    PartialCallback,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from .supervisor import (
    Channel,
    Limits,
    Supervisor,
    WorkerProcess,
    WorkerStartError,
    WorkerStats,
)
from .text import WholeText
from .worker_ipc import Message, WorkerSpec

# The worker's own timeout error normally comes first; this one is for a worker that hangs.
SLACK_S = 0.5


async def _answer(
    supervisor: Supervisor, worker: WorkerProcess, channel: Channel, timeout: float
) -> Message:
    """The worker's next answer to a request; a worker silent past ``timeout`` is suspected
    of hanging."""
    try:
        return await channel.next(timeout)
    except TimeoutError:
        supervisor.suspect(worker)
        raise ProviderError(
            ErrorCode.TIMEOUT, f"{supervisor.spec.provider}: no answer within {timeout:g} s"
        ) from None


def _round_trip(supervisor: Supervisor, role: str, sent: float, provider_seconds: float) -> None:
    """Note what a ``role`` request sent at ``sent`` and its answer took between the daemon
    and the worker: the time to the answer, less the provider's own (the worker says it)."""
    supervisor.stats.add_round_trip(role, time.monotonic() - sent - provider_seconds)


# What a stand-in offers until its worker has started and said what the provider offers.
NOT_STARTED = "(not started)"


class IsolatedAsr(AsrProvider):
    """An ASR provider in a worker process."""

    def __init__(self, supervisor: Supervisor, deadlines: Deadlines):
        self.supervisor = supervisor
        self._deadlines = deadlines
        self.name = supervisor.spec.provider
        self.model = NOT_STARTED
        self.languages: tuple[str, ...] = ()

    def describe(self, about: dict[str, Any]) -> None:
        """Take what the provider in the worker advertises."""
        self.name = about["name"]
        self.model = about["model"]
        self.languages = about["languages"]
        self.input_format = about["input_format"]

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        call = CallClock(self._deadlines, slack=SLACK_S)
        worker = await self.supervisor.worker(call.left_of(call.deadlines.connect))
        rid, channel = worker.begin(on_partial)
        try:
            worker.send("open", rid, language, on_partial is not None)
            await worker.flush(call.left_of(call.deadlines.connect))
            await _answer(self.supervisor, worker, channel, call.left_of(call.deadlines.connect))
        except BaseException:
            _abandon(worker, rid)
            raise
        return _IsolatedAsrSession(self.supervisor, worker, rid, channel, call)

    async def close(self) -> None:
        await self.supervisor.close()


def _abandon(worker: WorkerProcess, rid: int) -> None:
    """Tell the worker to drop a request (when it still can) and forget it."""
    with contextlib.suppress(ProviderError):  # a worker gone has dropped it already
        worker.send("cancel", rid)
    worker.end(rid)


class _IsolatedAsrSession(AsrSession):
    def __init__(
        self,
        supervisor: Supervisor,
        worker: WorkerProcess,
        rid: int,
        channel: Channel,
        call: CallClock,
    ) -> None:
        self.supervisor = supervisor
        self._worker = worker
        self._rid = rid
        self._channel = channel
        self._call = call
        self._ended = False

    async def send(self, pcm: bytes) -> None:
        self._channel.check()
        self._worker.send("audio", self._rid, pcm)
        await self._worker.flush(self._call.remaining())

    async def finish(self) -> AsrResult:
        self._channel.check()
        sent = time.monotonic()
        self._worker.send("end", self._rid)
        await self._worker.flush(self._call.remaining())
        timeout = self._call.limit(self._call.deadlines.first_result)
        message = await _answer(self.supervisor, self._worker, self._channel, timeout)
        _round_trip(self.supervisor, "asr", sent, message[3])
        self._ended = True
        self._worker.end(self._rid)
        return message[2]

    async def cancel(self) -> None:
        if not self._ended:
            self._ended = True
            _abandon(self._worker, self._rid)


class IsolatedTts(TtsProvider):
    """A TTS provider in a worker process."""

    def __init__(self, supervisor: Supervisor, deadlines: Deadlines):
        self.supervisor = supervisor
        self._deadlines = deadlines
        self.name = supervisor.spec.provider
        self.model = NOT_STARTED
        self.voices: tuple[Voice, ...] = ()
        self.audio_format = SPEECH_FORMAT
        self._encoded: frozenset[EncodedAudio] = frozenset()

    def describe(self, about: dict[str, Any]) -> None:
        """Take what the provider in the worker advertises."""
        self.name = about["name"]
        self.model = about["model"]
        self.voices = about["voices"]
        self.audio_format = about["audio_format"]
        self._encoded = about["encoded_formats"]

    def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        # A whole text goes with the request: no round trips to pump it piece by piece.
        return self._speak(options, None, text.text if isinstance(text, WholeText) else text)

    def encoded_formats(self) -> frozenset[EncodedAudio]:
        return self._encoded

    def synthesize_encoded(
        self, text: str, options: SynthesisOptions, encoding: EncodedAudio
    ) -> AsyncIterator[bytes]:
        if encoding not in self._encoded:
            raise ValueError(f"{self.name} does not produce {encoding} itself")
        return self._speak(options, encoding, text)

    async def _speak(
        self,
        options: SynthesisOptions,
        encoding: EncodedAudio | None,
        text: str | AsyncIterator[str],
    ) -> AsyncIterator[bytes]:
        call = CallClock(self._deadlines, slack=SLACK_S)
        worker = await self.supervisor.worker(call.left_of(call.deadlines.connect))
        rid, channel = worker.begin()
        done = False
        pump = None
        try:
            whole = text if isinstance(text, str) else None
            sent = time.monotonic()
            worker.send("synth", rid, options.voice, options.ssml, encoding, whole)
            if isinstance(text, str):
                channel.first_input_at = sent
            else:
                pump = _TextPump(worker, rid, channel, call)
                pump.start(text)
            started = False
            while True:
                timeout = self._wait_limit(call, channel, started)
                message = await _answer(self.supervisor, worker, channel, timeout)
                if message[0] == "audio":
                    if not started:
                        _round_trip(self.supervisor, "tts", sent, message[3])
                    started = True
                    yield message[2]
                elif message[0] == "done":
                    done = True
                    return
                elif message[0] == "text-failed":
                    raise message[2]
        finally:
            # Before any await: a request cancelled while this closes (its client gone)
            # must still tell the worker to stop.
            if done:
                worker.end(rid)
            else:
                _abandon(worker, rid)
            if pump is not None:
                await pump.stop()

    def _wait_limit(self, call: CallClock, channel: Channel, started: bool) -> float:
        """The first audio is due within connect + first_result of the first text (the
        worker's own deadline is first_result from when its provider had the text); later
        audio within the total."""
        if started or channel.first_input_at is None:
            return call.remaining()
        since = time.monotonic() - channel.first_input_at
        return call.limit(self._deadlines.connect + self._deadlines.first_result - since)

    async def close(self) -> None:
        await self.supervisor.close()


class _TextPump:
    """Sends a streamed text to the worker piece by piece, each when the worker asks for it
    (text not yet wanted waits in the client's bounded queue, as it would for a provider in
    the daemon); a failure of the text itself (the client sent too much) goes to the
    request as ``text-failed``."""

    def __init__(self, worker: WorkerProcess, rid: int, channel: Channel, call: CallClock) -> None:
        self._worker = worker
        self._rid = rid
        self._channel = channel
        self._call = call
        self._task: asyncio.Task[None] | None = None

    def start(self, text: AsyncIterator[str]) -> None:
        self._task = asyncio.create_task(self._run(text))

    async def _run(self, text: AsyncIterator[str]) -> None:
        channel = self._channel
        try:
            while True:
                await channel.wants_text.wait()
                channel.wants_text.clear()
                try:
                    piece = await anext(text)
                except StopAsyncIteration:
                    break
                if channel.first_input_at is None:
                    channel.first_input_at = time.monotonic()
                self._worker.send("text", self._rid, piece)
                await self._worker.flush(self._call.remaining())
            self._worker.send("end", self._rid)
        except ProviderError:
            return  # the worker's end reaches the request through its channel
        except Exception as exc:
            self._channel.deliver(("text-failed", self._rid, exc))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def start_isolated(
    spec: WorkerSpec,
    limits: Limits,
    stats: WorkerStats,
    deadlines: Deadlines,
    on_late_start: Callable[[], None] | None = None,
) -> dict[str, AsrProvider | TtsProvider]:
    """The stand-ins for the roles of ``spec``'s provider, by role, sharing one worker
    started here. When it cannot start: WorkerStartError, or, given ``on_late_start``, the
    stand-ins fail their requests while the worker is tried again, and ``on_late_start``
    is called once it runs and they offer what its provider does."""
    supervisor = Supervisor(spec, limits, stats)
    kinds = {"asr": IsolatedAsr, "tts": IsolatedTts}
    stand_ins = {role: kinds[role](supervisor, deadlines) for role in spec.roles}

    def describe(about: dict[str, Any]) -> None:
        for role, stand_in in stand_ins.items():
            stand_in.describe(about[role])

    try:
        describe(await supervisor.start())
    except WorkerStartError as error:
        if on_late_start is None:
            raise

        def started_late(about: dict[str, Any]) -> None:
            describe(about)
            on_late_start()

        supervisor.start_later(error, started_late)
    return stand_ins


def follow_logs(providers: list[AsrProvider | TtsProvider]) -> None:
    """Have the workers behind ``providers`` (failover lists included) log at the daemon's
    level and in its format, after a reload changed them."""
    for provider in providers:
        for member in provider.members:
            if isinstance(member, IsolatedAsr | IsolatedTts):
                member.supervisor.follow_logs()
