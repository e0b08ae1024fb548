"""The Wyoming speech endpoint: one handler per client connection, ASR and TTS.

ASR audio is converted and streamed to the provider as it arrives; the transcript (or an
``error``) is written by the task that owns the utterance, so the connection keeps
reading. A client that takes live transcripts also gets ``transcript-start``, a
``transcript-chunk`` per new piece of the hypothesis, and ``transcript-stop`` after the
final ``transcript``. TTS audio is written as the provider produces it. Streaming synthesis
always ends with ``synthesize-stopped``, even after a failure.

A config reload replaces the endpoint's service: new requests use the new providers, while
requests in flight finish on the ones they started with, which are closed afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

from wyoming.asr import Transcribe, Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeStopped,
    SynthesizeTextFormat,
)

from ..audio.pcm import AudioFormat, PcmConverter
from ..buffers import BoundedQueue, BufferFull
from ..errors import ErrorCode, ProviderError
from ..providers.base import AsrProvider, SynthesisOptions, TtsProvider
from ..providers.text import one_piece, stable_prefix
from ..recording import Recorder, Recording
from ..wyoming_handler import BadRequest, GuardedHandler, audio_format_of

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SpeechService:
    """What every connection of the speech endpoint shares."""

    asr: AsrProvider | None
    tts: TtsProvider | None
    info: Event
    # Live transcripts: "auto" sends them to clients that asked for the info first.
    transcript_streaming: Literal["auto", "always", "never"] = "auto"

    async def close(self) -> None:
        for provider in (self.asr, self.tts):
            if provider is not None:
                await provider.close()


def end_request(task: asyncio.Task[None]) -> None:
    """Cancel a request once it has taken its first step: a task cancelled before it starts
    never runs its ``finally`` (a stream's ``synthesize-stopped``)."""
    asyncio.get_running_loop().call_soon(task.cancel)


class SpeechEndpoint:
    """The service new requests get, and every request in flight with the service it uses."""

    def __init__(self, service: SpeechService, recorder: Recorder | None = None) -> None:
        self.service = service
        self.recorder = recorder  # keeps each transcription's audio when recordings are on
        self.stopping = False  # new requests are refused
        self._requests: dict[asyncio.Task[None], SpeechService] = {}
        self.answered: Counter[str] = Counter()  # requests answered, by role (ASR, TTS)
        self.failed: Counter[str] = Counter()  # requests failed, by error code

    def status(self) -> str:
        """What the endpoint has done since it started, for ``systemctl status``."""
        failed = sum(self.failed.values())
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.failed.items()))
        return (
            f"{self.answered['ASR']} transcribed, {self.answered['TTS']} synthesized, "
            f"{failed} failed" + (f" ({codes})" if codes else "")
        )

    def track(self, task: asyncio.Task[None], service: SpeechService) -> None:
        self._requests[task] = service
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._requests.pop(task, None)

    @property
    def in_flight(self) -> int:
        return len(self._requests)

    async def replace(self, service: SpeechService) -> None:
        """Serve new requests with ``service``; close the old one once its requests end."""
        old, self.service = self.service, service
        using_old = [task for task, used in self._requests.items() if used is old]
        try:
            if using_old:
                # Every request is bounded by its deadlines (or ends with its connection).
                await asyncio.wait(using_old)
        finally:
            await old.close()

    async def drain(self, timeout: float) -> int:
        """Refuse new requests, give those in flight ``timeout`` seconds, then end the rest
        (their clients get ``error`` shutting-down). Returns how many were ended."""
        self.stopping = True
        pending: set[asyncio.Task[None]] = set(self._requests)
        if pending and timeout > 0:
            _, pending = await asyncio.wait(pending, timeout=timeout)
        for task in pending:
            end_request(task)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)


def _audio_format(data: dict) -> AudioFormat:
    return AudioFormat(*audio_format_of(data))


