"""The messages between the daemon and its provider workers: length-prefixed frames.

Each frame is a 4-byte big-endian length and a pickled tuple ``(kind, request id, ...)``.
Pickle is safe here: both ends are this program, over a socket pair only they hold.

Each end is a ``MessageStream``: the loop's read callback hands every message straight to its
handler. A reader task in between would cost each message one more turn of the loop on each
end (``bench/ipc_floor.py`` measures what that adds to a round trip).
"""

from __future__ import annotations

import asyncio
import collections
import pickle
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from ..logs import LogFormat

_LENGTH = struct.Struct(">I")
# Far above any message (audio chunks are kilobytes); a larger length means a broken peer.
MAX_FRAME_BYTES = 64 * 1024 * 1024
# A message between the daemon and a worker launcher (a few words; a pid, a return code).
MAX_LAUNCHER_MESSAGE_BYTES = 4096

Message = tuple[Any, ...]


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs to build its provider, sent as the first message (the key goes
    through the socket, never the command line or the environment of a new process)."""

    provider: str  # its name in the provider table, as the log names the worker
    section: Any  # the provider's config section
    credentials: Any  # base.Credentials
    roles: dict[str, str | None]  # "asr", "tts" -> the role's language or voice
    log_level: str
    log_format: LogFormat


def process_title(provider: str, role: str) -> str:
    """How ``ps`` and ``systemctl status`` name a provider's worker or its launcher."""
    return f"voice-satellite {provider} {role}"


def encode(message: Message) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(payload)) + payload


class MessageStream(asyncio.Protocol):
    """One end of the socket between the daemon and a worker.

    Until ``handle`` is called, messages wait for ``next`` (the start-up exchange); from
    then on each goes to the handler as it is read, and the handler's ``on_closed`` runs
    once the peer has closed its end (or died). A broken frame closes the stream.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._early: collections.deque[Message] = collections.deque()
        self._arrived = asyncio.Event()  # something is in _early, or the stream has closed
        self._on_message: Callable[[Message], None] | None = None
        self._on_closed: Callable[[], None] | None = None
        self._lost = False
        self._writable: asyncio.Future[None] | None = None  # while the peer is not reading

    @classmethod
    async def open(cls, sock: socket.socket) -> MessageStream:
        """The stream over ``sock``, a connected Unix socket."""
        _, stream = await asyncio.get_running_loop().create_unix_connection(cls, sock=sock)
        return stream

    async def next(self) -> Message | None:
        """The next message not yet handled, or None once the peer has closed its end."""
        while not self._early:
            if self._lost:
                return None
            self._arrived.clear()
            await self._arrived.wait()
        return self._early.popleft()

    def handle(self, on_message: Callable[[Message], None], on_closed: Callable[[], None]) -> None:
        """Hand every message from now on (and any waiting) to ``on_message``."""
        self._on_message, self._on_closed = on_message, on_closed
        while self._early:
            on_message(self._early.popleft())
        if self._lost:
            on_closed()

    @property
    def handled(self) -> bool:
        """``handle`` has been called: the start-up exchange is over."""
        return self._on_message is not None

    def send(self, message: Message) -> None:
        """Queue ``message`` to the peer; dropped once the stream is closing."""
        if not self.is_closing():
            assert self._transport is not None
            self._transport.write(encode(message))

    async def drain(self) -> None:
        """Wait until the peer reads what was sent; ConnectionError once it is gone."""
        if self._lost:
            raise ConnectionResetError("the peer has closed its end")
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # --- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while len(buffer) - start >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(buffer, start)
            end = start + _LENGTH.size + length
            if length > MAX_FRAME_BYTES:
                self._broken()
                return
            if len(buffer) < end:
                break
            try:
                message = pickle.loads(buffer[start + _LENGTH.size : end])
            except Exception:
                self._broken()
                return
            start = end
            self._deliver(message)
        del buffer[:start]

    def _deliver(self, message: Message) -> None:
        if self._on_message is None:
            self._early.append(message)
            self._arrived.set()
        else:
            self._on_message(message)

    def _broken(self) -> None:
        """A frame no end of ours would write: the peer is broken; close the stream."""
        self._buffer.clear()
        assert self._transport is not None
        self._transport.abort()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._arrived.set()
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(ConnectionResetError("the peer has closed its end"))
            self._writable.exception()  # retrieved here: nobody may be waiting for it
        self._writable = None
        if self._on_closed is not None:
            self._on_closed()
