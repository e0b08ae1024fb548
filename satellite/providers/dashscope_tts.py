"""Text to speech with DashScope CosyVoice (``tts_v2``) over its websocket API.

``tts_v2.SpeechSynthesizer`` takes the URL as ``url=`` but copies the key from the
``dashscope.api_key`` global in its constructor (then uses its copy when it connects), so
only the construction runs under the globals lock.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from dashscope.audio.tts_v2 import AudioFormat as SdkAudioFormat
from dashscope.audio.tts_v2 import ResultCallback, SpeechSynthesizer
from dashscope.common.error import RequestFailure

from ..audio.pcm import AudioFormat
from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
from ..errors import ProviderError
from ..provider_specs.dashscope import DashScopeConfig
from ..provider_specs.dashscope_models import tts_model
from .base import (
    CallClock,
    Credentials,
    Deadlines,
    EncodedAudio,
    SynthesisOptions,
    TtsProvider,
)
from .dashscope_common import (
    Failures,
    SdkCalls,
    api_key_global,
    cut_websocket,
    model_voices,
    shutdown_websocket,
    stream_audio,
)
from .text import WholeText
from .warm_pool import WarmPool

_LOGGER = logging.getLogger(__name__)

# How long a cancelled synthesis waits for the server to confirm before the socket is closed.
CANCEL_WAIT_MILLIS = 1000
# A warm connection idle this long is replaced: servers drop idle websockets.
MAX_IDLE_SECONDS = 25.0

# What the service encodes itself, by sample rate.
_ENCODED_FORMATS = {
    EncodedAudio.MP3: {
        8000: SdkAudioFormat.MP3_8000HZ_MONO_128KBPS,
        16000: SdkAudioFormat.MP3_16000HZ_MONO_128KBPS,
        22050: SdkAudioFormat.MP3_22050HZ_MONO_256KBPS,
        24000: SdkAudioFormat.MP3_24000HZ_MONO_256KBPS,
        44100: SdkAudioFormat.MP3_44100HZ_MONO_256KBPS,
        48000: SdkAudioFormat.MP3_48000HZ_MONO_256KBPS,
    },
    EncodedAudio.OGG_OPUS: {
        8000: SdkAudioFormat.OGG_OPUS_8KHZ_MONO_32KBPS,
        16000: SdkAudioFormat.OGG_OPUS_16KHZ_MONO_32KBPS,
        24000: SdkAudioFormat.OGG_OPUS_24KHZ_MONO_32KBPS,
        48000: SdkAudioFormat.OGG_OPUS_48KHZ_MONO_32KBPS,
    },
}


# ("started" | "audio" | "complete" | "task-failed" | "socket-error" | "error", value)
Event = tuple[str, Any]


class _Sink:
    """Where a synthesizer's events go: the queue of the request using it (None while warm)."""

    def __init__(self, events: CallbackQueue[Event] | None) -> None:
        self.events = events

    def put(self, event: Event) -> None:
        events = self.events  # read once: a request may take the synthesizer meanwhile
        if events is not None:
            events.put(event)


