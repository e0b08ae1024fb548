"""Text to speech with DashScope's Qwen TTS models over HTTP (qwen3-tts-flash, qwen-tts).

``MultiModalConversation.call(stream=True)`` POSTs one whole text to
``{http_url}/services/aigc/multimodal-generation/generation`` and returns a blocking generator
of the server-sent events it reads: each carries base64 PCM (24 kHz mono s16le) in
``output.audio.data``, the last ``finish_reason`` "stop". The key, the URL and the HTTP session
are passed to the call, so no SDK global is touched; the provider's own session keeps its
connection alive between requests, so only the first request pays the TCP and TLS handshakes.

The service needs each request's text whole, while the text of a reply arrives in pieces as a
language model writes it. Each sentence is sent as soon as it is complete: first audio then
waits for the first sentence and one request, where waiting for the whole text would add the
time the rest of the reply takes to write (seconds for a long answer), and a short request is
also the quickest to give its first audio. The request for the next sentence starts while the
current one still streams (``PREFETCH`` ahead), so sentences follow each other without a pause
of one request's latency; audio is yielded strictly in order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from http import HTTPStatus
from typing import Any

import requests
from dashscope import MultiModalConversation

from ..audio.pcm import AudioFormat
from ..bridge import CallbackQueue, run_blocking_detached
from ..errors import ErrorCode, ProviderError
from ..provider_specs.dashscope import DashScopeConfig
from ..provider_specs.dashscope_models import tts_model
from .base import CallClock, Credentials, Deadlines, SynthesisOptions, TtsProvider
from .dashscope_common import Failures, model_voices, stream_audio
from .text import SentenceSplitter

# Requests started for the sentences after the one being spoken.
PREFETCH = 1

# ("connected", None) | ("audio", bytes) | ("done", None) | ("error", ProviderError)
Event = tuple[str, Any]


class _Session:
    """The ``session`` the SDK posts with: the provider's ``requests.Session``, keeping the
    response of one request so that another thread can cut it."""

    def __init__(self, session: requests.Session, on_headers: Callable[[], None]) -> None:
        self._session = session
        self._on_headers = on_headers
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._aborted = False

    def post(self, **kwargs: Any) -> requests.Response:
        """Called by the SDK on its thread; returns once the response headers have come."""
        response = self._session.post(**kwargs)
        with self._lock:
            self._response = response
            aborted = self._aborted
        if aborted:
            _shutdown(response)
        else:
            self._on_headers()
        return response

    def abort(self) -> None:
        """Cut the response being read (non-blocking): the SDK's read fails at once."""
        with self._lock:
            self._aborted = True
            response = self._response
        if response is not None:
            _shutdown(response)

    def release(self) -> None:
        """On the SDK's thread, when done: close the response (its connection goes back to
        the pool if it was read to the end)."""
        with self._lock:
            response, self._response = self._response, None
        if response is not None:
            response.close()


def _shutdown(response: requests.Response) -> None:
    """Wake a thread blocked reading ``response`` (closing the socket would not)."""
    connection = getattr(response.raw, "connection", None)  # None once read to the end
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Request:
    """One sentence: its HTTP request runs on a pool thread, its audio comes through a queue."""

    def __init__(
        self,
        call: Callable[..., Iterator[Any]],
        session: requests.Session,
        failures: Failures,
        clock: CallClock,
    ) -> None:
        self._call = call
        self._failures = failures
        self._clock = clock
        self._events: CallbackQueue[Event] = CallbackQueue()
        self._http = _Session(session, self._headers_came)
        self._started = time.monotonic()
        self._has_headers = False  # set on the SDK's thread
        self._connected = False
        self._audio_started = False
        self._done = False
        self._aborted = threading.Event()
        run_blocking_detached(self._run)

    async def next_audio(self) -> bytes | None:
        """The next chunk of this sentence's audio, or None once it is all there."""
        while not self._done:
            phase, limit = self._wait_limit()
            try:
                kind, value = await self._events.get(limit)
            except TimeoutError:
                raise self._timeout(phase) from None
            if kind == "connected":
                self._connected = True
            elif kind == "audio":
                self._audio_started = True
                return value
            elif kind == "done":
                self._done = True
            else:
                self._done = True
                raise value
        return None

    def abort(self) -> None:
        """Stop reading the answer and close its connection, unless it is all read."""
        if not self._done:
            self._done = True
            self._aborted.set()
            self._http.abort()

    def _wait_limit(self) -> tuple[float, float]:
        """The phase of the next wait (its configured seconds) and how long it may take."""
        deadlines = self._deadlines
        elapsed = time.monotonic() - self._started
        if not self._connected:
            return deadlines.connect, self._clock.limit(deadlines.connect - elapsed)
        if not self._audio_started:
            return deadlines.first_result, self._clock.limit(deadlines.first_result - elapsed)
        return deadlines.total, self._clock.limit(deadlines.total)

    @property
    def _deadlines(self) -> Deadlines:
        return self._clock.deadlines

    def _timeout(self, phase: float) -> ProviderError:
        if not self._connected:
            return self._failures.connect_timeout(self._clock)
        return self._failures.timeout(self._clock, phase)

    def _headers_came(self) -> None:
        self._has_headers = True
        self._events.put(("connected", None))

    def _run(self) -> None:
        """On a pool thread: read the SDK's events until the audio is complete or aborted."""
        responses = self._call(session=self._http)
        try:
            for response in responses:
                if self._aborted.is_set():
                    return
                if response.status_code != HTTPStatus.OK:
                    self._events.put(("error", self._refused(response)))
                    return
                output = response.output
                audio = output.audio if output is not None else None
                if audio is not None and audio.data:
                    self._events.put(("audio", base64.b64decode(audio.data)))
                if output is not None and output.finish_reason == "stop":
                    self._events.put(("done", None))
                    return
            if not self._aborted.is_set():
                lost = self._failures.lost("the answer ended before its audio was complete")
                self._events.put(("error", lost))
        except Exception as exc:
            if not self._aborted.is_set():
                self._events.put(("error", self._failed(exc)))
        finally:
            with contextlib.suppress(Exception):
                responses.close()
            self._http.release()

    def _refused(self, response: Any) -> ProviderError:
        if response.status_code in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            return self._failures.auth(int(response.status_code))
        return self._failures.task_failed(response.code, response.message)

    def _failed(self, exc: Exception) -> ProviderError:
        if isinstance(exc, requests.Timeout):
            return self._failures.error(ErrorCode.TIMEOUT, f"synthesis: {exc}")
        if not self._has_headers:
            return self._failures.connect(exc)
        return self._failures.lost(exc)


