"""The one place where threads (SDK callbacks, blocking device and SDK calls) meet asyncio.

SDK callbacks run on the SDKs' own threads: they hand results to the loop through a
``CallbackQueue``. Blocking SDK calls (connect, stop, ``.get()``) run in a dedicated
thread pool through ``run_blocking`` so the loop never waits on the network.

A call we have given up on may stay blocked in an SDK until the SDK's own timeout
(minutes), and Python joins pool threads at exit: ``calls_still_running`` lets the entry
point wait a bounded time for them and then exit without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class _BlockingCalls:
    """A thread pool that knows how many of its calls have not returned yet."""

    def __init__(self) -> None:
        # Sized for many concurrent sessions: a blocking SDK call may hold a thread until
        # its own (long) timeout even after we have given up waiting for it.
        self._pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sdk-call")
        self._running = 0
        self._changed = threading.Condition()

    def submit(self, call: Callable[[], T]) -> Future[T]:
        with self._changed:
            self._running += 1
        try:
            future = self._pool.submit(call)
        except BaseException:
            self._ended()
            raise
        future.add_done_callback(lambda _: self._ended())  # returned, raised or cancelled
        return future

    def _ended(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()

    def wait(self, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._running == 0, timeout)
            return self._running


_CALLS = _BlockingCalls()


async def run_blocking(func: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking SDK call off the event loop and await its result."""
    return await asyncio.wrap_future(_CALLS.submit(functools.partial(func, *args, **kwargs)))


def run_blocking_detached(func: Callable[..., object], *args: object) -> None:
    """Start a blocking cleanup call (close, cancel) without waiting for it."""

    def call() -> None:
        with contextlib.suppress(Exception):
            func(*args)

    _CALLS.submit(call)


def calls_still_running(timeout: float) -> int:
    """Wait up to ``timeout`` seconds for every blocking call to return; how many have not."""
    return _CALLS.wait(timeout)


class CallbackQueue(Generic[T]):
    """A queue that SDK threads put into and one coroutine reads from."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[T] = asyncio.Queue()

    def put(self, item: T) -> None:
        """Thread-safe; silently dropped once the loop has closed."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def get(self, timeout: float | None) -> T:
        """Next item; raises TimeoutError after ``timeout`` seconds (None: wait forever)."""
        async with asyncio.timeout(timeout):
            return await self._queue.get()

    def get_nowait(self) -> T | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None
