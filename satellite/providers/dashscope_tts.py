"""Text to speech with DashScope CosyVoice (``tts_v2``) over its websocket API.

``tts_v2.SpeechSynthesizer`` takes the URL as ``url=`` but copies the key from the
``dashscope.api_key`` global in its constructor (then uses its copy when it connects), so
only the construction runs under the globals lock.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from dashscope.audio.tts_v2 import AudioFormat as SdkAudioFormat
from dashscope.audio.tts_v2 import ResultCallback, SpeechSynthesizer
from dashscope.common.error import RequestFailure

from ..audio.pcm import AudioFormat
from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
from ..config import DashScopeConfig
from .base import (
    CallClock,
    Credentials,
    Deadlines,
    ProviderError,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from .dashscope_common import Failures, SdkCalls, api_key_global, shutdown_websocket

# How long a cancelled synthesis waits for the server to confirm before the socket is closed.
CANCEL_WAIT_MILLIS = 1000
_LANGUAGES = ("zh", "en")

# Well-known CosyVoice v2 system voices (all speak Chinese and English).
CATALOGUE = (
    Voice("longxiaochun_v2", _LANGUAGES, "Longxiaochun: bright, articulate female voice"),
    Voice("longxiaoxia_v2", _LANGUAGES, "Longxiaoxia: calm, authoritative female voice"),
    Voice("longwan_v2", _LANGUAGES, "Longwan: warm, positive female voice"),
    Voice("longhua_v2", _LANGUAGES, "Longhua: lively, sweet female voice"),
    Voice("loongbella_v2", _LANGUAGES, "Bella: crisp, capable female voice"),
    Voice("longcheng_v2", _LANGUAGES, "Longcheng: thoughtful young male voice"),
    Voice("longshu_v2", _LANGUAGES, "Longshu: steady young male voice"),
    Voice("longxiaocheng_v2", _LANGUAGES, "Longxiaocheng: deep, magnetic male voice"),
)

# ("started" | "audio" | "complete" | "task-failed" | "socket-error" | "error", value)
Event = tuple[str, Any]


def voice_list(default: str, extra: dict[str, tuple[str, ...]]) -> tuple[Voice, ...]:
    """The catalogue plus configured voices, the default first (listed even if unknown)."""
    voices = {voice.name: voice for voice in CATALOGUE}
    for name, languages in extra.items():
        description = voices[name].description if name in voices else ""
        voices[name] = Voice(name, tuple(languages) or _LANGUAGES, description)
    first = voices.pop(default, None) or Voice(default, _LANGUAGES, "configured voice")
    return (first, *voices.values())


class _Callback(ResultCallback):
    """Runs on the SDK's websocket thread: hands everything to the synthesis queue."""

    def __init__(self, events: CallbackQueue[Event]) -> None:
        self._events = events

    def on_open(self) -> None:  # task-started, just before the first text is sent
        self._events.put(("started", time.monotonic()))

    def on_data(self, data: bytes) -> None:
        self._events.put(("audio", bytes(data)))

    def on_complete(self) -> None:
        self._events.put(("complete", None))

    def on_error(self, message: str) -> None:  # a task-failed event, as raw JSON
        self._events.put(("task-failed", message))


class _Synthesizer(SpeechSynthesizer):
    """Reports websocket failures, which the SDK only logs: a refused or unauthorized
    connection would otherwise surface as the SDK's 5 s connect timeout."""

    def __init__(self, events: CallbackQueue[Event], **kwargs: Any) -> None:
        super().__init__(callback=_Callback(events), **kwargs)
        self._socket_events = events

    def on_error(self, ws: object, error: object) -> None:
        self._socket_events.put(("socket-error", error))

    def close(self) -> None:
        self.complete_event.set()  # the task cannot finish now: release streaming_complete()
        shutdown_websocket(self.ws)


def _abort(synthesizer: SpeechSynthesizer) -> None:
    """Blocking: cancel the task (if it started) and close the socket."""
    try:
        synthesizer.streaming_cancel(CANCEL_WAIT_MILLIS)
    finally:
        synthesizer.close()


