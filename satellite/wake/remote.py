"""A Wyoming wake-word service (wyoming-openwakeword, ...) over TCP: the satellite streams
its audio there and the service says when it heard a wake word.

One background task owns the connection: it connects, learns the service's models, starts
a stream (``detect`` then ``audio-start``), reads the service's events until the connection
breaks, and reconnects with a growing delay. ``process()`` only sends audio while a stream
is up, so a service that is down or stalled costs the satellite dropped audio, never a wait.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from urllib.parse import urlparse

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.wake import Detect, Detection

from ..audio.pcm import SPEECH_BYTES_PER_MS, SPEECH_FORMAT
from ..config import WakeConfig
from .catalogue import phrase_from_name
from .engine import WakeModelInfo, WakeResult

_LOGGER = logging.getLogger(__name__)

_FMT = SPEECH_FORMAT


class _Connection(AsyncTcpClient):
    def abort(self) -> None:
        """Drop the socket at once, unsent data included (a stalled service would never take
        it, and a graceful close waits for that)."""
        writer = self._writer
        self._reader = self._writer = None
        if writer is not None:
            writer.transport.abort()

    async def shut(self, timeout: float) -> None:
        """Close gracefully (the service sees an end, not a reset), else abort."""
        writer = self._writer
        if writer is None:
            return
        self._reader = self._writer = None
        writer.close()
        try:
            async with asyncio.timeout(timeout):
                await writer.wait_closed()
        except Exception:  # unflushed in time, or the socket had failed anyway
            writer.transport.abort()


class RemoteEngine:
    program = "remote"

    # Backoff between failed attempts: first, doubling up to max.
    retry_first_s = 1.0
    retry_max_s = 30.0
    connect_timeout_s = 5.0
    info_timeout_s = 2.0
    write_timeout_s = 3.0
    close_timeout_s = 1.0

    def __init__(self, config: WakeConfig) -> None:
        parsed = urlparse(config.uri)
        self._uri = config.uri
        self._host = parsed.hostname or ""
        self._port = parsed.port or 0
        self._names = tuple(config.models)
        self._models = tuple(WakeModelInfo(name, phrase_from_name(name)) for name in self._names)
        self._detections: deque[str] = deque(maxlen=16)
        self._client: _Connection | None = None  # set while a stream is up
        self._lost_reason: str | None = None  # why process() dropped the connection
        self._restart = False  # start a new stream before the next audio
        self._sent_bytes = 0  # audio of the current stream
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def models(self) -> tuple[WakeModelInfo, ...]:
        return self._models

    @property
    def connected(self) -> bool:
        """Whether a stream to the service is up (audio is reaching it)."""
        return self._client is not None

    async def process(self, pcm: bytes) -> WakeResult:
        if self._closed:
            return WakeResult()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"wake service {self._uri}")
        client = self._client
        if client is not None and pcm:
            try:
                if self._restart:
                    await self._start_stream(client, stop_first=True)
                chunk = AudioChunk(
                    rate=_FMT.rate,
                    width=_FMT.width,
                    channels=_FMT.channels,
                    audio=pcm,
                    timestamp=self._sent_bytes // SPEECH_BYTES_PER_MS,
                )
                await self._send(client, chunk.event())
                self._sent_bytes += len(pcm)
            except Exception as exc:  # a broken or stalled socket: the reconnect loop's job
                self._drop(client, _reason(exc))
        return WakeResult(detected=self._take_detections())

    def reset(self) -> None:
        self._detections.clear()
        # The service forgets the audio too: the next audio opens a new stream.
        if self._client is not None:
            self._restart = True

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # unlike awaiting it, keeps a cancel of close() itself
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it at exit
        self._client = None  # the task closed it
        self._detections.clear()

    # --- the connection -----------------------------------------------------------------

    async def _run(self) -> None:
        delay = self.retry_first_s
        while True:
            client = _Connection(self._host, self._port, connect_timeout=self.connect_timeout_s)
            try:
                try:
                    await self._open(client)
                except Exception as exc:
                    _LOGGER.warning(
                        "wake service %s: cannot connect (%s); retrying in %g s",
                        self._uri,
                        _reason(exc),
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.retry_max_s)
                    continue
                started = asyncio.get_running_loop().time()
                reason = await self._read(client)
            finally:
                # Cancelled (close()) or done with this connection: never leave it open.
                if self._client is client:
                    self._client = None
                await client.shut(self.close_timeout_s)
            reason = self._lost_reason or reason
            self._lost_reason = None
            if asyncio.get_running_loop().time() - started >= self.retry_max_s:
                # A connection that held a while: start the backoff over, reconnect at once.
                delay = self.retry_first_s
                _LOGGER.warning(
                    "wake service %s: connection lost (%s); reconnecting", self._uri, reason
                )
                continue
            # It broke soon after it opened: back off as after a failed attempt.
            _LOGGER.warning(
                "wake service %s: connection lost (%s); reconnecting in %g s",
                self._uri,
                reason,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max_s)

    async def _open(self, client: _Connection) -> None:
        """Connect, learn the models, start the stream; raises on any failure."""
        await client.connect()
        await self._send(client, Describe().event())
        info = await self._read_info(client)
        if info is not None:
            self._learn(info)
        self._detections.clear()
        await self._start_stream(client, stop_first=False)
        self._client = client
        _LOGGER.info(
            "wake service %s connected: models %s",
            self._uri,
            ", ".join(f'{m.name} ("{m.phrase}")' for m in self._models) or "none",
        )

    async def _read_info(self, client: _Connection) -> Info | None:
        """The service's ``info`` (other events skipped), or None if none came in time."""
        try:
            async with asyncio.timeout(self.info_timeout_s):
                while True:
                    event = await client.read_event()
                    if event is None:
                        raise ConnectionError("closed by the service")
                    if Info.is_type(event.type):
                        return Info.from_event(event)
        except TimeoutError:
            _LOGGER.debug("wake service %s: no info within %g s", self._uri, self.info_timeout_s)
            return None

    async def _start_stream(self, client: _Connection, *, stop_first: bool) -> None:
        """A new detection stream: wyoming-openwakeword picks a stream's models from the
        ``detect`` before its ``audio-start``, and restarts its features at ``audio-start``."""
        self._restart = False
        if stop_first:
            await self._send(client, AudioStop().event())
        await self._send(client, Detect(names=list(self._names) or None).event())
        start = AudioStart(rate=_FMT.rate, width=_FMT.width, channels=_FMT.channels)
        await self._send(client, start.event())
        self._sent_bytes = 0

    async def _read(self, client: _Connection) -> str:
        """Queue the service's detections until the connection breaks; returns why."""
        while True:
            try:
                event = await client.read_event()
            except Exception as exc:
                return _reason(exc)
            if event is None:
                return "closed by the service"
            if Detection.is_type(event.type):
                name = Detection.from_event(event).name
                if name:
                    self._detections.append(self._configured_name(name))
                    self._restart = True  # the next audio opens a fresh stream

    async def _send(self, client: _Connection, event: Event) -> None:
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await client.write_event(event)
        except TimeoutError:
            raise TimeoutError(f"write stalled for {self.write_timeout_s:g} s") from None

    def _drop(self, client: _Connection, reason: str) -> None:
        """End a broken connection from process(); the reading task sees it and reconnects."""
        if self._client is client:
            self._client = None
            self._lost_reason = reason
            client.abort()

    # --- names ----------------------------------------------------------------------

    def _take_detections(self) -> list[str]:
        detected: list[str] = []
        while self._detections:
            name = self._detections.popleft()
            if name not in detected:
                detected.append(name)
        return detected

    def _configured_name(self, name: str) -> str:
        """The configured name a service's model name stands for (``okay_nabu_v0.1`` for
        ``okay_nabu``: the longest configured prefix), else the service's name."""
        if name in self._names:
            return name
        prefixes = [n for n in self._names if name.startswith(n)]
        return max(prefixes, key=len) if prefixes else name

    def _learn(self, info: Info) -> None:
        models: dict[str, WakeModelInfo] = {}
        for program in info.wake:
            for model in program.models:
                name = self._configured_name(model.name)
                if self._names and name not in self._names:
                    continue
                if name not in models:
                    phrase = model.phrase or phrase_from_name(name)
                    models[name] = WakeModelInfo(name, phrase, tuple(model.languages) or ("en",))
        missing = [name for name in self._names if name not in models]
        if missing:
            offered = ", ".join(m.name for p in info.wake for m in p.models) or "none"
            _LOGGER.warning(
                "wake service %s does not offer %s (it offers: %s)",
                self._uri,
                ", ".join(missing),
                offered,
            )
        self._models = tuple(models.values())


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionError) and exc.errno:  # "Connection refused", not the call
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    return str(exc) or type(exc).__name__
