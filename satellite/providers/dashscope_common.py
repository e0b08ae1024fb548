"""What the DashScope ASR and TTS providers share: SDK globals, call ordering, error wording."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, TypeVar

import dashscope
import websocket

from ..config_base import AUTO_LANGUAGE
from ..errors import ErrorCode, ProviderError
from ..provider_specs.dashscope_models import DashScopeModel
from .base import CallClock, Voice

T = TypeVar("T")

# Held around any SDK call that reads ``dashscope.api_key`` / ``dashscope.base_websocket_api_url``
# (module globals shared by every session), and only for that call.
SDK_GLOBALS_LOCK = threading.Lock()


@contextmanager
def api_key_global(key: str) -> Iterator[None]:
    """Set ``dashscope.api_key`` for SDK code that reads only the global; restored on exit."""
    with SDK_GLOBALS_LOCK:
        previous = dashscope.api_key
        dashscope.api_key = key
        try:
            yield
        finally:
            dashscope.api_key = previous


class SdkCalls:
    """Runs one session's blocking SDK calls one at a time, and its closing call last.

    A coroutine that gives up on a call (deadline, cancellation) leaves it queued or running
    in the pool: the closing call waits for it, and calls still queued after it are skipped,
    so a cleanup can never be overtaken by a late connect.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False

    def run(self, func: Callable[..., T], *args: object) -> T | None:
        with self._lock:
            return None if self._closed else func(*args)

    def close(self, func: Callable[..., object], *args: object) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                func(*args)


class Failures:
    """The errors of one DashScope call, worded for users; the key never appears in them."""

    def __init__(self, what: str, url: str, key: str) -> None:
        self.what = what  # "recognition" / "synthesis"
        self.url = url
        self._key = key

    def error(self, code: ErrorCode, message: str) -> ProviderError:
        if self._key:
            message = message.replace(self._key, "***")
        return ProviderError(code, message)

    def auth(self, status: object) -> ProviderError:
        return self.error(
            ErrorCode.AUTH_FAILED, f"{self.what}: DashScope rejected the API key (HTTP {status})"
        )

    def connect(self, detail: object) -> ProviderError:
        return self.error(
            ErrorCode.CONNECT_FAILED, f"{self.what}: cannot connect to {self.url}: {detail}"
        )

    def connect_timeout(self, clock: CallClock) -> ProviderError:
        """No session within the connect deadline (a TIMEOUT if the total ran out first)."""
        connect = clock.deadlines.connect
        if clock.limit(clock.deadlines.total) <= 0:
            return clock.timeout_error(self.what, connect)
        return self.error(
            ErrorCode.CONNECT_FAILED,
            f"{self.what}: no session with {self.url} within {connect:g} s",
        )

    def task_failed(self, code: object, message: object) -> ProviderError:
        return self.error(
            ErrorCode.PROVIDER_FAILED, f"{self.what}: DashScope task failed: {code}: {message}"
        )

    def lost(self, detail: object) -> ProviderError:
        return self.error(
            ErrorCode.PROVIDER_FAILED, f"{self.what}: DashScope connection lost: {detail}"
        )

    def timeout(self, clock: CallClock, phase_seconds: float) -> ProviderError:
        error = clock.timeout_error(self.what, phase_seconds)
        return self.error(error.code, error.message)


def shutdown_websocket(app: websocket.WebSocketApp | None) -> None:
    """Close an SDK's websocket-client connection without leaking its thread (non-blocking).

    ``WebSocketApp.close`` closes the socket from the calling thread while the websocket
    thread waits on it in ``select()``; when the close wins that race, the thread sleeps
    forever. ``shutdown()`` without ``close()`` wakes the thread, even mid-handshake, and
    the thread closes the socket itself.
    """
    if app is None:
        return
    app.keep_running = False
    _shutdown(app, socket.SHUT_RDWR)


def half_close_websocket(app: websocket.WebSocketApp | None) -> None:
    """End what we send (non-blocking): the server reads everything sent before, then closes
    its side, which ends the websocket thread. A full shutdown right after a message can lose
    it: the socket then resets, and a reset discards what the server has not read yet."""
    if app is not None:
        _shutdown(app, socket.SHUT_WR)


def _shutdown(app: websocket.WebSocketApp, how: int) -> None:
    connection = app.sock  # read once: the websocket thread may clear it meanwhile
    raw = connection.sock if connection is not None else None
    if raw is not None:
        with contextlib.suppress(OSError):
            raw.shutdown(how)


# How many times (0.1 s apart) a websocket closed while connecting is shut until it has ended.
CUT_ATTEMPTS = 50


def cut_websocket(app: websocket.WebSocketApp | None, thread: threading.Thread | None) -> None:
    """Blocking, bounded: shut an SDK's websocket until its thread has ended. A handshake
    under way completes after a shutdown that came before its socket existed (and
    ``run_forever`` sets ``keep_running`` again as it starts)."""
    for _ in range(CUT_ATTEMPTS):
        shutdown_websocket(app)
        if thread is None or not thread.is_alive():
            return
        thread.join(0.1)


_HINTS = {"zh-cn": "zh", "zh-hans": "zh", "zh": "zh", "en-us": "en", "yue": "yue", "zh-hk": "yue"}


def language_hint(language: str) -> str:
    """DashScope's ``language_hints`` entry for a language tag as Home Assistant sends it."""
    tag = language.strip().replace("_", "-").lower()
    return _HINTS.get(tag, tag.split("-")[0])


def asr_languages(default: str | None, configured: tuple[str, ...]) -> tuple[str, ...]:
    """The languages a DashScope ASR model advertises: the role's default first."""
    chosen = (default, *configured)
    return tuple(dict.fromkeys(lang for lang in chosen if lang and lang != AUTO_LANGUAGE))


def language_hints(request: str | None, languages: tuple[str, ...], identify: bool) -> list[str]:
    """The ``language_hints`` of one recognition: the language the client sent, else every
    advertised language when identifying (``speech.asr.language: auto``), else the first."""
    chosen = [request] if request else list(languages if identify else languages[:1])
    return list(dict.fromkeys(language_hint(language) for language in chosen))


def model_voices(
    model: DashScopeModel, default: str, extra: Mapping[str, tuple[str, ...]]
) -> tuple[Voice, ...]:
    """The model's system voices plus configured ones (speaking the model's languages unless
    they name theirs), the default first: listed even if unknown, as a cloned voice may be."""
    languages = model.languages
    voices = {name: Voice(name, languages, description) for name, description in model.voices}
    for name, voice_languages in extra.items():
        description = voices[name].description if name in voices else ""
        voices[name] = Voice(name, tuple(voice_languages) or languages, description)
    first = voices.pop(default, None) or Voice(default, languages, "configured voice")
    return (first, *voices.values())


class Synthesis(Protocol):
    """One synthesis call of a DashScope TTS provider."""

    async def feed(self, text: AsyncIterator[str]) -> None:
        """Send the text as it arrives, then finish; failures go to ``next_audio``."""

    async def next_audio(self) -> bytes | None:
        """The next audio chunk, or None once all audio has come."""

    def close(self) -> None:
        """Release the call's connection (non-blocking)."""


async def stream_audio(synthesis: Synthesis, text: AsyncIterator[str]) -> AsyncIterator[bytes]:
    """The audio of ``synthesis`` as it comes, while a task of its own feeds it the text."""
    feeder = asyncio.create_task(synthesis.feed(text))
    try:
        while (chunk := await synthesis.next_audio()) is not None:
            yield chunk
    finally:
        feeder.cancel()
        synthesis.close()
