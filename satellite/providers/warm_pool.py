"""Connections opened ahead of requests, so that a request does not wait for the connect.

One pool serves every provider that keeps warm connections: CosyVoice and the Qwen realtime
sessions (each used by one request, then replaced) and Azure's synthesizers (given back after
a request and kept for the next). The pool runs on the event loop; what is pooled may connect
on another thread, which is why its ``close`` must also end a connect still running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

_LOGGER = logging.getLogger(__name__)

# After a failed connect the next attempt waits this long, doubling up to the maximum, so a
# bad key or a dead server is not hammered.
RETRY_SECONDS = 30.0
MAX_RETRY_SECONDS = 300.0


class Pooled(Protocol):
    """What a pool holds: one connection (or an SDK object that owns one)."""

    @property
    def ready(self) -> bool:
        """Connected (or able to reconnect by itself), unused, and nothing has gone wrong."""
        ...

    def close(self) -> None:
        """Release it now (non-blocking, repeatable); a connect still running on another
        thread ends with it closed."""
        ...


R = TypeVar("R", bound=Pooled)


class WarmPool(Generic[R]):
    """Up to ``size`` ready resources, topped up in the background after each ``take``.

    ``create`` makes an unconnected resource; ``connect`` connects it within the connect
    deadline, raising (best a ProviderError, whose message is logged) if it cannot. Idle
    resources older than ``max_idle_s`` are replaced (None: kept however long). ``keep`` > 0
    makes the resources reusable: ``give_back`` keeps up to that many idle, and one taken
    counts towards ``size`` until it is given back.
    """

    def __init__(
        self,
        what: str,
        size: int,
        create: Callable[[], Awaitable[R]],
        connect: Callable[[R], Awaitable[None]],
        *,
        max_idle_s: float | None = None,
        keep: int = 0,
        retry_s: float = RETRY_SECONDS,
        max_retry_s: float = MAX_RETRY_SECONDS,
    ) -> None:
        self._what = what  # e.g. "CosyVoice connection", in the log
        self._size = size
        self._create = create
        self._connect = connect
        self._max_idle_s = max_idle_s
        self._keep = keep
        self._first_retry_s = retry_s
        self._max_retry_s = max_retry_s
        self._idle: list[tuple[R, float]] = []  # with when each became idle
        self._lent: set[R] = set()  # reusable ones taken and not given back yet
        self._opening: set[R] = set()  # made by a round, not yet idle: close() closes them
        self._wake = asyncio.Event()
        self._round: asyncio.Task[None] | None = None  # connecting what is missing
        self._maintainer: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._retry_s = retry_s
        self._closed = False

    @property
    def ready_count(self) -> int:
        return sum(resource.ready for resource, _ in self._idle)

    async def fill(self) -> None:
        """Connect what is missing now (a failure is logged, never raised), then keep the
        pool full in the background."""
        if self._closed:
            return
        round_ = self._round_task() if self._missing() > 0 else self._round
        if round_ is not None:
            await asyncio.wait([round_])
        if self._maintainer is None and not self._closed:
            self._maintainer = asyncio.create_task(self._maintain(), name=f"warm {self._what}")

    def take(self) -> R | None:
        """A ready resource, now the caller's (to close, or to give back if reusable); None if
        none is ready. The pool connects a replacement in the background."""
        self._wake.set()
        while self._idle:
            resource, _ = self._idle.pop()  # the newest is the likeliest to be alive
            if resource.ready:
                if self._keep:
                    self._lent.add(resource)
                return resource
            resource.close()
        return None

    def adopt(self, resource: R) -> None:
        """A reusable resource made for a request that ``take`` found none for: it counts as
        taken, so a connect under way does not add one more than ``size``."""
        self._lent.add(resource)

    def give_back(self, resource: R) -> None:
        """A reusable resource after its request: kept for the next request if it is ready and
        fewer than ``keep`` are idle, else closed."""
        self._lent.discard(resource)
        if not self._closed and resource.ready and len(self._idle) < self._keep:
            self._idle.append((resource, time.monotonic()))
        else:
            resource.close()
        self._wake.set()

    async def close(self) -> None:
        """Close every idle resource and any being connected; later ones given back too."""
        self._closed = True
        tasks = [task for task in (self._maintainer, self._round) if task is not None]
        for task in tasks:
            task.cancel()
        idle, self._idle = self._idle, []
        for resource in (*(resource for resource, _ in idle), *self._opening):
            resource.close()
        self._opening.clear()
        if tasks:
            await asyncio.wait(tasks)

    def _missing(self) -> int:
        return self._size - len(self._idle) - len(self._lent)

    def _round_task(self) -> asyncio.Task[None]:
        """The connecting round under way, or a new one."""
        if self._round is None or self._round.done():
            self._round = asyncio.create_task(self._connect_missing())
        return self._round

    async def _maintain(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            for entry in list(self._idle):
                resource, since = entry
                if not resource.ready or self._expired(since, now):
                    self._idle.remove(entry)
                    resource.close()
            if self._missing() > 0 and now >= self._retry_at:
                await asyncio.wait([self._round_task()])
                continue
            due: list[float] = []
            if self._max_idle_s is not None:
                due = [since + self._max_idle_s for _, since in self._idle]
            if self._missing() > 0:
                due.append(self._retry_at)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, min(due) - now) if due else None):
                    await self._wake.wait()

    def _expired(self, since: float, now: float) -> bool:
        return self._max_idle_s is not None and now - since > self._max_idle_s

    async def _connect_missing(self) -> None:
        """Connect one resource per empty place, all at once; after a failure, log it once
        and put the next round off."""
        results = await asyncio.gather(
            *(self._open() for _ in range(self._missing())), return_exceptions=True
        )
        now = time.monotonic()
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        for result in results:
            if isinstance(result, BaseException):
                continue
            self._opening.discard(result)
            if not result.ready:  # dropped as it opened: retried later, not at once
                failure = failure or ConnectionError("closed as soon as it connected")
                result.close()
            elif self._closed or self._missing() <= 0:  # one was made for a request meanwhile
                result.close()
            else:
                self._idle.append((result, now))
        if self._closed:
            return
        if failure is None:
            self._retry_s = self._first_retry_s
            return
        reason = str(failure) or repr(failure)
        _LOGGER.warning("warm %s: %s; next attempt in %g s", self._what, reason, self._retry_s)
        self._retry_at = now + self._retry_s
        self._retry_s = min(2 * self._retry_s, self._max_retry_s)

    async def _open(self) -> R:
        creating = asyncio.ensure_future(self._create())
        try:
            resource = await asyncio.shield(creating)  # a late one is closed, not lost
        except asyncio.CancelledError:
            creating.add_done_callback(_close_created)
            raise
        self._opening.add(resource)  # until the round has placed it, even if it is cancelled
        try:
            await self._connect(resource)
        except BaseException:
            self._opening.discard(resource)
            resource.close()
            raise
        return resource


def _close_created(creating: asyncio.Future[Pooled]) -> None:
    if not creating.cancelled() and creating.exception() is None:
        creating.result().close()
