"""The daemon's messages to and from its provider workers, and how a worker's end is named."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from satellite.providers.launcher import exit_reason
from satellite.providers.worker_ipc import MAX_FRAME_BYTES, Message, MessageStream, encode

AUDIO = bytes(range(256)) * 40


@pytest.fixture
async def ends() -> AsyncIterator[tuple[MessageStream, socket.socket]]:
    """A stream, and the raw socket of its peer (non-blocking, read with the loop)."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    stream = await MessageStream.open(ours)
    yield stream, theirs
    stream.close()
    theirs.close()


async def test_messages_come_out_whole_and_in_order_however_the_bytes_are_cut(ends) -> None:
    stream, peer = ends
    data = encode(("audio", 7, AUDIO)) + encode(("end", 7)) + encode(("ping", 8))
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, data[:1])  # a length cut short
    await asyncio.sleep(0.01)
    await loop.sock_sendall(peer, data[1:3000])  # the audio cut in the middle
    await asyncio.sleep(0.01)
    await loop.sock_sendall(peer, data[3000:])  # the rest, two messages at once
    peer.shutdown(socket.SHUT_WR)
    assert await stream.next() == ("audio", 7, AUDIO)
    assert await stream.next() == ("end", 7)
    assert await stream.next() == ("ping", 8)
    assert await stream.next() is None


async def test_a_handler_gets_what_waited_then_each_message_then_the_close(ends) -> None:
    stream, peer = ends
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, encode(("ready", 0, {})) + encode(("pong", 1)))
    assert await stream.next() == ("ready", 0, {})
    handled: list[Message] = []
    closed = asyncio.Event()
    stream.handle(handled.append, closed.set)
    assert handled == [("pong", 1)]  # it had come before the handler
    await loop.sock_sendall(peer, encode(("audio", 2, AUDIO)))
    peer.close()
    await asyncio.wait_for(closed.wait(), 5)
    assert handled == [("pong", 1), ("audio", 2, AUDIO)]


@pytest.mark.parametrize(
    "frame",
    [struct.pack(">I", MAX_FRAME_BYTES + 1), struct.pack(">I", 3) + b"\x80zz"],
    ids=["announcing too much", "not a message"],
)
async def test_a_broken_frame_closes_the_stream(ends, frame: bytes) -> None:
    stream, peer = ends
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(peer, encode(("pong", 1)) + frame)
    assert await stream.next() == ("pong", 1)
    assert await asyncio.wait_for(stream.next(), 5) is None
    assert await asyncio.wait_for(loop.sock_recv(peer, 10), 5) == b""  # the peer sees it


async def test_drain_waits_for_a_peer_that_does_not_read_and_fails_once_it_is_gone(ends) -> None:
    stream, peer = ends
    loop = asyncio.get_running_loop()
    for _ in range(200):  # far more than the socket buffers hold
        stream.send(("audio", 1, AUDIO))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.drain(), 0.2)
    received = 0
    expected = len(encode(("audio", 1, AUDIO))) * 200
    async with asyncio.timeout(10):
        while received < expected:
            received += len(await loop.sock_recv(peer, 1 << 16))
        await stream.drain()  # all of it read: it returns
    peer.close()
    async with asyncio.timeout(5):
        while not stream.is_closing():
            await asyncio.sleep(0.01)
    stream.send(("audio", 1, AUDIO))  # dropped, not raised
    with pytest.raises(ConnectionError):
        await stream.drain()


def test_a_workers_end_is_named_by_its_signal_or_status() -> None:
    assert exit_reason(-11) == "SIGSEGV"
    assert exit_reason(-9) == "SIGKILL"
    assert exit_reason(-6) == "SIGABRT"
    assert exit_reason(3) == "exit status 3"