class _Callback(ResultCallback):
    """Runs on the SDK's websocket thread: hands everything to the synthesis queue."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink

    def on_open(self) -> None:  # task-started, just before the first text is sent
        self._sink.put(("started", time.monotonic()))

    def on_data(self, data: bytes) -> None:
        self._sink.put(("audio", bytes(data)))

    def on_complete(self) -> None:
        self._sink.put(("complete", None))

    def on_error(self, message: str) -> None:  # a task-failed event, as raw JSON
        self._sink.put(("task-failed", message))


class _Synthesizer(SpeechSynthesizer):
    """Reports websocket failures, which the SDK only logs: a refused or unauthorized
    connection would otherwise surface as the SDK's 5 s connect timeout.

    A warm synthesizer (pre-connected in a ``WarmPool``) never reports a socket failure that
    comes before its task has started: its connection went stale, and the request using it
    connects anew instead.

    The SDK's ``SpeechSynthesizerObjectPool`` does not fit: it is a process-wide singleton
    whose ``__init__`` runs again on every construction (each time starting another
    never-ending, non-daemon reconnect thread), it connects all its objects one after the
    other, blocking, in that constructor, and it hands out plain ``SpeechSynthesizer``s
    without our failure reporting and thread-safe close. A synthesizer built directly closes
    its socket after its task, so each warm one serves one request.
    """

    def __init__(self, sink: _Sink, **kwargs: Any) -> None:
        super().__init__(callback=_Callback(sink), **kwargs)
        self.sink = sink
        self.warm = False
        self.failure: object = None  # why a warm connection failed
        self._closed = False

    def connect(self, timeout: float) -> None:
        """Blocking: open the websocket ahead of the task, as the SDK's own pool does. A
        failed connect closes it: its handshake may still be under way."""
        self.warm = True
        try:
            self._SpeechSynthesizer__connect(timeout)
        except BaseException:
            self._closed = True
            raise
        finally:
            if self._closed:  # close() may have come before the socket it shuts existed
                self._cut()

    def _cut(self) -> None:
        cut_websocket(self.ws, getattr(self, "thread", None))

    @property
    def ready(self) -> bool:
        """Warm, still connected, and nothing has gone wrong since."""
        return (
            not self._closed
            and self._SpeechSynthesizer__is_connected()
            and not self.start_event.is_set()
        )

    def on_error(self, ws: object, error: object) -> None:
        if self.warm and not self.start_event.is_set():
            self.failure = error
            # A streaming_call waiting for task-started raises this at once.
            self._receiver_error = ConnectionError(f"warm connection lost: {error}")
            self.start_event.set()
            shutdown_websocket(self.ws)
            return
        self.sink.put(("socket-error", error))

    def close(self) -> None:
        """Non-blocking; also called by the SDK after a task."""
        self._closed = True
        self.complete_event.set()  # the task cannot finish now: release streaming_complete()
        shutdown_websocket(self.ws)


def _new_synthesizer(
    config: DashScopeConfig,
    key: str,
    voice: str,
    events: CallbackQueue[Event] | None,
    encoded: SdkAudioFormat | None = None,
) -> _Synthesizer:
    """Blocking (waits for the globals lock): a synthesizer, not yet connected, producing
    PCM at the configured rate, or the ``encoded`` format."""
    tts = config.tts
    pcm = getattr(SdkAudioFormat, f"PCM_{tts.default_sample_rate}HZ_MONO_16BIT")
    with api_key_global(key):
        return _Synthesizer(
            _Sink(events),
            model=tts.model,
            voice=voice,
            format=pcm if encoded is None else encoded,
            volume=tts.volume,
            speech_rate=tts.speech_rate,
            pitch_rate=tts.pitch,
            url=config.websocket_url,
        )


def _socket_failure(failures: Failures, error: object, started: bool) -> ProviderError:
    status = getattr(error, "status_code", None)
    if status in (401, 403):
        return failures.auth(status)
    return failures.lost(error) if started else failures.connect(error)


async def _connect_warm(synthesizer: _Synthesizer, timeout: float, failures: Failures) -> None:
    """Connect a synthesizer ahead of its request; ProviderError if it cannot."""
    try:
        await run_blocking(synthesizer.connect, timeout)
    except Exception:
        if isinstance(synthesizer.failure, Exception):  # e.g. the handshake's HTTP 401
            exc = synthesizer.failure
        elif isinstance(exc, TimeoutError):  # the SDK's message names its default 5 s
            exc = TimeoutError(f"no connection within {timeout:g} s")
        raise _socket_failure(failures, exc, started=False) from None


def _abort(synthesizer: SpeechSynthesizer) -> None:
    """Blocking: cancel the task (if it started) and close the socket."""
    try:
        synthesizer.streaming_cancel(CANCEL_WAIT_MILLIS)
    finally:
        synthesizer.close()


class _Synthesis:
    """One ``synthesize`` call: ``feed`` (a task) sends the text as it arrives while the
    generator reads audio from the queue, so audio flows while text is still coming."""

    def __init__(
        self,
        config: DashScopeConfig,
        deadlines: Deadlines,
        key: str,
        voice: str,
        pool: WarmPool[_Synthesizer] | None,
        encoded: SdkAudioFormat | None = None,
    ) -> None:
        self._config = config
        self._deadlines = deadlines
        self._key = key
        self._voice = voice
        self._pool = pool  # warm synthesizers for this voice, if any
        self._encoded = encoded  # the format asked for instead of PCM (never warm)
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
        """Start the task and send the first text, within the connect deadline: on a warm
        connection if one is ready, else (or if it turns out stale) on a new one."""
        self._clock = CallClock(self._deadlines)
        warm = self._pool.take() if self._pool is not None else None
        if warm is not None:
            warm.sink.events = self._events
            self._synthesizer = warm
            if await self._run_task(piece):
                return
            warm.sink.events = None
            warm.close()
            _LOGGER.debug("warm connection was stale: connecting anew")
        self._synthesizer = await run_blocking(
            _new_synthesizer, self._config, self._key, self._voice, self._events, self._encoded
        )
        await self._run_task(piece)

    async def _run_task(self, piece: str) -> bool:
        """Send run-task and the first text; False if a warm connection proved stale first."""
        assert self._synthesizer is not None and self._clock is not None
        try:
            async with asyncio.timeout(self._clock.limit(self._deadlines.connect)):
                await run_blocking(self._calls.run, self._synthesizer.streaming_call, piece)
        except TimeoutError:  # ours, or the SDK's own connect / task-started timeouts
            raise self._failures.connect_timeout(self._clock) from None
        except RequestFailure as exc:  # task-failed instead of task-started
            raise self._failures.task_failed(exc.name, exc.message) from None
        except Exception as exc:
            if self._synthesizer.warm:
                return False
            raise self._failures.connect(exc) from None
        return True

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
        return self._clock.output_limit(self._started_at, self._audio_started)

    def _timeout(self) -> ProviderError:
        assert self._clock is not None
        phase = self._clock.output_phase(self._started_at, self._audio_started)
        return self._failures.timeout(self._clock, phase)

    def _task_failed(self, message: str) -> ProviderError:
        try:
            header = json.loads(message)["header"]
            return self._failures.task_failed(header.get("error_code"), header.get("error_message"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return self._failures.task_failed("unknown", message)

    def _socket_error(self, error: object) -> ProviderError:
        return _socket_failure(self._failures, error, self._started_at is not None)


class DashScopeTtsProvider(TtsProvider):
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
        self._pool: WarmPool[_Synthesizer] | None = None

    async def prepare(self) -> None:
        """Open ``warm_connections`` connections for the default voice (none without a key)."""
        key = self._credentials.key
        if self._pool is not None or not key or not self._config.warm_connections:
            return
        create = functools.partial(
            run_blocking, _new_synthesizer, self._config, key, self._default_voice, None
        )
        failures = Failures("synthesis", self._config.websocket_url, key)
        connect = functools.partial(
            _connect_warm, timeout=self._deadlines.connect, failures=failures
        )
        self._pool = WarmPool(
            "CosyVoice connection",
            self._config.warm_connections,
            create,
            connect,
            max_idle_s=MAX_IDLE_SECONDS,
        )
        await self._pool.fill()

    @property
    def warm_connections(self) -> int:
        """Connections ready for the next requests in the default voice."""
        return self._pool.ready_count if self._pool is not None else 0

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        # SSML goes through unchanged: CosyVoice v2 reads SSML in plain text for some voices.
        key = self._credentials.require("DashScope")
        voice = options.voice or self._default_voice
        pool = self._pool if voice == self._default_voice else None
        synthesis = _Synthesis(self._config, self._deadlines, key, voice, pool)
        async for chunk in stream_audio(synthesis, text):
            yield chunk

    def encoded_formats(self) -> frozenset[EncodedAudio]:
        rate = self.audio_format.rate
        return frozenset(kind for kind, rates in _ENCODED_FORMATS.items() if rate in rates)

    async def synthesize_encoded(
        self, text: str, options: SynthesisOptions, encoding: EncodedAudio
    ) -> AsyncIterator[bytes]:
        """One task, on a connection of its own (the warm ones are asked for PCM)."""
        key = self._credentials.require("DashScope")
        voice = options.voice or self._default_voice
        encoded = _ENCODED_FORMATS[encoding][self.audio_format.rate]
        synthesis = _Synthesis(self._config, self._deadlines, key, voice, None, encoded)
        async for chunk in stream_audio(synthesis, WholeText(text)):
            yield chunk
