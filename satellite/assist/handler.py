"""One HA connection to the satellite: HA's events in, the satellite's events out."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe
from wyoming.ping import Ping, Pong
from wyoming.satellite import PauseSatellite, RunSatellite

from ..audio.pcm import AudioFormat
from ..buffers import BufferFull
from ..wyoming_handler import GuardedHandler, audio_format_of
from .playback import Sound

if TYPE_CHECKING:
    from .satellite import Satellite

_LOGGER = logging.getLogger(__name__)


class SatelliteHandler(GuardedHandler):
    """One HA connection to the satellite."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        satellite: Satellite,
    ) -> None:
        super().__init__(reader, writer)
        self.satellite = satellite
        self.running = False  # run-satellite received, not paused
        self._attached = False
        self._sound: Sound | None = None
        self._write_lock = asyncio.Lock()

    async def send(self, event: Event) -> None:
        """Write to HA; a broken connection only ends this connection."""
        try:
            async with self._write_lock:
                await self.write_event(event)
        except ConnectionError as exc:
            _LOGGER.info("cannot reach HA (%s): %s", self.peer, exc)
            self.running = False

    async def dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.send(self.satellite.info)
        elif Ping.is_type(event.type):
            await self.send(Pong(text=Ping.from_event(event).text).event())
        elif RunSatellite.is_type(event.type):
            # Only the connection that runs the satellite takes it over: HA also opens
            # short connections just to read its info.
            if not self._attached:
                self._attached = True
                await self.satellite.attach(self)
            if not self.running:
                _LOGGER.info("HA (%s) started the satellite", self.peer)
            self.running = True
            await self.satellite.started()
        elif PauseSatellite.is_type(event.type):
            _LOGGER.info("HA (%s) paused the satellite", self.peer)
            self.running = False
            await self.satellite.stopped(self, "paused")
        elif AudioStart.is_type(event.type):
            self._end_sound()
            fmt = AudioFormat(*audio_format_of(event.data))
            self._sound = self.satellite.start_sound(self, fmt)
        elif AudioChunk.is_type(event.type):
            if self._sound is None:  # audio without audio-start: take its format
                fmt = AudioFormat(*audio_format_of(event.data))
                self._sound = self.satellite.start_sound(self, fmt)
            if event.payload:
                self._queue_sound(self._sound, event.payload)
        elif AudioStop.is_type(event.type):
            self._end_sound()
        else:
            await self.satellite.on_ha_event(self, event)

    def _queue_sound(self, sound: Sound, pcm: bytes) -> None:
        try:
            sound.audio.put(pcm)
        except BufferFull as exc:  # HA sends faster than the speaker plays, without bound
            _LOGGER.warning(
                "audio from HA (%s): %s for the speaker; the rest of this sound is dropped",
                self.peer,
                exc,
            )

    def _end_sound(self) -> None:
        if self._sound is not None:
            self._sound.audio.end()
            self._sound = None

    async def disconnect(self) -> None:
        self.running = False
        self._end_sound()  # what arrived still plays; ``played`` is not sent to a closed socket
        await self.satellite.detach(self)
