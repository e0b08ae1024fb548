"""Worker processes of the provider SDKs, and their supervision.

A ``WorkerProcess`` is one running worker (``worker.py``) and the requests it serves, each
a ``Channel`` of the worker's answers. A ``Supervisor`` keeps one worker running for a
provider (its ASR and TTS both): a worker that dies (a crash, a kill) fails its requests
at once and is replaced at once; one that stops answering is killed and replaced; one that
has served ``recycle_after_requests`` requests or outgrown ``worker_max_rss_mb`` is
replaced by a new one and closed once its last request has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import os
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import logs
from ..errors import ErrorCode, ProviderError
from .base import PartialCallback
from .launcher import ForkedProcess, Launcher, exit_reason
from .worker_ipc import Message, MessageStream, WorkerSpec

_LOGGER = logging.getLogger(__name__)

START_S = 30.0  # from the process's start to its provider built (an SDK import on a Pi)
CLOSE_S = 4.0  # a worker asked to close gets this long, then it is killed
PING_S = 1.0  # a worker suspected of hanging must answer a ping within this
QUICK_DEATH_S = 10.0  # a worker that dies younger than this counts as a failure to start
MAX_BACKOFF_S = 30.0  # the longest wait before the next try after failures in a row


class WorkerStartError(ChildProcessError):
    """A worker did not come up: it exited, or did not build its provider in time."""


# The status line's round-trip figures describe this many of each role's latest answers.
ROUND_TRIPS_KEPT = 200


@dataclass
class WorkerStats:
    """What the daemon's workers have been through, for the status line."""

    restarts: int = 0  # replaced after dying or hanging
    # Per role, per answer (a transcript; a first audio): how long its request and the answer
    # took between the daemon and the worker, the worker's own time left out; in seconds.
    round_trips: dict[str, deque[float]] = field(
        default_factory=lambda: {role: deque(maxlen=ROUND_TRIPS_KEPT) for role in ("asr", "tts")}
    )

    def add_round_trip(self, role: str, seconds: float) -> None:
        self.round_trips[role].append(seconds)

    def describe(self) -> str:
        """``worker restarts: 0, worker round trip ASR p50 0.71 ms, p95 0.90 ms, TTS ...``."""
        text = f"worker restarts: {self.restarts}"
        figures = []
        for role, kept in self.round_trips.items():
            if kept:
                ordered = sorted(kept)
                p50, p95 = (ordered[round(q * (len(ordered) - 1))] for q in (0.5, 0.95))
                figures.append(f"{role.upper()} p50 {p50 * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms")
        if figures:
            text += ", worker round trip " + ", ".join(figures)
        return text


