"""What the Qwen realtime providers (``dashscope_realtime_asr``, ``dashscope_realtime_tts``)
share: one realtime session's events and blocking SDK calls, and where requests get sessions."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import websocket

from ..bridge import CallbackQueue, run_blocking, run_blocking_detached
from ..errors import ErrorCode, ProviderError
from .base import CallClock, Deadlines
from .dashscope_common import Failures, cut_websocket, half_close_websocket, shutdown_websocket
from .warm_pool import WarmPool

_LOGGER = logging.getLogger(__name__)

# How long an ended realtime session may take to confirm session.finish before it is cut.
END_GRACE_SECONDS = 2.0
# How long a cancelled session's stop messages may take to go out before it is cut anyway.
CANCEL_GRACE_SECONDS = 0.5

# ("event", server event) | ("unreadable", frame) | ("socket-error", error) | ("closed", detail)
# | ("failure", exception raised on our side)
RealtimeEvent = tuple[str, Any]


class RealtimeServerError(ProviderError):
    """The server answered an ``error`` event."""


class RealtimeCallback:
    """The SDK callback of one realtime connection (runs on its websocket thread), also fed by
    the SDK subclass's socket-error and frame-check hooks, which the SDK itself only logs."""

    def __init__(self) -> None:
        self.events: CallbackQueue[RealtimeEvent] = CallbackQueue()
        self.ended = threading.Event()  # session.finished came, or the socket closed
        self._connection: websocket.WebSocket | None = None

    def on_open(self) -> None:
        """The SDK's connect() has seen the handshake; session.created is what counts."""

    def on_event(self, message: dict[str, Any]) -> None:
        if message.get("type") == "session.finished":
            self.ended.set()
        self.events.put(("event", message))

    def on_close(self, status: object, reason: object) -> None:
        # Last on the websocket thread. websocket-client closes its socket there only if it
        # still counts as connected, which a close frame from the server has ended: the
        # socket would stay open until the garbage collector finds it.
        if self._connection is not None:
            self._connection.shutdown()
        self.ended.set()
        detail = "closed by the server" if status is not None else "connection closed"
        self.events.put(("closed", f"{detail} ({status}: {reason})" if reason else detail))

    def socket_error(self, error: object) -> None:
        self.events.put(("socket-error", error))

    def message(self, app: websocket.WebSocketApp, message: object) -> None:
        """A frame from the server, in place of the SDK's own handler (which parses it again
        only for bookkeeping we do not use): a JSON event goes to ``on_event``, parsed once;
        any other text frame is reported (the SDKs would drop it, or fail in their own
        thread); binary frames are ignored, as the SDKs do."""
        if self._connection is None:
            self._connection = app.sock
        if not isinstance(message, str):
            return
        try:
            event = json.loads(message)
        except ValueError:
            event = None
        if isinstance(event, dict):
            self.on_event(event)
        else:
            self.events.put(("unreadable", message[:80]))


