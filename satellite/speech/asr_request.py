"""ASR requests: an utterance's audio, from ``audio-start`` to ``audio-stop``, to a transcript.

The audio is converted and streamed to the provider as it arrives; the transcript (or an
``error``) is written by the task that owns the utterance, so the connection keeps reading.
"""

from __future__ import annotations

import asyncio
import logging

from wyoming.event import Event

from ..audio.pcm import AudioFormat, PcmConverter
from ..buffers import BoundedQueue, BufferFull
from ..providers.base import AsrProvider, AsrResult
from ..recording import Recording
from ..wyoming_handler import BadRequest, GuardedHandler, audio_format_of
from .live_transcript import LiveTranscript, transcript_event
from .requests import ClientRequests

_LOGGER = logging.getLogger(__name__)


class Utterance:
    """Audio of one transcription on its way to the provider."""

    def __init__(self, source: AudioFormat, target: AudioFormat, limit: int) -> None:
        self.converter = PcmConverter(source, target)
        self.audio: BoundedQueue[bytes] = BoundedQueue(limit)
        self.seconds = 0.0
        self.task: asyncio.Task[None] | None = None
        self.recording: Recording | None = None  # the audio as the provider gets it


class AsrRequests:
    """The transcriptions one client asks for: the utterance being received, and the task
    that transcribes each."""

    def __init__(self, client: GuardedHandler, requests: ClientRequests) -> None:
        self._client = client
        self._requests = requests
        self._language: str | None = None
        self._utterance: Utterance | None = None
        self.described = False  # the client has read our info (live transcripts advertised)

    @property
    def receiving(self) -> bool:
        """Whether an utterance's audio is arriving: it began before audio-stop."""
        return self._utterance is not None

    def set_language(self, data: dict) -> None:
        """The language of the utterances that follow, from a ``transcribe`` event."""
        language = data.get("language")
        if language is not None and not isinstance(language, str):
            raise BadRequest("'language' must be a string")
        self._language = language or None

    def start(self, data: dict) -> Utterance:
        """Begin an utterance in the audio format of ``data``; its transcription starts."""
        source = AudioFormat(*audio_format_of(data))
        asr = self._requests.service.asr
        if asr is None:
            raise BadRequest("this endpoint has no speech-to-text provider")
        if self._utterance is not None and self._utterance.task is not None:
            self._utterance.task.cancel()  # a new utterance replaces an unfinished one
        try:
            utterance = Utterance(source, asr.input_format, self._client.limits.max_buffer_bytes)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        recorder = self._requests.endpoint.recorder
        if recorder is not None:
            utterance.recording = recorder.start("asr", asr.input_format)
        utterance.task = self._requests.spawn(self._transcribe(asr, utterance, self._language))
        self._utterance = utterance
        return utterance

    async def add_audio(self, event: Event) -> None:
        utterance = self._utterance
        if utterance is None:  # audio-start is optional for lenient clients
            utterance = self.start(event.data)
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
                await self._requests.fail(utterance.task, "ASR audio", exc)

    def end(self) -> None:
        """The utterance's audio is complete (``audio-stop``)."""
        if self._utterance is None:
            raise BadRequest("audio-stop without audio")
        self._utterance.audio.end()
        self._utterance = None

    def _streams_transcripts(self) -> bool:
        mode = self._requests.service.transcript_streaming
        return mode == "always" or (mode == "auto" and self.described)

    async def _transcribe(
        self, asr: AsrProvider, utterance: Utterance, language: str | None
    ) -> None:
        write = self._client.write_event
        live = LiveTranscript(write, language) if self._streams_transcripts() else None

        async def recognize() -> AsrResult:
            on_partial = live.update if live is not None else None
            result, after_stop = await asr.recognize(language, utterance.audio.pieces(), on_partial)
            _LOGGER.info(
                "ASR %s: %.1f s of audio -> %d characters%s%s, %.0f ms after audio-stop",
                asr.name,
                utterance.seconds,
                len(result.text),
                "" if result.confidence is None else f", confidence {result.confidence:.2f}",
                "" if result.language is None else f", language {result.language}",
                after_stop * 1000,
            )
            return result

        try:
            result = await self._requests.guard("ASR", asr.name, recognize())
        finally:
            if utterance.recording is not None:
                utterance.recording.finish()
            if live is not None:
                await live.stop()
        if live is not None:
            await live.finish(result)
        elif result is not None:
            await write(transcript_event(result, language))
