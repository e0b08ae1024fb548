"""The warm-connection pool every provider's warm connections go through, with a small
connection class that connects on a pool thread, as the SDKs' connections do."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from satellite.bridge import run_blocking
from satellite.providers.warm_pool import WarmPool
from tests.providers.common import wait_for

pytestmark = pytest.mark.timeout(30)


class Connection:
    """Connected on a pool thread by ``Server.connect``; ``close`` works from any thread,
    also while connecting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = False
        self.closed = False
        self.busy = False  # a request used it and has not finished

    @property
    def ready(self) -> bool:
        return self.open and not self.closed and not self.busy

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.open = False

    def connected(self) -> None:
        with self._lock:
            self.open = not self.closed


class Server:
    """Where connections connect: refusing, or holding connects until ``gate`` is set."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.made: list[Connection] = []
        self.attempts = 0
        self.connecting = 0  # connects inside the (blocking) handshake now
        self.refuse = False
        self.drop = False  # accept, then close at once
        self.gate = threading.Event()
        self.gate.set()

    def connect(self, connection: Connection) -> None:
        """Blocking, bounded: the handshake."""
        with self._lock:
            self.attempts += 1
            self.connecting += 1
        try:
            if not self.gate.wait(5.0):
                raise TimeoutError("no handshake")
            if self.refuse:
                raise ConnectionRefusedError("refused by the test server")
            connection.connected()
            if self.drop:
                connection.close()
        finally:
            with self._lock:
                self.connecting -= 1

    def open_ones(self) -> list[Connection]:
        return [c for c in self.made if c.open]


def make_pool(server: Server, size: int = 1, **options: float) -> WarmPool[Connection]:
    async def create() -> Connection:
        connection = Connection()
        server.made.append(connection)
        return connection

    async def connect(connection: Connection) -> None:
        async with asyncio.timeout(2.0):
            await run_blocking(server.connect, connection)

    return WarmPool("test connection", size, create, connect, **options)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Server:
    return Server()


async def test_fills_to_its_size(server: Server) -> None:
    pool = make_pool(server, size=3)
    await pool.fill()
    assert pool.ready_count == 3 and len(server.open_ones()) == 3
    await pool.close()
    assert pool.ready_count == 0 and server.open_ones() == []


async def test_take_hands_out_a_ready_one_and_a_replacement_connects(server: Server) -> None:
    pool = make_pool(server, size=2)
    await pool.fill()
    taken = pool.take()
    assert taken is not None and taken.ready  # the caller's now
    assert await wait_for(lambda: pool.ready_count == 2 and len(server.made) == 3)
    await asyncio.sleep(0.1)
    assert len(server.made) == 3  # no more than its size
    await pool.close()
    assert taken.open and len(server.open_ones()) == 1  # closing the pool left it alone


async def test_a_dead_idle_one_is_never_handed_out(server: Server) -> None:
    pool = make_pool(server, size=1)
    await pool.fill()
    server.made[0].close()  # the server dropped it
    server.gate.clear()  # the replacement is still connecting when asked for
    assert pool.take() is None
    server.gate.set()
    assert await wait_for(lambda: pool.ready_count == 1)
    assert pool.take() is server.made[1]
    await pool.close()


async def test_idle_ones_are_replaced(server: Server) -> None:
    pool = make_pool(server, size=2, max_idle_s=0.2)
    await pool.fill()
    assert await wait_for(lambda: len(server.made) >= 6, 5.0)
    assert await wait_for(lambda: len(server.open_ones()) == 2)  # the old ones were closed
    await pool.close()
    assert server.open_ones() == []


async def test_failed_connects_back_off(server: Server, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "satellite.providers.warm_pool")
    server.refuse = True
    pool = make_pool(server, size=2, retry_s=0.2, max_retry_s=0.8)
    await pool.fill()
    assert pool.ready_count == 0 and server.attempts == 2  # both places, one attempt
    pool.take()  # a request during the back-off does not bring the next attempt forward
    await asyncio.sleep(0.1)
    assert server.attempts == 2
    # a round is logged once both its connects have failed
    assert await wait_for(lambda: len(caplog.records) == 4, 5.0)
    assert server.attempts == 2 * 4  # one warning per round, not per connection
    warnings = [r.getMessage() for r in caplog.records]
    assert all("refused by the test server" in w for w in warnings)
    delays = [w.rsplit("next attempt in ", 1)[1] for w in warnings]
    assert delays == ["0.2 s", "0.4 s", "0.8 s", "0.8 s"]
    server.refuse = False
    assert await wait_for(lambda: pool.ready_count == 2, 5.0)  # healed at the next attempt
    await pool.close()


async def test_one_dropped_as_it_connects_is_retried_after_the_pause(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    server.drop = True
    pool = make_pool(server, size=1, retry_s=1.0)
    await pool.fill()
    assert pool.ready_count == 0 and server.attempts == 1
    await asyncio.sleep(0.2)
    assert server.attempts == 1  # not reconnected in a loop
    assert "closed as soon as it connected; next attempt in 1 s" in caplog.text
    server.drop = False
    assert await wait_for(lambda: pool.ready_count == 1, 5.0)
    await pool.close()


async def test_give_back_keeps_only_clean_ones_up_to_the_maximum(server: Server) -> None:
    pool = make_pool(server, size=1, keep=2)
    await pool.fill()
    first = pool.take()
    assert first is not None
    await asyncio.sleep(0.1)
    assert len(server.made) == 1  # taken, it still counts: it comes back
    extra = [Connection() for _ in range(3)]  # made for requests that found none ready
    for connection in extra:
        connection.connected()
        pool.adopt(connection)
    busy = extra[2]
    busy.busy = True  # its request was cancelled mid-way
    pool.give_back(busy)
    assert busy.closed
    pool.give_back(first)
    pool.give_back(extra[0])
    pool.give_back(extra[1])  # one more than it keeps
    assert pool.ready_count == 2 and not first.closed and not extra[0].closed
    assert extra[1].closed
    assert pool.take() is extra[0]  # the latest given back
    await pool.close()
    assert first.closed
    pool.give_back(extra[0])  # after the pool has closed
    assert extra[0].closed


async def test_close_releases_a_connection_being_connected(server: Server) -> None:
    server.gate.clear()
    pool = make_pool(server, size=1)
    filling = asyncio.create_task(pool.fill())
    assert await wait_for(lambda: server.connecting == 1)
    async with asyncio.timeout(1.0):  # promptly, not after the connect
        await pool.close()
        await filling
    (connection,) = server.made
    assert connection.closed
    server.gate.set()  # the handshake completes on its thread after all
    assert await wait_for(lambda: server.connecting == 0)
    assert not connection.open and pool.ready_count == 0


async def test_close_releases_one_created_too_late(server: Server) -> None:
    created = asyncio.Event()
    made: list[Connection] = []

    async def create() -> Connection:
        await created.wait()
        made.append(Connection())
        return made[-1]

    async def connect(connection: Connection) -> None:
        connection.connected()

    pool = WarmPool("test connection", 1, create, connect)
    filling = asyncio.create_task(pool.fill())
    await asyncio.sleep(0.05)
    async with asyncio.timeout(1.0):
        await pool.close()
        await filling
    created.set()
    assert await wait_for(lambda: bool(made))
    assert await wait_for(lambda: made[0].closed)


async def test_close_releases_one_connected_but_not_yet_placed() -> None:
    connected = asyncio.Event()
    made: list[Connection] = []

    async def create() -> Connection:
        made.append(Connection())
        return made[-1]

    async def connect(connection: Connection) -> None:
        connection.connected()
        connected.set()

    pool = WarmPool("test connection", 1, create, connect)
    filling = asyncio.create_task(pool.fill())
    await connected.wait()  # the pool has not taken it in yet
    async with asyncio.timeout(1.0):
        await pool.close()
        await filling
    assert made[0].closed
