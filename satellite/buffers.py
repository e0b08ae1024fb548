"""A queue of audio or text that holds at most ``limits.max_buffer_bytes`` for one connection.

A client can send faster than the work it asked for consumes (audio ahead of a provider
that is still connecting, HA's TTS audio ahead of the speaker); without a bound, one
connection could take all the device's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Generic, TypeVar

T = TypeVar("T", bytes, str)


class BufferFull(Exception):
    """The piece that would take the waiting data over the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"over {limit} bytes waiting (limits.max_buffer_bytes)")
        self.limit = limit


def _size(piece: bytes | str) -> int:
    return len(piece.encode()) if isinstance(piece, str) else len(piece)


class BoundedQueue(Generic[T]):
    """Pieces for one consumer, at most ``limit`` bytes waiting (text counts as UTF-8).

    The piece that would go over the limit overflows the queue: ``put`` raises BufferFull
    that once, and that piece and every later one are ignored. What waits still reaches the
    consumer unless ``drop()`` discards it; ``end()`` always does.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.overflowed = False
        self._waiting = 0  # bytes
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()

    def put(self, piece: T) -> None:
        if self.overflowed:
            return
        size = _size(piece)
        if self._waiting + size > self.limit:
            self.overflowed = True
            raise BufferFull(self.limit)
        self._waiting += size
        self._queue.put_nowait(piece)

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def get(self) -> T | None:
        """The next piece, or None at the end."""
        piece = await self._queue.get()
        if piece is not None:
            self._waiting -= _size(piece)
        return piece

    async def pieces(self) -> AsyncIterator[T]:
        """Every piece, until the end."""
        while (piece := await self.get()) is not None:
            yield piece

    def drop(self) -> None:
        """Discard what waits (the end, if it came, stays)."""
        ended = False
        while not self._queue.empty():
            ended |= self._queue.get_nowait() is None
        self._waiting = 0
        if ended:
            self.end()