class _Synthesis:
    """One ``synthesize`` call: ``feed`` (a task) sends the text as it arrives while the
    generator reads audio from the queue, so audio flows while text is still coming."""

    def __init__(self, config: DashScopeConfig, deadlines: Deadlines, key: str, voice: str) -> None:
        self._config = config
        self._deadlines = deadlines
        self._key = key
        self._voice = voice
        self._failures = Failures("synthesis", config.websocket_url, key)
        self._events: CallbackQueue[Event] = CallbackQueue()
        self._calls = SdkCalls()
        self._synthesizer: _Synthesizer | None = None
        self._clock: CallClock | None = None  # starts with the first text
        self._started_at: float | None = None  # task-started: the first text goes out
        self._audio_started = False
        self._complete = False

    async def feed(self, text: AsyncIterator[str]) -> None:
        """Send every non-blank piece, then finish; failures go to the queue."""
        try:
            async for piece in text:
                if not piece.strip():
                    continue
                if self._synthesizer is None:
                    await self._start(piece)
                else:
                    await self._send(piece)
            if self._synthesizer is None:
                self._events.put(("complete", None))  # nothing to say: no connection made
            else:
                await self._finish()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # raised again by the reading side
            self._events.put(("error", exc))

    async def next_audio(self) -> bytes | None:
        """The next audio chunk, or None once all audio has come."""
        while True:
            try:
                kind, value = await self._events.get(self._wait_limit())
            except TimeoutError:
                raise self._timeout() from None
            if kind == "audio":
                self._audio_started = True
                return value
            if kind == "complete":
                self._complete = True
                return None
            if kind == "started":
                self._started_at = value
            elif kind == "error":
                raise value
            elif kind == "task-failed":
                raise self._task_failed(value)
            elif kind == "socket-error":
                raise self._socket_error(value)

    def close(self) -> None:
        """Cancel an unfinished task in the background."""
        if self._synthesizer is None or self._complete:
            return
        if self._started_at is None:  # still connecting: nothing to cancel, cut it now rather
            self._synthesizer.close()  # than after the SDK's 5 s connect loop (non-blocking)
        run_blocking_detached(self._calls.close, _abort, self._synthesizer)

    async def _start(self, piece: str) -> None:
        """Connect, start the task and send the first text, within the connect deadline."""
        self._clock = CallClock(self._deadlines)
        self._synthesizer = await run_blocking(self._create)
        try:
            async with asyncio.timeout(self._clock.limit(self._deadlines.connect)):
                await run_blocking(self._calls.run, self._synthesizer.streaming_call, piece)
        except TimeoutError:  # ours, or the SDK's own connect / task-started timeouts
            raise self._failures.connect_timeout(self._clock) from None
        except RequestFailure as exc:  # task-failed instead of task-started
            raise self._failures.task_failed(exc.name, exc.message) from None
        except Exception as exc:
            raise self._failures.connect(exc) from None

    def _create(self) -> _Synthesizer:
        tts = self._config.tts
        with api_key_global(self._key):
            return _Synthesizer(
                self._events,
                model=tts.model,
                voice=self._voice,
                format=getattr(SdkAudioFormat, f"PCM_{tts.default_sample_rate}HZ_MONO_16BIT"),
                volume=tts.volume,
                speech_rate=tts.speech_rate,
                pitch_rate=tts.pitch,
                url=self._config.websocket_url,
            )

    async def _send(self, piece: str) -> None:
        assert self._synthesizer is not None
        try:
            await run_blocking(self._calls.run, self._synthesizer.streaming_call, piece)
        except Exception as exc:
            raise self._failures.lost(exc) from None

    async def _finish(self) -> None:
        """Send finish-task; the SDK waits for task-finished (bounded by the total deadline)."""
        assert self._synthesizer is not None and self._clock is not None
        millis = max(1, int(self._clock.limit(self._deadlines.total) * 1000))
        try:
            await run_blocking(self._synthesizer.streaming_complete, millis)
        except TimeoutError:
            raise self._timeout() from None
        except Exception as exc:
            raise self._failures.lost(exc) from None

    def _wait_limit(self) -> float | None:
        if self._clock is None or self._started_at is None:
            return None  # no text yet, or connecting (``_start`` keeps that deadline)
        if self._audio_started:
            return self._clock.limit(self._deadlines.total)
        waited = time.monotonic() - self._started_at
        return self._clock.limit(self._deadlines.first_result - waited)

    def _timeout(self) -> ProviderError:
        assert self._clock is not None
        phase = self._deadlines.total if self._audio_started else self._deadlines.first_result
        return self._failures.timeout(self._clock, phase)

    def _task_failed(self, message: str) -> ProviderError:
        try:
            header = json.loads(message)["header"]
            return self._failures.task_failed(header.get("error_code"), header.get("error_message"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._failures.task_failed("unknown", message)

    def _socket_error(self, error: object) -> ProviderError:
        status = getattr(error, "status_code", None)
        if status in (401, 403):
            return self._failures.auth(status)
        if self._started_at is None:
            return self._failures.connect(error)
        return self._failures.lost(error)


class DashScopeTtsProvider(TtsProvider):
    name = "dashscope"

    def __init__(
        self, config: DashScopeConfig, credentials: Credentials, default_voice: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._default_voice = default_voice or config.tts.default_voice
        self.model = config.tts.model
        self.voices = voice_list(self._default_voice, config.tts.voices)
        self.audio_format = AudioFormat(config.tts.default_sample_rate, 2, 1)
        self._deadlines = Deadlines.from_timeouts(config.timeouts)

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        # SSML goes through unchanged: CosyVoice v2 reads SSML in plain text for some voices.
        key = self._credentials.require("DashScope")
        synthesis = _Synthesis(
            self._config, self._deadlines, key, options.voice or self._default_voice
        )
        feeder = asyncio.create_task(synthesis.feed(text))
        try:
            while (chunk := await synthesis.next_audio()) is not None:
                yield chunk
        finally:
            feeder.cancel()
            synthesis.close()
