"""A Wyoming connection handler that answers bad input with ``error`` events.

It also bounds what one client may cost: an event announcing more than
``limits.max_event_bytes`` is refused before its bytes are read, and a connection with no
event either way for ``limits.idle_timeout_s`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import abstractmethod
from collections.abc import Callable

from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.server import AsyncEventHandler

from .config import LimitsConfig
from .errors import ErrorCode

_LOGGER = logging.getLogger(__name__)

# The line limit of asyncio's streams, which wyoming's servers keep: a longer header line
# makes the reader fail before it buffers more.
HEADER_LINE_LIMIT = 64 * 1024


class BadRequest(Exception):
    """The client sent an event we cannot act on."""


class EventTooLarge(Exception):
    """An event over the limits, refused before its data and payload are read."""


class _BoundedReader:
    """The reader ``async_read_event`` reads through: a header line that announces more than
    ``max_event_bytes`` (with its data and payload) raises EventTooLarge before those bytes
    are read, so they are never buffered."""

    def __init__(self, reader: asyncio.StreamReader, max_event_bytes: int) -> None:
        self._reader = reader
        self._max = max_event_bytes

    async def readline(self) -> bytes:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial  # the end of the stream, as StreamReader.readline returns it
        except asyncio.LimitOverrunError:
            raise EventTooLarge(
                f"event header line longer than {HEADER_LINE_LIMIT} bytes"
            ) from None
        self._check(line)
        return line

    async def readexactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)

    def _check(self, line: bytes) -> None:
        try:
            header = json.loads(line)
        except (ValueError, RecursionError):
            return  # async_read_event fails on it too, and the handler reports it
        if not isinstance(header, dict):
            return
        data = _length(header.get("data_length"))
        payload = _length(header.get("payload_length"))
        total = len(line) + data + payload
        if total > self._max:
            raise EventTooLarge(
                f"event of {total:.0f} bytes (header {len(line)}, data {data:.0f}, "
                f"payload {payload:.0f}) is over limits.max_event_bytes ({self._max})"
            )


def _length(value: object) -> float:
    """A length from a header as async_read_event reads it: only positive numbers count."""
    return max(value, 0) if isinstance(value, int | float) else 0


class GuardedHandler(AsyncEventHandler):
    """Reads events until the client leaves.

    A well-framed event with unusable data gets an ``error`` (code ``bad-request``) and the
    connection goes on; broken framing, or an event over ``limits.max_event_bytes`` (code
    ``too-large``), gets an ``error`` and a close, since nothing after it can be trusted.
    """

    # Set by Connections.factory once the handler is built, so subclasses keep their
    # constructors: the server's limits, and what to call when the connection has ended.
    limits: LimitsConfig = LimitsConfig()
    on_close: Callable[[GuardedHandler], None] | None = None

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.peer = writer.get_extra_info("peername")
        self._idle: asyncio.Timeout | None = None  # while waiting for the next event

    async def run(self) -> None:
        reader = _BoundedReader(self.reader, self.limits.max_event_bytes)
        try:
            while True:
                try:
                    event = await self._next_event(reader)
                except TimeoutError:
                    _LOGGER.info(
                        "client %s: no event for %g s (limits.idle_timeout_s); closing the "
                        "connection",
                        self.peer,
                        self.limits.idle_timeout_s,
                    )
                    break
                except EventTooLarge as exc:
                    await self._reject_stream(ErrorCode.TOO_LARGE, str(exc))
                    break
                except (
                    KeyError,
                    TypeError,
                    AttributeError,
                    RecursionError,  # JSON nested too deep
                    asyncio.IncompleteReadError,
                ) as exc:
                    text = f"malformed event ({type(exc).__name__})"
                    await self._reject_stream(ErrorCode.BAD_REQUEST, text)
                    break
                if event is None:
                    if not self.reader.at_eof():
                        text = "malformed event header (not a JSON line)"
                        await self._reject_stream(ErrorCode.BAD_REQUEST, text)
                    break
                if not await self.handle_event(event):
                    break
        except ConnectionError:
            pass
        finally:
            await self.disconnect()
            self.writer.close()
            if self.on_close is not None:
                self.on_close(self)

    async def _next_event(self, reader: _BoundedReader) -> Event | None:
        """The next event; TimeoutError once nothing went either way for the idle timeout."""
        self._idle = asyncio.timeout(self.limits.idle_timeout_s)
        try:
            async with self._idle:
                return await async_read_event(reader)  # type: ignore[arg-type]
        finally:
            self._idle = None

    async def write_event(self, event: Event) -> None:
        idle = self._idle
        if idle is not None and not idle.expired():  # an answer being sent is not idleness
            idle.reschedule(asyncio.get_running_loop().time() + self.limits.idle_timeout_s)
        await super().write_event(event)

    async def handle_event(self, event: Event) -> bool:
        try:
            if not isinstance(event.type, str) or not isinstance(event.data, dict):
                raise BadRequest("'type' must be a string and 'data' an object")
            await self.dispatch(event)
        except BadRequest as exc:
            _LOGGER.warning("client %s: bad %s event: %s", self.peer, event.type, exc)
            await self.send_error(ErrorCode.BAD_REQUEST, f"bad {event.type} event: {exc}")
        return True

    @abstractmethod
    async def dispatch(self, event: Event) -> None:
        """Act on one event; raise BadRequest for unusable data; ignore unknown types."""

    async def send_error(self, code: ErrorCode, text: str) -> None:
        with contextlib.suppress(ConnectionError):
            await self.write_event(Error(text=text, code=code.value).event())

    async def _reject_stream(self, code: ErrorCode, text: str) -> None:
        _LOGGER.warning("client %s: %s; closing the connection", self.peer, text)
        await self.send_error(code, text)


def audio_format_of(data: dict) -> tuple[int, int, int]:
    """(rate, width, channels) of an audio event, or BadRequest."""
    try:
        return int(data["rate"]), int(data["width"]), int(data["channels"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise BadRequest("audio event needs integer rate, width and channels") from None
