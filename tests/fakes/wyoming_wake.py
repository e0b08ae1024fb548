"""A fake Wyoming wake-word service (the part of wyoming-openwakeword a satellite meets), run
on the test's own event loop on 127.0.0.1.

It answers ``describe`` with one wake program, records every event, ``detect`` request and
audio chunk, and reports ``detection`` for each audio chunk that starts with ``MARKER``.
``stop()`` takes it down (open connections closed, port refused) and ``start()`` brings it
back on the same port. Modes for faults: ``hang_up`` (close each connection on its first
event) and ``stall`` (stop reading once audio flows, as a hung service does).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Self

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info, WakeModel, WakeProgram
from wyoming.server import AsyncEventHandler, AsyncTcpServer
from wyoming.wake import Detect, Detection, NotDetected

MARKER = b"WAKE"  # an audio chunk starting with this holds a wake word
STOP_TIMEOUT_S = 5.0

_ATTRIBUTION = Attribution(name="tests", url="https://example.invalid")


class _Server(AsyncTcpServer):
    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return self._server.sockets[0].getsockname()[1]

    async def stop_and_wait(self) -> None:
        handlers = list(self._handlers)
        await self.stop()
        if self._server is not None:
            await asyncio.wait_for(self._server.wait_closed(), STOP_TIMEOUT_S)
        if handlers:
            await asyncio.wait(handlers, timeout=STOP_TIMEOUT_S)


class FakeWakeService:
    def __init__(
        self,
        models: Sequence[tuple[str, str, Sequence[str]]] = (
            ("okay_nabu", "Okay Nabu", ("en",)),
            ("hey_jarvis", "Hey Jarvis", ("en",)),
        ),
        detection_name: str | None = None,  # None: the first model's name
    ) -> None:
        self.models = list(models)
        self.detection_name = detection_name or self.models[0][0]
        self.hang_up = False
        self.stall = False
        self.port = 0  # known once started; kept across restarts
        self.connections = 0
        self.events: list[str] = []  # types of the events received, all connections
        self.detect_names: list[list[str] | None] = []  # ``names`` of each ``detect``
        self.chunks: list[bytes] = []
        self.timestamps: list[int | None] = []  # of each chunk
        self.detections: list[str] = []  # names sent in ``detection``
        self.stalled = asyncio.Event()  # set when a stalling handler stops reading
        self._release = asyncio.Event()
        self._server: _Server | None = None

    async def released(self) -> None:
        """Returns once the stalled handlers may go on (``unstall()`` or ``stop()``)."""
        await self._release.wait()

    @property
    def audio_bytes(self) -> int:
        return sum(len(chunk) for chunk in self.chunks)

    async def start(self) -> None:
        assert self._server is None, "already running"
        self._release.clear()
        server = _Server("127.0.0.1", self.port)
        await server.start(lambda reader, writer: _Handler(self, reader, writer))
        self._server = server
        self.port = server.bound_port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._release.set()  # a stalled handler would never see the end otherwise
            await server.stop_and_wait()

    def unstall(self) -> None:
        """Read again: handlers that stalled close their connections, new ones serve."""
        self.stall = False
        self._release.set()
        self._release = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def info(self) -> Info:
        models = [
            WakeModel(
                name=name,
                attribution=_ATTRIBUTION,
                installed=True,
                description=phrase,
                version="1",
                languages=list(languages),
                phrase=phrase,
            )
            for name, phrase, languages in self.models
        ]
        program = WakeProgram(
            name="fake-wake",
            attribution=_ATTRIBUTION,
            installed=True,
            description="fake wake-word service",
            version="1",
            models=models,
        )
        return Info(wake=[program])


class _Handler(AsyncEventHandler):
    def __init__(
        self, service: FakeWakeService, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        super().__init__(reader, writer)
        self.service = service
        self.detected = False  # in the current stream
        service.connections += 1

    async def run(self) -> None:
        with contextlib.suppress(ConnectionError):  # a client that reset the connection
            await super().run()

    async def handle_event(self, event: Event) -> bool:
        service = self.service
        service.events.append(event.type)
        if service.hang_up:
            return False
        if Describe.is_type(event.type):
            await self.write_event(service.info().event())
        elif Detect.is_type(event.type):
            service.detect_names.append(Detect.from_event(event).names)
        elif AudioStart.is_type(event.type):
            self.detected = False
        elif AudioChunk.is_type(event.type):
            if service.stall:
                service.stalled.set()
                await service.released()
                return False
            chunk = AudioChunk.from_event(event)
            service.chunks.append(chunk.audio)
            service.timestamps.append(chunk.timestamp)
            if chunk.audio.startswith(MARKER):
                self.detected = True
                service.detections.append(service.detection_name)
                detection = Detection(name=service.detection_name, timestamp=chunk.timestamp)
                await self.write_event(detection.event())
        elif AudioStop.is_type(event.type) and not self.detected:
            await self.write_event(NotDetected().event())
        return True
