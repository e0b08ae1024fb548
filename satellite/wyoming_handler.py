"""A Wyoming connection handler that answers bad input with ``error`` events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod

from wyoming.error import Error
from wyoming.event import Event, async_read_event
from wyoming.server import AsyncEventHandler

from .providers.base import ErrorCode

_LOGGER = logging.getLogger(__name__)


class BadRequest(Exception):
    """The client sent an event we cannot act on."""


class GuardedHandler(AsyncEventHandler):
    """Reads events until the client leaves.

    A well-framed event with unusable data gets an ``error`` (code ``bad-request``) and the
    connection goes on; broken framing gets an ``error`` and a close, since nothing after
    it can be trusted.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.peer = writer.get_extra_info("peername")

    async def run(self) -> None:
        try:
            while True:
                try:
                    event = await async_read_event(self.reader)
                except (KeyError, TypeError, AttributeError, asyncio.IncompleteReadError) as exc:
                    await self._reject_stream(f"malformed event ({type(exc).__name__})")
                    break
                if event is None:
                    if not self.reader.at_eof():
                        await self._reject_stream("malformed event header (not a JSON line)")
                    break
                if not await self.handle_event(event):
                    break
        except ConnectionError:
            pass
        finally:
            await self.disconnect()
            self.writer.close()

    async def handle_event(self, event: Event) -> bool:
        try:
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

    async def _reject_stream(self, text: str) -> None:
        _LOGGER.warning("client %s: %s; closing the connection", self.peer, text)
        await self.send_error(ErrorCode.BAD_REQUEST, text)


def audio_format_of(data: dict) -> tuple[int, int, int]:
    """(rate, width, channels) of an audio event, or BadRequest."""
    try:
        return int(data["rate"]), int(data["width"]), int(data["channels"])
    except (KeyError, TypeError, ValueError):
        raise BadRequest("audio event needs integer rate, width and channels") from None