class RealtimeConnection:
    """One Qwen realtime session (``OmniRealtimeConversation`` or ``QwenTtsRealtime``), used
    by one request and then ended.

    SDK calls are queued with ``call`` and run one at a time, in order, in the shared pool, so
    the loop never waits on a socket; their failures arrive as events. Server events are read
    with ``next_event`` / ``ready_events``.
    """

    def __init__(self, client: Any, callback: RealtimeCallback, failures: Failures) -> None:
        self.client = client
        self.failures = failures
        self._callback = callback
        self._events = callback.events
        self._lock = threading.Lock()
        self._pending: deque[Callable[[], object]] = deque()
        self._running = False  # a pool thread is working through ``_pending``
        self._closed = False  # ended or aborted: later calls are dropped
        # close() came: a connect() still under way cuts the socket as it returns. Not set by
        # end() or cancel(): the SDK's connect() polls every 0.1 s, so it can still be running
        # while its session serves a request, and must not cut the stops that end it.
        self._aborted = False

    async def open(self, clock: CallClock, until: float) -> None:
        """Connect and wait for session.created, until ``until`` (monotonic)."""
        run_blocking_detached(self._connect)
        try:
            while True:
                try:
                    kind, value = await self._events.get(clock.limit(until - time.monotonic()))
                except TimeoutError:
                    raise self.failures.connect_timeout(clock) from None
                if kind == "event" and value.get("type") == "session.created":
                    return
                if kind != "event" or value.get("type") == "error":
                    raise self._opening_error(kind, value)
        except BaseException:
            self.close()
            raise

    async def configure(
        self, clock: CallClock, until: float, update: Callable[[Any], object]
    ) -> bool:
        """Send session.update and wait for session.updated; False if the connection turned
        out to be closed (a warm one the server has dropped)."""
        self.call(update, self.client)
        try:
            while True:
                try:
                    kind, value = await self._events.get(clock.limit(until - time.monotonic()))
                except TimeoutError:
                    raise self.failures.connect_timeout(clock) from None
                if kind in ("closed", "socket-error", "unreadable"):
                    return False
                if kind == "event" and value.get("type") == "session.updated":
                    return True
                if kind == "event" and value.get("type") == "error":
                    raise self._failure(kind, value)
        except BaseException:
            self.close()
            raise

    def call(self, func: Callable[..., object], *args: object) -> None:
        """Queue a blocking SDK call (never blocks); calls run in the order queued."""
        with self._lock:
            if self._closed:
                return
            self._pending.append(functools.partial(func, *args))
            if self._running:
                return
            self._running = True
        run_blocking_detached(self._run_pending)

    def report(self, error: Exception) -> None:
        """Fail the request reading this connection's events with ``error``."""
        self._events.put(("failure", error))

    async def next_event(self, timeout: float | None) -> dict[str, Any]:
        """The next server event; ProviderError when the server failed the request or the
        connection broke; TimeoutError after ``timeout`` seconds."""
        kind, value = await self._events.get(timeout)
        return self._checked(kind, value)

    def ready_events(self) -> Iterator[dict[str, Any]]:
        """The events that have already arrived (checked like ``next_event``)."""
        while (item := self._events.get_nowait()) is not None:
            yield self._checked(*item)

    def end(self, *, finish_session: bool) -> None:
        """Release after a successful request: after the queued calls, send session.finish
        (unless already sent), give the server a moment to confirm, then cut the socket."""
        self.call(self._end, finish_session)
        with self._lock:
            self._closed = True

    def cancel(self, *stops: Callable[[], object]) -> None:
        """Abandon the request (non-blocking): drop the calls still queued, send ``stops``
        (the SDK calls that tell the server to stop, e.g. clear the text, cancel the
        response) right after the call running now, if any, then end what we send, so that
        the server reads them and closes. A connection still open ``CANCEL_GRACE_SECONDS``
        later (a send stuck on a dead socket, a server that does not close) is cut. The
        connection is never used again: its server may still be ending its response."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._pending.clear()
            self._pending.extend(stops)
            self._pending.append(functools.partial(half_close_websocket, self.client.ws))
            running, self._running = self._running, True
        if not running:
            run_blocking_detached(self._run_pending)
        with contextlib.suppress(RuntimeError):  # no loop: the calls above cut it anyway
            loop = asyncio.get_running_loop()
            loop.call_later(CANCEL_GRACE_SECONDS, shutdown_websocket, self.client.ws)

    @property
    def ready(self) -> bool:
        """Open, unused, and the server has not ended it."""
        return not self._closed and not self._callback.ended.is_set()

    def close(self) -> None:
        """Cut the connection now (non-blocking); a connect still running is cut as it returns."""
        with self._lock:
            self._closed = self._aborted = True
            self._pending.clear()
        shutdown_websocket(self.client.ws)

    def _connect(self) -> None:
        try:
            self.client.connect()  # polls for the handshake every 0.1 s, for up to 5 s
        except Exception as exc:
            self._callback.socket_error(exc)
            self._closed = self._aborted = True  # a handshake under way must not open it later
        if self._aborted:
            cut_websocket(self.client.ws, getattr(self.client, "thread", None))

    def _run_pending(self) -> None:
        while True:
            with self._lock:
                if not self._pending:
                    self._running = False
                    return
                call = self._pending.popleft()
            try:
                call()
            except Exception as exc:  # the SDK refuses to send on a closed socket
                self._callback.socket_error(exc)

    def _end(self, finish_session: bool) -> None:
        try:
            if finish_session:
                self.client.end_session_async()
                self._callback.ended.wait(END_GRACE_SECONDS)
        finally:
            shutdown_websocket(self.client.ws)

    def _checked(self, kind: str, value: Any) -> dict[str, Any]:
        if kind == "event" and value.get("type") != "error":
            return value
        raise self._failure(kind, value)

    def _failure(self, kind: str, value: Any) -> Exception:
        if kind == "failure":
            return value
        if kind == "event":
            error = value.get("error") or {}
            failed = self.failures.task_failed(error.get("code"), error.get("message"))
            return RealtimeServerError(failed.code, failed.message)
        if kind == "unreadable":
            return self.failures.error(
                ErrorCode.PROVIDER_FAILED,
                f"{self.failures.what}: unreadable message from DashScope: {value!r}",
            )
        return self.failures.lost(value)

    def _opening_error(self, kind: str, value: Any) -> ProviderError:
        status = getattr(value, "status_code", None)
        if kind == "socket-error" and status in (401, 403):
            return self.failures.auth(status)
        if kind in ("socket-error", "closed"):
            return self.failures.connect(value)
        error = self._failure(kind, value)
        return error if isinstance(error, ProviderError) else self.failures.connect(error)


class RealtimeSessions:
    """Where requests get their sessions: a warm one (opened ahead, in a ``WarmPool``) if
    one is still open, else a new one."""

    def __init__(
        self,
        size: int,
        new_client: Callable[[RealtimeCallback], Any],
        failures: Failures,
        deadlines: Deadlines,
    ) -> None:
        self._new_client = new_client  # blocking (may wait for the SDK globals lock)
        self._failures = failures
        self._deadlines = deadlines
        self._pool = WarmPool(
            f"DashScope {failures.what} connection", size, self._create, self._open_warm
        )

    async def fill(self) -> None:
        """Open the warm sessions now; failures are logged, never raised."""
        await self._pool.fill()

    async def acquire(
        self, clock: CallClock, update: Callable[[Any], object]
    ) -> RealtimeConnection:
        """A session configured with ``update``: a warm one if one is still open, else a new
        one, within the connect deadline."""
        until = time.monotonic() + clock.deadlines.connect
        while (connection := self._pool.take()) is not None:
            if await connection.configure(clock, until, update):
                return connection
            connection.close()  # closed while idle
        connection = await self._create()
        await connection.open(clock, until)
        if not await connection.configure(clock, until, update):
            connection.close()
            raise self._failures.connect("the connection closed before the session started")
        return connection

    async def close(self) -> None:
        await self._pool.close()

    async def _create(self) -> RealtimeConnection:
        callback = RealtimeCallback()
        client = await run_blocking(self._new_client, callback)
        return RealtimeConnection(client, callback, self._failures)

    async def _open_warm(self, connection: RealtimeConnection) -> None:
        clock = CallClock(self._deadlines)
        await connection.open(clock, time.monotonic() + self._deadlines.connect)
