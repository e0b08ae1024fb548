"""What the fake provider servers share: a websocket server on 127.0.0.1 whose asyncio loop
runs in a daemon thread (so both synchronous and asyncio tests can use it), a ``fault`` that
may change at any time, and the command line ``python -m tests.fakes.X --port 0 [--delay S]
[--fault F] [--pace P]`` that prints ``READY <url>`` and serves until SIGTERM or SIGINT.

TTS audio is produced by a task of its own per TTS task (or response), paced by ``pace``, so
that the fake keeps reading the client while it speaks: a cancel, or the client's connection
going away, stops it as it would stop the service. Each TTS task's ``Production`` counts what
was still sent after that."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

CALL_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0


@dataclass
class Production:
    """The audio one TTS task (a DashScope task, a Qwen realtime session, an Azure turn)
    sent, and when it was told to stop: what a client that left still cost."""

    frames: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, PCM bytes)
    stopped_at: float | None = None  # time.monotonic() of the first stop that came
    stopped_by: str | None = None  # "cancel", "clear", "closed" (the client's connection went)
    finished: bool = False  # all its audio was sent

    @property
    def sent(self) -> int:
        """PCM bytes sent."""
        return sum(size for _, size in self.frames)

    def sent_after(self, moment: float) -> int:
        """PCM bytes sent after ``moment`` (time.monotonic())."""
        return sum(size for at, size in self.frames if at > moment)

    @property
    def sent_after_stop(self) -> int:
        """PCM bytes still sent once the stop had come (0 if none came)."""
        return 0 if self.stopped_at is None else self.sent_after(self.stopped_at)

    def stop(self, why: str) -> None:
        """Record a stop (only the first counts; none once all audio was sent)."""
        if self.stopped_at is None and not self.finished:
            self.stopped_at = time.monotonic()
            self.stopped_by = why


class ThreadedFake(ABC):
    """Base of the fakes. A subclass sets ``FAULTS`` (None first, then its fault names),
    ``NAME`` and ``DESCRIPTION``, may add keywords for ``serve()`` in ``SERVE_OPTIONS``, and
    implements ``_process_request``, ``_handle`` and ``_ready_url``.

    "refuse" is handled here: the fake stops listening (open connections live on) and keeps
    its port. ``_fault_changed`` runs on the fake's loop after every change of ``fault``.
    """

    FAULTS: ClassVar[tuple[str | None, ...]]
    NAME: ClassVar[str]  # names the thread: fake-NAME
    DESCRIPTION: ClassVar[str]  # of the command line
    SERVE_OPTIONS: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, delay: float, port: int, pace: float = 0.0) -> None:
        self.delay = delay
        # Seconds of wall time per second of TTS audio sent: 1.0 speaks in real time, 0.0
        # as fast as the connection takes it (still reading the client between frames).
        self.pace = pace
        # Per TTS task, in order: time.monotonic() just before its first binary audio frame.
        self.first_audio_sent: list[float] = []
        # Per TTS task, in the order they started: the audio sent, and any stop.
        self.productions: list[Production] = []
        self._fault: str | None = None
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._connections: set[ServerConnection] = set()

    # --- what the fakes differ in ----------------------------------------------------

    @abstractmethod
    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Awaitable[Response | None] | None:
        """The check of each opening handshake: a response refuses it, None accepts it."""

    @abstractmethod
    async def _handle(self, ws: ServerConnection) -> None:
        """Serve one accepted connection; may raise ConnectionClosed."""

    @abstractmethod
    def _ready_url(self) -> str:
        """What clients connect to, printed by the command line after READY."""

    def _fault_changed(self) -> None:
        """Called on the fake's loop once ``fault`` has changed, and at start."""

    @classmethod
    def _add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Command-line options beyond --port, --delay and --fault; each one's ``dest`` must
        be a keyword of the constructor."""

    # --- public API ---------------------------------------------------------------

    @property
    def fault(self) -> str | None:
        return self._fault

    @fault.setter
    def fault(self, value: str | None) -> None:
        if value not in self.FAULTS:
            raise ValueError(f"unknown fault {value!r}, expected one of {self.FAULTS}")
        self._fault = value
        if self._loop is not None:
            self._call(self._apply_fault())

    @property
    def live_connections(self) -> frozenset[ServerConnection]:
        """The websocket connections accepted and not yet closed."""
        return frozenset(self._connections)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        if not self._port and self._fault == "refuse":  # keep a port to refuse connections on
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                self._port = probe.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"fake-{self.NAME}", daemon=True
        )
        self._thread.start()
        self._call(self._apply_fault())
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket, then end the thread."""
        if self._loop is None or self._thread is None:
            return
        with contextlib.suppress(Exception):
            self._call(self._close_all())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @classmethod
    def main(cls, argv: list[str] | None = None) -> None:
        """Serve from the command line until SIGTERM or SIGINT, then exit with status 0."""
        parser = argparse.ArgumentParser(description=cls.DESCRIPTION)
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--delay", type=float, default=0.0)
        parser.add_argument("--pace", type=float, default=0.0)
        parser.add_argument("--fault", choices=[f for f in cls.FAULTS if f], default=None)
        cls._add_arguments(parser)
        options = vars(parser.parse_args(argv))
        fault = options.pop("fault")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        fake = cls(**options)
        fake.fault = fault
        with fake:
            print(f"READY {fake._ready_url()}", flush=True)
            while not stop.wait(1.0):
                pass
        sys.exit(0)

    # --- for the subclasses ----------------------------------------------------------

    @property
    def _origin(self) -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"ws://127.0.0.1:{self._port}"

    @staticmethod
    def _drop(ws: ServerConnection) -> None:
        """Close abruptly: a TCP reset, no close frame, as when a connection is lost."""
        ws.transport.abort()

    def _production(self) -> Production:
        """A new TTS task's record, listed in ``productions``."""
        production = Production()
        self.productions.append(production)
        return production

    async def _send_audio(
        self,
        ws: ServerConnection,
        frame: str | bytes,
        *,
        first: bool,
        production: Production,
        pcm_bytes: int,
        seconds: float,
    ) -> None:
        """Send one audio frame (``pcm_bytes`` of PCM lasting ``seconds``), then wait as
        ``pace`` says; ``first`` (of its TTS task) stamps first_audio_sent."""
        now = time.monotonic()
        if first:
            self.first_audio_sent.append(now)
        production.frames.append((now, pcm_bytes))  # stamped as it goes: a client may read
        await ws.send(frame)  # it (on another thread) before this returns
        await asyncio.sleep(seconds * self.pace)  # sleep(0) too: the reader gets its turn

    # --- plumbing --------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT_SECONDS)

    async def _apply_fault(self) -> None:
        await self._listen(self._fault != "refuse")
        self._fault_changed()

    async def _listen(self, listening: bool) -> None:
        if listening and self._server is None:
            self._server = await serve(
                self._serve_connection,
                "127.0.0.1",
                self._port,
                process_request=self._process_request,
                ping_interval=None,
                **self.SERVE_OPTIONS,
            )
            self._port = self._server.sockets[0].getsockname()[1]
        elif not listening and self._server is not None:
            server, self._server = self._server, None
            server.server.close()  # stop listening now: new connections are refused
            server.close(close_connections=False)  # open connections live on

    async def _serve_connection(self, ws: ServerConnection) -> None:
        self._connections.add(ws)
        try:
            await self._handle(ws)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(ws)

    def _drop_all(self) -> None:
        for ws in list(self._connections):
            self._drop(ws)

    async def _close_all(self) -> None:
        """Stop listening, cut every connection and end every other task of the fake's loop."""
        await self._listen(False)
        self._drop_all()
        tasks = asyncio.all_tasks() - {asyncio.current_task()}
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_SECONDS)
