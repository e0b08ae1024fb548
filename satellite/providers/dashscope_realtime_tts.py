"""Text to speech with DashScope's Qwen realtime TTS models (qwen3-tts-flash-realtime,
qwen-tts-realtime).

``QwenTtsRealtime`` takes the URL as ``url=`` but copies the key from the ``dashscope.api_key``
global in its constructor, so only the construction runs under the globals lock. In
``server_commit`` mode the text goes out as it arrives and the server decides when to speak;
in ``commit`` mode each sentence is committed as soon as it is complete.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator

import websocket
from dashscope.audio.qwen_tts_realtime import AudioFormat as SdkAudioFormat
from dashscope.audio.qwen_tts_realtime import QwenTtsRealtime

from ..audio.pcm import AudioFormat
from ..errors import ProviderError
from ..provider_specs.dashscope import DashScopeConfig, DashScopeTts
from ..provider_specs.dashscope_models import tts_model
from .base import CallClock, Credentials, Deadlines, SynthesisOptions, TtsProvider
from .dashscope_common import Failures, api_key_global, model_voices, stream_audio
from .dashscope_realtime import RealtimeCallback, RealtimeConnection, RealtimeSessions
from .text import SentenceSplitter


class _Tts(QwenTtsRealtime):
    """Reports socket errors and unreadable frames, which the SDK only logs: a refused
    connection would otherwise wait out its 5 s connect loop, a broken frame go unnoticed."""

    callback: RealtimeCallback

    def on_message(self, ws: websocket.WebSocketApp, message: object) -> None:
        self.callback.message(ws, message)

    def on_error(self, ws: object, error: object) -> None:
        self.callback.socket_error(error)


class _Synthesis:
    """One ``synthesize`` call: ``feed`` (a task) sends the text as it arrives while the
    generator reads audio, so audio flows while text is still coming."""

    def __init__(
        self, sessions: RealtimeSessions, config: DashScopeTts, deadlines: Deadlines, voice: str
    ):
        self._sessions = sessions
        self._config = config
        self._deadlines = deadlines
        self._voice = voice
        self._splitter = SentenceSplitter() if config.mode == "commit" else None
        # The session, once configured (None: there was no text to speak).
        self._started: asyncio.Future[RealtimeConnection | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._connection: RealtimeConnection | None = None
        self._clock: CallClock | None = None  # starts with the first text
        self._text_sent_at: float | None = None
        self._audio_started = False
        self._complete = False

    async def feed(self, text: AsyncIterator[str]) -> None:
        """Send every piece (connecting on the first non-blank one), then finish; failures go
        to the reading side."""
        try:
            async for piece in text:
                if self._connection is None:
                    if not piece.strip():
                        continue
                    self._clock = CallClock(self._deadlines)
                    self._connection = await self._sessions.acquire(self._clock, self._update)
                    self._started.set_result(self._connection)
                if piece:
                    self._send(self._connection, piece)
            if self._connection is None:
                self._started.set_result(None)
            else:
                self._finish(self._connection)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # raised again by the reading side
            if self._connection is None:
                self._started.set_exception(exc)
            else:
                self._connection.report(exc)

    async def next_audio(self) -> bytes | None:
        """The next audio chunk, or None once all audio has come."""
        connection = await self._started
        if connection is None:
            return None
        while True:
            try:
                event = await connection.next_event(self._wait_limit())
            except TimeoutError:
                raise self._timeout(connection) from None
            kind = event.get("type")
            if kind == "response.audio.delta":
                if audio := base64.b64decode(event.get("delta") or ""):
                    self._audio_started = True
                    return audio
            elif kind == "session.finished":
                self._complete = True
                return None

    def close(self) -> None:
        """Release the session. Unless it has finished (the client has gone, or the request
        failed), first tell the server to stop: drop the text it has not spoken
        (``input_text_buffer.clear``) and cancel the response it is giving
        (``response.cancel``), then cut the connection."""
        connection = self._connection
        if connection is None:
            return  # nothing connected, or the cancelled feeder aborts its connect
        if self._complete:
            connection.end(finish_session=False)
        else:
            connection.cancel(
                connection.client.clear_appended_text, connection.client.cancel_response
            )

    def _update(self, client: QwenTtsRealtime) -> None:
        config = self._config
        client.update_session(
            self._voice,
            response_format=SdkAudioFormat.PCM_24000HZ_MONO_16BIT,
            mode=config.mode,
            sample_rate=config.default_sample_rate,
            volume=config.volume,
            speech_rate=config.speech_rate,
            pitch_rate=config.pitch,
            language_type=config.language_type,
            instructions=config.instructions,
        )

    def _send(self, connection: RealtimeConnection, piece: str) -> None:
        if self._splitter is None:
            self._append(connection, piece)
            return
        for sentence in self._splitter.feed(piece):
            self._append(connection, sentence)
            connection.call(connection.client.commit)

    def _finish(self, connection: RealtimeConnection) -> None:
        """Commit what is left (commit mode) and end the session: the server speaks the rest,
        then answers session.finished."""
        for sentence in self._splitter.flush() if self._splitter is not None else []:
            self._append(connection, sentence)
            connection.call(connection.client.commit)
        connection.call(connection.client.finish)

    def _append(self, connection: RealtimeConnection, text: str) -> None:
        connection.call(connection.client.append_text, text)
        if self._text_sent_at is None:
            self._text_sent_at = time.monotonic()

    def _wait_limit(self) -> float:
        assert self._clock is not None
        return self._clock.output_limit(self._text_sent_at, self._audio_started)

    def _timeout(self, connection: RealtimeConnection) -> ProviderError:
        assert self._clock is not None
        phase = self._clock.output_phase(self._text_sent_at, self._audio_started)
        return connection.failures.timeout(self._clock, phase)


class QwenRealtimeTtsProvider(TtsProvider):
    name = "dashscope"

    def __init__(
        self, config: DashScopeConfig, credentials: Credentials, default_voice: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._default_voice = default_voice or config.tts.default_voice
        self.model = config.tts.model
        self.voices = model_voices(tts_model(self.model), self._default_voice, config.tts.voices)
        self.audio_format = AudioFormat(config.tts.default_sample_rate, 2, 1)
        self._deadlines = Deadlines.from_timeouts(config.timeouts)
        failures = Failures("synthesis", config.realtime_url, credentials.key)
        self._sessions = RealtimeSessions(
            config.warm_connections, self._client, failures, self._deadlines
        )

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        # SSML is not understood by these models: the text goes through unchanged.
        self._credentials.require("DashScope")
        voice = options.voice or self._default_voice
        synthesis = _Synthesis(self._sessions, self._config.tts, self._deadlines, voice)
        async for chunk in stream_audio(synthesis, text):
            yield chunk

    async def prepare(self) -> None:
        if self._credentials.key:
            await self._sessions.fill()

    async def close(self) -> None:
        await self._sessions.close()

    def _client(self, callback: RealtimeCallback) -> _Tts:
        with api_key_global(self._credentials.key):
            return _Tts(self._config.tts.model, callback=callback, url=self._config.realtime_url)
