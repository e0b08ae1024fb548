"""Who may connect to a server, and how many at once.

A peer outside ``limits.allowed_networks`` is closed at once, told nothing; a connection
beyond ``limits.max_connections``, or one that comes after ``close_doors()``, gets an
``error`` (``busy``, ``shutting-down``) and is closed. Admitted handlers get the server's
limits and are counted until their connection ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial

from wyoming.error import Error
from wyoming.event import Event
from wyoming.server import AsyncEventHandler, HandlerFactory

from .config import LimitsConfig
from .errors import ErrorCode
from .wyoming_handler import GuardedHandler

_LOGGER = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MakeHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], GuardedHandler]
REPEAT_WARNING_S = 60.0  # one refused peer floods the log with one line a minute at most


class Connections:
    """Admission and bookkeeping of one server's connections."""

    def __init__(self, role: str, limits: LimitsConfig) -> None:
        self.role = role
        self.limits = limits  # a config reload may replace it: new connections use the new one
        self._handlers: list[GuardedHandler] = []
        self._doors_open = True
        self._warnings = _Throttle(REPEAT_WARNING_S)

    def factory(self, make: MakeHandler) -> HandlerFactory:
        """The server's handler factory: ``make`` builds the handler of an admitted client."""
        return partial(self._admit, make)

    @property
    def handlers(self) -> list[GuardedHandler]:
        """The live, admitted connections."""
        return list(self._handlers)

    def close_doors(self) -> None:
        """From now on, new connections get ``error`` shutting-down and are closed."""
        self._doors_open = False

    def _admit(
        self, make: MakeHandler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> AsyncEventHandler:
        limits = self.limits
        peer = writer.get_extra_info("peername")
        if not allowed(peer, limits.allowed_networks):
            self._warn(peer, "not in limits.allowed_networks; connection closed")
            return _Refusal(reader, writer)
        if not self._doors_open:
            text = f"the {self.role} server is shutting down"
            self._warn(peer, "refused: shutting down", logging.INFO)
            return _Refusal(reader, writer, Error(text=text, code=ErrorCode.SHUTTING_DOWN))
        live = len(self._handlers)
        if live >= limits.max_connections:
            text = (
                f"the {self.role} server already serves {live} connections "
                f"(limits.max_connections); try again later"
            )
            self._warn(peer, f"refused: busy with {live} connections (limits.max_connections)")
            return _Refusal(reader, writer, Error(text=text, code=ErrorCode.BUSY))
        handler = make(reader, writer)
        handler.limits = limits
        handler.on_close = self._handlers.remove
        self._handlers.append(handler)
        return handler

    def _warn(self, peer: object, what: str, level: int = logging.WARNING) -> None:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        repeats = self._warnings.passes((host, what))
        if repeats is not None:
            more = f" ({repeats} more since the last report)" if repeats else ""
            _LOGGER.log(level, "%s server: client %s %s%s", self.role, peer, what, more)


def allowed(peer: object, networks: Sequence[Network]) -> bool:
    """Whether ``peer`` (a socket's peername) may connect; unix-socket peers always may."""
    if not networks or not isinstance(peer, tuple):
        return True
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return any(address in network for network in networks)


class _Throttle:
    """Lets a repeated message through at most once per ``interval`` seconds."""

    MAX_KEYS = 1024  # many distinct peers: forget them all rather than grow

    def __init__(self, interval: float) -> None:
        self._interval = interval
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # last logged, held back

    def passes(self, key: tuple[str, str]) -> int | None:
        """None to hold the message back, else how many were held back before it."""
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return None
        if len(self._seen) >= self.MAX_KEYS:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return last[1] if last is not None else 0


class _Refusal(AsyncEventHandler):
    """A refused connection: sends ``error`` (none to a peer outside the allow-list) and
    closes. Fits wyoming's server, which runs every handler the factory returns."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, error: Error | None = None
    ) -> None:
        super().__init__(reader, writer)
        self._error = error

    async def handle_event(self, event: Event) -> bool:
        return False

    async def run(self) -> None:
        try:
            if self._error is not None:
                with contextlib.suppress(ConnectionError):
                    await self.write_event(self._error.event())
        finally:
            self.writer.close()
