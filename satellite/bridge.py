"""The one place where threads (SDK callbacks, blocking device and SDK calls) meet asyncio.

SDK callbacks run on the SDKs' own threads: they hand results to the loop through a
``CallbackQueue``. Blocking SDK calls (connect, stop, ``.get()``) run in a dedicated
thread pool through ``run_blocking`` so the loop never waits on the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")

# Sized for many concurrent sessions: a blocking SDK call may hold a thread until its
# own (long) timeout even after we have given up waiting for it.
_EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sdk-call")


async def run_blocking(func: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Run a blocking SDK call off the event loop and await its result."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(func, *args, **kwargs))


def run_blocking_detached(func: Callable[..., object], *args: object) -> None:
    """Start a blocking cleanup call (close, cancel) without waiting for it."""

    def call() -> None:
        with contextlib.suppress(Exception):
            func(*args)

    _EXECUTOR.submit(call)


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