class _Synthesis:
    """One ``synthesize`` call: ``feed`` (a task) cuts the text into sentences as it arrives,
    while ``next_audio`` runs one request per sentence and reads their audio in order."""

    def __init__(
        self,
        call: Callable[..., Iterator[Any]],
        session: requests.Session,
        failures: Failures,
        deadlines: Deadlines,
    ) -> None:
        self._call = call
        self._session = session
        self._failures = failures
        self._deadlines = deadlines
        self._sentences: asyncio.Queue[str | Exception | None] = asyncio.Queue()
        self._requests: deque[_Request] = deque()
        self._clock: CallClock | None = None  # starts with the first sentence
        self._text_ended = False

    async def feed(self, text: AsyncIterator[str]) -> None:
        """Queue each sentence once complete, then None; a failure goes to ``next_audio``."""
        splitter = SentenceSplitter()
        try:
            async for piece in text:
                for sentence in splitter.feed(piece):
                    self._sentences.put_nowait(sentence)
            for sentence in splitter.flush():
                self._sentences.put_nowait(sentence)
            self._sentences.put_nowait(None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._sentences.put_nowait(exc)

    async def next_audio(self) -> bytes | None:
        """The next audio chunk, or None once all audio has come."""
        while True:
            while not self._text_ended and len(self._requests) <= PREFETCH:
                if self._requests and self._sentences.empty():
                    break  # speak what has come; the next sentence is started when known
                self._start(await self._sentences.get())
            if not self._requests:
                return None
            chunk = await self._requests[0].next_audio()
            if chunk is not None:
                return chunk
            self._requests.popleft()

    def close(self) -> None:
        """Cut every request still reading (non-blocking)."""
        while self._requests:
            self._requests.popleft().abort()

    def _start(self, sentence: str | Exception | None) -> None:
        if isinstance(sentence, Exception):
            raise sentence
        if sentence is None:
            self._text_ended = True
            return
        if self._clock is None:
            self._clock = CallClock(self._deadlines)
        call = functools.partial(self._call, text=sentence)
        self._requests.append(_Request(call, self._session, self._failures, self._clock))


class QwenHttpTtsProvider(TtsProvider):
    name = "dashscope"

    def __init__(
        self, config: DashScopeConfig, credentials: Credentials, default_voice: str | None
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._default_voice = default_voice or config.tts.default_voice
        self.model = config.tts.model
        model = tts_model(self.model)
        self.voices = model_voices(model, self._default_voice, config.tts.voices)
        self.audio_format = AudioFormat(model.sample_rate, 2, 1)
        self._deadlines = Deadlines.from_timeouts(config.timeouts)
        self._session = requests.Session()  # one kept-alive connection pool for its requests

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        # SSML is not understood by these models: the text goes through unchanged.
        key = self._credentials.require("DashScope")
        deadlines = self._deadlines
        call = functools.partial(
            MultiModalConversation.call,
            model=self.model,
            voice=options.voice or self._default_voice,
            language_type=self._config.tts.language_type,
            stream=True,
            api_key=key,
            base_address=self._config.http_url,
            # The SDK's own bound on a blocked read (its default is 300 s): a request we have
            # given up on and could not cut frees its thread within the total deadline.
            request_timeout=(deadlines.connect, deadlines.total),
        )
        failures = Failures("synthesis", self._config.http_url, key)
        synthesis = _Synthesis(call, self._session, failures, deadlines)
        async for chunk in stream_audio(synthesis, text):
            yield chunk

    async def close(self) -> None:
        self._session.close()