def _text_field(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    return value


class _TextStream:
    """Text of one streaming synthesis, from synthesize-start to synthesize-stop."""

    def __init__(self, limit: int) -> None:
        self._pieces: BoundedQueue[str] = BoundedQueue(limit)
        self.stopped = asyncio.Event()

    def add(self, text: str) -> None:
        """Queue a piece; BufferFull (and what waits dropped) when it is over the limit."""
        try:
            self._pieces.put(text)
        except BufferFull:
            self._pieces.drop()
            raise

    def stop(self) -> None:
        self._pieces.end()
        self.stopped.set()

    def pieces(self) -> AsyncIterator[str]:
        return self._pieces.pieces()


class _LiveTranscript:
    """The hypotheses of one utterance, sent as ``transcript-start`` and ``-chunk`` events.

    Chunks only ever append, and carry only text that two successive hypotheses agree on
    (providers revise the tail of a hypothesis as they hear more). Should text already sent
    be revised anyway, chunks pause until the hypothesis extends it again; the final
    ``transcript`` is authoritative.
    """

    def __init__(self, write: Callable[[Event], Awaitable[None]], language: str | None) -> None:
        self._write = write
        self._language = language
        self._sent = ""
        self._started = False
        self._previous = ""  # the last hypothesis
        self._latest = ""  # its stable part
        self._changed = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_changes())

    def update(self, hypothesis: str) -> None:
        """The provider's partial callback (on the event loop; never blocks)."""
        self._latest = stable_prefix(self._previous, hypothesis)
        self._previous = hypothesis
        self._changed.set()

    async def _write_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._extend(self._latest)

    async def _extend(self, hypothesis: str) -> None:
        if not self._started:
            self._started = True
            await self._write(TranscriptStart(language=self._language).event())
        if len(hypothesis) > len(self._sent) and hypothesis.startswith(self._sent):
            chunk, self._sent = hypothesis[len(self._sent) :], hypothesis
            await self._write(TranscriptChunk(text=chunk).event())

    async def stop(self) -> None:
        """Stop following the hypotheses (the writer is idle or finishing a write)."""
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)

    async def finish(self, text: str | None) -> None:
        """Close the stream: the rest of the final ``text`` (None after a failure, when the
        ``error`` has been sent), then ``transcript-stop``."""
        await self.stop()
        if text is not None:
            await self._extend(text)
            await self._write(Transcript(text=text, language=self._language).event())
        if self._started:
            await self._write(TranscriptStop().event())


class _Utterance:
    """Audio of one transcription on its way to the provider."""

    def __init__(self, source: AudioFormat, target: AudioFormat, limit: int) -> None:
        self.converter = PcmConverter(source, target)
        self.audio: BoundedQueue[bytes] = BoundedQueue(limit)
        self.seconds = 0.0
        self.task: asyncio.Task[None] | None = None
        self.recording: Recording | None = None  # the audio as the provider gets it


