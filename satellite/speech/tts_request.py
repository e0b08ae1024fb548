"""TTS requests: text, whole (``synthesize``) or streamed (``synthesize-start``, ``-chunk``,
``-stop``), to audio written as the provider produces it.

Streaming synthesis always ends with ``synthesize-stopped``, even after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.tts import SynthesizeStopped, SynthesizeTextFormat

from ..buffers import BoundedQueue, BufferFull
from ..providers.base import SynthesisOptions, TtsProvider
from ..providers.text import WholeText
from ..wyoming_handler import BadRequest, GuardedHandler
from .requests import ClientRequests

_LOGGER = logging.getLogger(__name__)


def _text_field(data: dict, key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"'{key}' must be a string")
    return value


class TextStream:
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


class TtsRequests:
    """The syntheses one client asks for, spoken one at a time in the order they came."""

    def __init__(self, client: GuardedHandler, requests: ClientRequests) -> None:
        self._client = client
        self._requests = requests
        self._stream: TextStream | None = None  # between synthesize-start and -stop
        self._tail: asyncio.Task[None] | None = None  # the last synthesis started

    @property
    def streaming(self) -> bool:
        """Whether a streaming synthesis is taking text: it began before synthesize-stop."""
        return self._stream is not None

    def synthesize(self, data: dict) -> None:
        """A whole text (``synthesize``)."""
        if self._stream is None:  # inside a stream it only repeats the chunks: ignore
            self._start(data, WholeText(_text_field(data, "text")))

    def start_stream(self, data: dict) -> None:
        if self._stream is not None:
            self._stream.stop()  # an unfinished stream ends where the new one starts
        self._stream = TextStream(self._client.limits.max_buffer_bytes)
        self._start(data, self._stream.pieces(), self._stream)

    async def add_text(self, data: dict) -> None:
        if self._stream is None:
            raise BadRequest("synthesize-chunk without synthesize-start")
        try:
            self._stream.add(_text_field(data, "text"))
        except BufferFull as exc:  # the stream's synthesis is the last one started
            await self._requests.fail(self._tail, "TTS text", exc)

    def stop_stream(self) -> None:
        if self._stream is None:
            raise BadRequest("synthesize-stop without synthesize-start")
        self._stream.stop()
        self._stream = None

    def _start(
        self, data: dict, texts: AsyncIterator[str], stream: TextStream | None = None
    ) -> None:
        tts = self._requests.service.tts
        if tts is None:
            raise BadRequest("this endpoint has no text-to-speech provider")
        voice = data.get("voice") or {}
        if not isinstance(voice, dict) or not isinstance(voice.get("name", ""), str):
            raise BadRequest("'voice' must be an object with a string 'name'")
        options = SynthesisOptions(
            voice=voice.get("name") or None,
            ssml=data.get("text_format") == SynthesizeTextFormat.SSML.value,
        )
        previous = self._tail
        self._tail = self._requests.spawn(self._synthesize(tts, texts, options, stream, previous))

    async def _synthesize(
        self,
        tts: TtsProvider,
        texts: AsyncIterator[str],
        options: SynthesisOptions,
        stream: TextStream | None,
        previous: asyncio.Task[None] | None,
    ) -> None:
        write = self._client.write_event
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
                        await write(start)
                    audio_bytes += len(pcm)
                    chunk = AudioChunk(
                        rate=fmt.rate, width=fmt.width, channels=fmt.channels, audio=pcm
                    )
                    await write(chunk.event())
            if audio_bytes == 0 and stream is None:
                await write(start)  # a plain request always gets audio-start/stop
            if audio_bytes or stream is None:
                await write(AudioStop().event())
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
            await self._requests.guard("TTS", tts.name, speak())
            if stream is not None:
                await stream.stopped.wait()  # answer synthesize-stop only once it came
        finally:
            # Also when the request is ended early, or HA would wait for it forever.
            if stream is not None:
                with contextlib.suppress(ConnectionError):
                    await write(SynthesizeStopped().event())