class Channel:
    """One request's answers from its worker; an error, or the worker's death, is kept and
    raised to whoever waits next.

    A deque and one waiter, with a timer only while it waits: each answer is on the round
    trip's path, and an asyncio.Queue under asyncio.timeout cost it 10 µs more.
    """

    def __init__(self, on_partial: PartialCallback | None) -> None:
        self._on_partial = on_partial
        self._answers: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None  # while a request waits for an answer
        self.error: ProviderError | None = None
        self.first_input_at: float | None = None  # when the worker had its first text or audio
        self.wants_text = asyncio.Event()  # the worker's provider asks for the next piece

    def deliver(self, message: Message) -> None:
        if message[0] == "partial":
            if self._on_partial is not None:
                try:
                    self._on_partial(message[2])
                except Exception:  # a bug of the request's, not the worker's
                    _LOGGER.exception("partial transcript")
            return
        if message[0] == "more":
            self.wants_text.set()
            return
        if message[0] == "error":
            self.error = ProviderError(ErrorCode(message[2]), message[3])
        self._put(message)

    def fail(self, error: ProviderError) -> None:
        if self.error is None:
            self.error = error
        self._put(("failed", 0))

    def _put(self, message: Message) -> None:
        self._answers.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def check(self) -> None:
        """Raise the request's error, if it has one."""
        if self.error is not None:
            raise self.error

    async def next(self, timeout: float) -> Message:
        """The next answer; raises the request's error, or TimeoutError."""
        if not self._answers:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            expiry = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                expiry.cancel()
                self._waiter = None
        message = self._answers.popleft()
        if message[0] in ("error", "failed"):
            self.check()
        return message


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WorkerProcess:
    """One worker process and the requests in flight on it."""

    def __init__(
        self,
        spec: WorkerSpec,
        launcher: Launcher,
        on_exit: Callable[[WorkerProcess], None],
        on_request_end: Callable[[WorkerProcess], None],
    ) -> None:
        self.spec = spec
        self._launcher = launcher
        self._on_exit = on_exit
        self._on_request_end = on_request_end
        self._ids = itertools.count(1)
        self._channels: dict[int, Channel] = {}
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._process: ForkedProcess | None = None
        self._stream: MessageStream | None = None
        self._ending: asyncio.Task[None] | None = None  # from its socket's close
        self.pid = 0
        self.started_at = time.monotonic()
        self.served = 0  # requests begun
        self.closing = False  # asked to close: its end is no failure
        self.killed_for: str | None = None  # why we killed it ("hung")
        self.dead: ProviderError | None = None  # what its requests get once it has ended
        self.exited = asyncio.Event()

    @property
    def ready(self) -> bool:
        """It has built its provider and serves requests."""
        return self._stream is not None and self._stream.handled

    @property
    def in_flight(self) -> int:
        return len(self._channels)

    async def start(self) -> dict[str, Any]:
        """Start the process and build its provider: what the provider advertises."""
        try:
            async with asyncio.timeout(START_S):
                self._process, sock = await self._launcher.spawn()
        except (OSError, TimeoutError) as exc:
            raise WorkerStartError(f"{self.spec.provider} worker did not start: {exc}") from None
        self.pid = self._process.pid
        try:
            self._stream = await MessageStream.open(sock)
            self._stream.send(("init", 0, self.spec))
            async with asyncio.timeout(START_S):
                reply = await self._stream.next()
        except BaseException:
            await self._discard()
            raise
        if reply is None or reply[0] != "ready":
            await self._discard()
            why = reply[2] if reply is not None else self._exit_text()
            raise WorkerStartError(f"{self.spec.provider} worker did not start: {why}")
        self._stream.handle(self._deliver, self._closed)
        return reply[2]

    def _exit_text(self) -> str:
        code = self._process.returncode if self._process is not None else None
        return "it exited" if code is None else f"it ended ({exit_reason(code)})"

    async def _discard(self) -> None:
        """A worker that did not start: kill it, and wait for it (bounded)."""
        self.kill(None)
        if self._stream is not None:
            self._stream.close()
        if self._process is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_S):
                    await self._process.wait()

    def _deliver(self, message: Message) -> None:
        rid = message[1]
        if message[0] == "pong":
            ping = self._pings.pop(rid, None)
            if ping is not None and not ping.done():
                ping.set_result(None)
        elif (channel := self._channels.get(rid)) is not None:
            channel.deliver(message)

    def _closed(self) -> None:
        self._ending = asyncio.create_task(self._ended(), name=f"{self.spec.provider} worker end")

    async def _ended(self) -> None:
        """The worker's end (its socket closed): fail what it had in flight, at once."""
        assert self._process is not None and self._stream is not None
        try:
            async with asyncio.timeout(CLOSE_S):
                returncode = await self._process.wait()
        except TimeoutError:  # it closed the socket but lives on: end it
            self.kill(None)
            returncode = await self._process.wait()
        reason = self.killed_for or exit_reason(returncode)
        self.dead = ProviderError(
            ErrorCode.PROVIDER_FAILED, f"{self.spec.provider} worker died ({reason})"
        )
        self._stream.close()
        for channel in self._channels.values():
            channel.fail(self.dead)
        self.exited.set()
        self._on_exit(self)

    def begin(self, on_partial: PartialCallback | None = None) -> tuple[int, Channel]:
        """A new request on this worker: its id and the channel of its answers."""
        if self.dead is not None:
            raise self.dead
        rid = next(self._ids)
        self._channels[rid] = channel = Channel(on_partial)
        self.served += 1
        return rid, channel

    def end(self, rid: int) -> None:
        """The request is over (repeatable)."""
        if self._channels.pop(rid, None) is not None:
            self._on_request_end(self)

    def send(self, *message: Any) -> None:
        """Queue a message to the worker; raises the worker's death once it is known. To a
        worker going away (its socket broken, its death not yet reaped) the message is not
        sent: the death, with its signal, reaches the request through ``flush`` or its
        channel."""
        if self.dead is not None:
            raise self.dead
        assert self._stream is not None
        self._stream.send(message)

    async def flush(self, timeout: float) -> None:
        """Wait until the worker takes what was sent (a worker that does not read: at most
        ``timeout``); raises ProviderError when it cannot."""
        assert self._stream is not None
        try:
            async with asyncio.timeout(timeout):
                await self._stream.drain()
        except ConnectionError:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_S):
                    await self.exited.wait()
            raise self.dead or ProviderError(
                ErrorCode.PROVIDER_FAILED, f"{self.spec.provider} worker went away"
            ) from None
        except TimeoutError:
            raise ProviderError(
                ErrorCode.TIMEOUT, f"{self.spec.provider} worker takes no input"
            ) from None

    async def answers(self, timeout: float) -> bool:
        """Whether the worker answers a ping within ``timeout``."""
        rid = next(self._ids)
        self._pings[rid] = pong = asyncio.get_running_loop().create_future()
        try:
            self.send("ping", rid)
            async with asyncio.timeout(timeout):
                await pong
            return True
        except (TimeoutError, ProviderError):
            return False
        finally:
            self._pings.pop(rid, None)

    def rss_mb(self) -> float:
        """The worker's resident memory (0 when it cannot be read)."""
        try:
            pages = int(Path(f"/proc/{self.pid}/statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return 0.0
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def kill(self, reason: str | None) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        self.killed_for = self.killed_for or reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._process.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Ask the worker to close its provider and exit; killed after CLOSE_S."""
        if self.dead is not None or not self.ready:
            return
        self.closing = True
        with contextlib.suppress(ProviderError):
            self.send("close", 0)
        try:
            async with asyncio.timeout(CLOSE_S):
                await self.exited.wait()
        except TimeoutError:
            _LOGGER.warning("%s worker did not close in %g s: killed", self.spec.provider, CLOSE_S)
            self.kill("closed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_S):
                    await self.exited.wait()


@dataclass(frozen=True)
class Limits:
    """When a worker is recycled (0: never)."""

    recycle_after_requests: int
    max_rss_mb: int


class Supervisor:
    """Keeps one worker running for a provider."""

    def __init__(self, spec: WorkerSpec, limits: Limits, stats: WorkerStats) -> None:
        self.spec = spec
        self._launcher = Launcher(spec.provider)
        self._limits = limits
        self.stats = stats
        self._current: WorkerProcess | None = None
        self._starting: asyncio.Task[WorkerProcess] | None = None  # in the current's place
        self._retiring: set[WorkerProcess] = set()  # replaced; closed once idle
        self._checks: set[asyncio.Task[None]] = set()
        self._checking: dict[WorkerProcess, asyncio.Task[None]] = {}  # suspected of hanging
        self._on_first_start: Callable[[dict[str, Any]], None] | None = None  # see start_later
        self._failures = 0  # quick deaths and failed starts in a row
        self._retry_at = 0.0  # no new worker before this (a back-off)
        self._closed = False

    async def start(self) -> dict[str, Any]:
        """Start the first worker: what its provider's roles advertise, by role
        (WorkerStartError if it cannot start)."""
        worker, description = await self._spawn()
        self._current = worker
        return description

    def start_later(
        self, error: WorkerStartError, on_start: Callable[[dict[str, Any]], None]
    ) -> None:
        """After ``start()`` failed with ``error``: keep trying, backing off, and hand what
        the provider's roles advertise to ``on_start`` once a worker runs."""
        self._on_first_start = on_start
        self._failed()
        _LOGGER.error(
            "%s; the speech endpoint goes on without %s until it starts",
            error,
            self.spec.provider,
        )
        self._replace(self._restart())

    async def _spawn(self) -> tuple[WorkerProcess, dict[str, Any]]:
        worker = WorkerProcess(self.spec, self._launcher, self._exited, self._request_ended)
        return worker, await worker.start()

    async def worker(self, timeout: float) -> WorkerProcess:
        """A live worker for a new request: the current one, or the one starting in its
        place (waited for up to ``timeout``)."""
        current = self._current
        if current is not None and (check := self._checking.get(current)) is not None:
            await asyncio.wait([check], timeout=timeout)  # a hung one is replaced first
            current = self._current
        if current is not None and current.dead is None:
            return current
        if self._closed:
            raise ProviderError(ErrorCode.SHUTTING_DOWN, f"{self.spec.provider} worker closed")
        if self._starting is None:
            self._replace(self._restart())
        if (backing_off := self._retry_at - time.monotonic()) >= timeout:
            raise ProviderError(
                ErrorCode.PROVIDER_FAILED,
                f"{self.spec.provider} worker keeps failing; next try in {backing_off:.0f} s",
            )
        assert self._starting is not None
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._starting)
        except TimeoutError:
            raise ProviderError(
                ErrorCode.CONNECT_FAILED, f"{self.spec.provider} worker not running yet"
            ) from None
        except WorkerStartError as exc:
            raise ProviderError(ErrorCode.PROVIDER_FAILED, str(exc)) from None

    def _replace(self, start: Any) -> None:
        self._starting = task = asyncio.create_task(start, name=f"{self.spec.provider} start")
        task.add_done_callback(self._started)

    def _started(self, task: asyncio.Task[WorkerProcess]) -> None:
        if self._starting is task:
            self._starting = None
        if task.cancelled() or (error := task.exception()) is None or self._closed:
            return
        self._failed()
        wait = max(0.0, self._retry_at - time.monotonic())
        _LOGGER.warning("%s; next try in %.0f s", error, wait)
        if self._current is None or self._current.dead is not None:
            self._replace(self._restart())  # no worker serves: keep trying, backing off

    def _failed(self) -> None:
        """One more quick death or failed start in a row: the next start waits longer, so a
        worker that cannot run does not cost a core."""
        self._failures += 1
        if self._failures > 1:
            backoff = min(2.0 ** (self._failures - 2), MAX_BACKOFF_S)
            self._retry_at = time.monotonic() + backoff

    async def _spawn_current(self) -> tuple[WorkerProcess, dict[str, Any]]:
        """A new worker in the current one's place (closed again if the supervisor closed
        while it started)."""
        worker, description = await self._spawn()
        if self._closed:
            await worker.close()
            raise WorkerStartError(f"{self.spec.provider} worker closed")
        self._current = worker
        return worker, description

    async def _restart(self) -> WorkerProcess:
        if (backoff := self._retry_at - time.monotonic()) > 0:
            await asyncio.sleep(backoff)
        worker, description = await self._spawn_current()
        on_first_start, self._on_first_start = self._on_first_start, None
        if on_first_start is not None:
            on_first_start(description)
        return worker

    async def _recycle(self, old: WorkerProcess, why: str) -> WorkerProcess:
        _LOGGER.info("%s worker %s: replacing it", self.spec.provider, why)
        worker, _ = await self._spawn_current()
        self._failures = 0
        if old.dead is None:
            self._retiring.add(old)
            if old.in_flight == 0:
                self._in_background(old.close())
        return worker

    def _exited(self, worker: WorkerProcess) -> None:
        self._retiring.discard(worker)
        if worker is not self._current or worker.closing or self._closed:
            return
        self._current = None
        if time.monotonic() - worker.started_at < QUICK_DEATH_S:
            self._failed()
        else:
            self._failures = 0
        self.stats.restarts += 1
        if worker.killed_for is None:
            _LOGGER.error("%s; restarting", worker.dead.message if worker.dead else "")
        if self._starting is None:
            self._replace(self._restart())

    def _request_ended(self, worker: WorkerProcess) -> None:
        if worker in self._retiring:
            if worker.in_flight == 0:
                self._in_background(worker.close())
            return
        if (
            worker is not self._current
            or self._starting is not None
            or time.monotonic() < self._retry_at  # its replacement failed to start: later
        ):
            return
        limits = self._limits
        why = None
        if limits.recycle_after_requests and worker.served >= limits.recycle_after_requests:
            why = f"served {worker.served} requests"
        elif limits.max_rss_mb and (rss := worker.rss_mb()) > limits.max_rss_mb:
            why = f"uses {rss:.0f} MB (over {limits.max_rss_mb} MB)"
        if why is not None:
            self._replace(self._recycle(worker, why))

    def follow_logs(self) -> None:
        """Log at the daemon's level and in its format from now on (after a reload)."""
        level, fmt = logs.current()
        self.spec = dataclasses.replace(self.spec, log_level=level, log_format=fmt)
        for worker in (self._current, *self._retiring):
            if worker is not None:
                with contextlib.suppress(ProviderError):
                    worker.send("logs", 0, level, fmt)

    def suspect(self, worker: WorkerProcess) -> None:
        """A request on ``worker`` ran out of time: ping it, and replace it when it does
        not answer."""
        if worker.dead is None and worker.killed_for is None and worker not in self._checking:
            self._checking[worker] = task = self._in_background(self._check(worker))
            task.add_done_callback(lambda _: self._checking.pop(worker, None))

    async def _check(self, worker: WorkerProcess) -> None:
        if await worker.answers(PING_S) or worker.dead is not None:
            return
        _LOGGER.error("%s worker does not answer (hung): killed; restarting", self.spec.provider)
        worker.kill("hung")
        await worker.exited.wait()  # its replacement is starting when this returns

    def _in_background(self, work: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)
        return task

    async def close(self) -> None:
        """Close every worker (each within CLOSE_S); no restart after this."""
        self._closed = True
        if self._starting is not None:
            self._starting.cancel()
        for task in self._checks:
            task.cancel()
        workers = [w for w in (self._current, *self._retiring) if w is not None]
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        await self._launcher.close()