class SpeechHandler(GuardedHandler):
    """Serves one Wyoming client: describe, transcribe, synthesize (plain and streaming)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        endpoint: SpeechEndpoint,
    ) -> None:
        super().__init__(reader, writer)
        self.endpoint = endpoint
        self._language: str | None = None
        self._utterance: _Utterance | None = None
        self._tts_stream: _TextStream | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._tts_tail: asyncio.Task[None] | None = None
        self._described = False  # the client has read our info (live transcripts advertised)
        self._told_stopping = False

    @property
    def service(self) -> SpeechService:
        """The service new requests use (a config reload may replace it)."""
        return self.endpoint.service

    async def dispatch(self, event: Event) -> None:
        if self.endpoint.stopping and self._starts_request(event):
            if not self._told_stopping:  # once: the rest of the refused request is dropped
                self._told_stopping = True
                await self.send_error(
                    ErrorCode.SHUTTING_DOWN, "the speech endpoint is shutting down; try again"
                )
            return
        if Describe.is_type(event.type):
            self._described = True
            await self.write_event(self.service.info)
        elif Transcribe.is_type(event.type):
            language = event.data.get("language")
            if language is not None and not isinstance(language, str):
                raise BadRequest("'language' must be a string")
            self._language = language or None
        elif AudioStart.is_type(event.type):
            self._start_utterance(_audio_format(event.data))
        elif AudioChunk.is_type(event.type):
            await self._add_audio(event)
        elif AudioStop.is_type(event.type):
            self._end_utterance()
        elif Synthesize.is_type(event.type):
            if self._tts_stream is None:  # inside a stream it only repeats the chunks: ignore
                self._start_synthesis(event.data, one_piece(_text_field(event.data, "text")))
        elif SynthesizeStart.is_type(event.type):
            if self._tts_stream is not None:
                self._tts_stream.stop()  # an unfinished stream ends where the new one starts
            self._tts_stream = _TextStream(self.limits.max_buffer_bytes)
            self._start_synthesis(event.data, self._tts_stream.pieces(), self._tts_stream)
        elif SynthesizeChunk.is_type(event.type):
            if self._tts_stream is None:
                raise BadRequest("synthesize-chunk without synthesize-start")
            try:
                self._tts_stream.add(_text_field(event.data, "text"))
            except BufferFull as exc:  # the stream's synthesis is the last one started
                await self._fail_request(self._tts_tail, "TTS text", exc)
        elif SynthesizeStop.is_type(event.type):
            if self._tts_stream is None:
                raise BadRequest("synthesize-stop without synthesize-start")
            self._tts_stream.stop()
            self._tts_stream = None
        # Anything else (ping, future events) is ignored, as Wyoming peers expect.

    def _starts_request(self, event: Event) -> bool:
        """Whether ``event`` begins (or belongs to no) request: refused while stopping."""
        kind = event.type
        if AudioStart.is_type(kind) or SynthesizeStart.is_type(kind):
            return True
        if AudioChunk.is_type(kind) or AudioStop.is_type(kind):
            return self._utterance is None
        if any(t.is_type(kind) for t in (Synthesize, SynthesizeChunk, SynthesizeStop)):
            return self._tts_stream is None
        return False

    # --- speech to text ----------------------------------------------------------

    def _start_utterance(self, source: AudioFormat) -> _Utterance:
        asr = self.service.asr
        if asr is None:
            raise BadRequest("this endpoint has no speech-to-text provider")
        if self._utterance is not None and self._utterance.task is not None:
            self._utterance.task.cancel()  # a new utterance replaces an unfinished one
        try:
            utterance = _Utterance(source, asr.input_format, self.limits.max_buffer_bytes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if self.endpoint.recorder is not None:
            utterance.recording = self.endpoint.recorder.start("asr", asr.input_format)
        utterance.task = self._spawn(self._transcribe(asr, utterance, self._language))
        self._utterance = utterance
        return utterance

    async def _add_audio(self, event: Event) -> None:
        utterance = self._utterance
        if utterance is None:  # audio-start is optional for lenient clients
            utterance = self._start_utterance(_audio_format(event.data))
        if utterance.task is not None and utterance.task.done():
            return  # the provider already failed; the error has been sent
        pcm = utterance.converter.convert(event.payload or b"")
        utterance.seconds += utterance.converter.source.seconds(len(event.payload or b""))
        if pcm:
            if utterance.recording is not None:
                utterance.recording.add(pcm)
            try:
                utterance.audio.put(pcm)
            except BufferFull as exc:
                utterance.audio.drop()
                await self._fail_request(utterance.task, "ASR audio", exc)

    def _end_utterance(self) -> None:
        if self._utterance is None:
            raise BadRequest("audio-stop without audio")
        self._utterance.audio.end()
        self._utterance = None

    def _streams_transcripts(self) -> bool:
        mode = self.service.transcript_streaming
        return mode == "always" or (mode == "auto" and self._described)

    async def _transcribe(
        self, asr: AsrProvider, utterance: _Utterance, language: str | None
    ) -> None:
        live = _LiveTranscript(self.write_event, language) if self._streams_transcripts() else None

        async def recognize() -> str:
            on_partial = live.update if live is not None else None
            text, after_stop = await asr.recognize(language, utterance.audio.pieces(), on_partial)
            _LOGGER.info(
                "ASR %s: %.1f s of audio -> %d characters, %.0f ms after audio-stop",
                asr.name,
                utterance.seconds,
                len(text),
                after_stop * 1000,
            )
            return text

        try:
            text = await self._guard("ASR", asr.name, recognize())
        finally:
            if utterance.recording is not None:
                utterance.recording.finish()
            if live is not None:
                await live.stop()
        if live is not None:
            await live.finish(text)
        elif text is not None:
            await self.write_event(Transcript(text=text, language=language).event())

    # --- text to speech ----------------------------------------------------------

    def _start_synthesis(
        self, data: dict, texts: AsyncIterator[str], stream: _TextStream | None = None
    ) -> None:
        tts = self.service.tts
        if tts is None:
            raise BadRequest("this endpoint has no text-to-speech provider")
        voice = data.get("voice") or {}
        if not isinstance(voice, dict) or not isinstance(voice.get("name", ""), str):
            raise BadRequest("'voice' must be an object with a string 'name'")
        options = SynthesisOptions(
            voice=voice.get("name") or None,
            ssml=data.get("text_format") == SynthesizeTextFormat.SSML.value,
        )
        previous = self._tts_tail
        self._tts_tail = self._spawn(self._synthesize(tts, texts, options, stream, previous))

    async def _synthesize(
        self,
        tts: TtsProvider,
        texts: AsyncIterator[str],
        options: SynthesisOptions,
        stream: _TextStream | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        fmt = tts.audio_format
        start = AudioStart(rate=fmt.rate, width=fmt.width, channels=fmt.channels).event()

        async def speak() -> bool:
            started = time.monotonic()
            audio_bytes = 0
            # Closed at once however this ends (the client gone, the request cancelled while
            # writing), so the provider is told to stop now, not when the generator is
            # collected.
            async with contextlib.aclosing(tts.synthesize(texts, options)) as audio:
                async for pcm in audio:
                    if audio_bytes == 0:
                        await self.write_event(start)
                    audio_bytes += len(pcm)
                    chunk = AudioChunk(
                        rate=fmt.rate, width=fmt.width, channels=fmt.channels, audio=pcm
                    )
                    await self.write_event(chunk.event())
            if audio_bytes == 0 and stream is None:
                await self.write_event(start)  # a plain request always gets audio-start/stop
            if audio_bytes or stream is None:
                await self.write_event(AudioStop().event())
            _LOGGER.info(
                "TTS %s: %.1f s of audio in %.0f ms",
                tts.name,
                fmt.seconds(audio_bytes),
                (time.monotonic() - started) * 1000,
            )
            return True

        try:
            if previous is not None:  # one at a time, in order; ending this one spares it
                await asyncio.wait([previous])
            await self._guard("TTS", tts.name, speak())
            if stream is not None:
                await stream.stopped.wait()  # answer synthesize-stop only once it came
        finally:
            # Also when the request is ended early, or HA would wait for it forever.
            if stream is not None:
                with contextlib.suppress(ConnectionError):
                    await self.write_event(SynthesizeStopped().event())

    # --- shared ------------------------------------------------------------------

    async def _fail_request(
        self, task: asyncio.Task[None] | None, what: str, exc: BufferFull
    ) -> None:
        """End a request whose data waiting for the provider went over the limit (and has
        been dropped); the connection goes on."""
        if task is not None:
            end_request(task)
        text = f"{what} ahead of the provider: {exc}; request ended"
        _LOGGER.warning("client %s: %s", self.peer, text)
        await self.send_error(ErrorCode.TOO_LARGE, text)

    async def _guard(self, role: str, provider: str, work: Awaitable[T]) -> T | None:
        """Run provider work; a failure becomes an ``error`` event and a log line."""
        try:
            result = await work
        except ProviderError as exc:
            self.endpoint.failed[exc.code.value] += 1
            _LOGGER.warning("%s %s failed [%s]: %s", role, provider, exc.code, exc.message)
            await self.send_error(exc.code, f"{role} {provider}: {exc.message}")
        except asyncio.CancelledError:
            if self.endpoint.stopping:
                await self.send_error(
                    ErrorCode.SHUTTING_DOWN, f"{role} {provider}: ended, the daemon is stopping"
                )
            raise
        except ConnectionError:
            raise
        except Exception:
            self.endpoint.failed[ErrorCode.INTERNAL.value] += 1
            _LOGGER.exception("%s %s: unexpected failure", role, provider)
            await self.send_error(ErrorCode.INTERNAL, f"{role} {provider}: internal error")
        else:
            self.endpoint.answered[role] += 1
            return result
        return None

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        """Run one request; it keeps the service it started with."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.endpoint.track(task, self.service)
        return task

    async def disconnect(self) -> None:
        """Cancel whatever this client started; providers release their sessions."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
