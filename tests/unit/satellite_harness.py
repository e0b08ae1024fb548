"""The satellite object with a scripted mic and real speaker backends, served on
127.0.0.1 to a test client that plays Home Assistant."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.ping import Ping
from wyoming.satellite import RunSatellite
from wyoming.server import AsyncServer

from satellite.assist.satellite import Satellite
from satellite.audio.speaker import Speaker
from satellite.config import SatelliteConfig, WakeConfig
from tests.wyoming_client import connect, read

CHUNK = 960  # 30 ms


class ScriptedMic:
    """Delivers exactly the audio a test feeds it: as fast as the satellite reads, or in
    real time (``paced``), as a sound card does."""

    description = "scripted mic"

    def __init__(self, paced: bool = False) -> None:
        self.audio: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.paced = paced

    def say(self, pcm: bytes) -> None:
        for start in range(0, len(pcm), CHUNK):
            self.audio.put_nowait(pcm[start : start + CHUNK])

    async def heard_all(self, timeout: float = 30.0) -> None:
        """Returns once the satellite has taken everything said so far."""
        async with asyncio.timeout(timeout):
            while not self.audio.empty():
                await asyncio.sleep(0.02)

    async def chunks(self) -> AsyncIterator[bytes]:
        while (chunk := await self.audio.get()) is not None:
            if self.paced:
                await asyncio.sleep(len(chunk) / 32000)
            yield chunk

    async def close(self) -> None:
        self.audio.put_nowait(None)


class Running:
    """A satellite served on a free port; ``stop()`` ends what it started."""

    def __init__(
        self, satellite: Satellite, mic: ScriptedMic, server: AsyncServer, port: int
    ) -> None:
        self.satellite = satellite
        self.mic = mic
        self.server = server
        self.port = port
        self.mic_task = asyncio.ensure_future(satellite.run_mic())

    async def stop(self) -> None:
        await self.server.stop()
        await self.satellite.close()
        self.mic_task.cancel()
        await asyncio.gather(self.mic_task, return_exceptions=True)


async def start_satellite(config: SatelliteConfig, paced: bool = False) -> Running:
    mic = ScriptedMic(paced)
    speaker = Speaker(config.speaker) if config.speaker is not None else None
    satellite = Satellite(config, "Test", mic, speaker)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    await server.start(satellite.handler)
    return Running(satellite, mic, server, port)


async def run_satellite(port: int) -> AsyncTcpClient:
    """Connect as HA and start the satellite; returns once it has taken effect."""
    client = await connect(port)
    await client.write_event(RunSatellite().event())
    await client.write_event(Ping(text="ready?").event())
    assert (await read(client)).type == "pong"
    return client


@pytest.fixture
async def running():
    """``await running(paced=False, **SatelliteConfig settings)`` -> (Running, HA client);
    the wake engine is ``none`` unless ``wake`` is given."""
    started: list[Running] = []

    async def start(paced: bool = False, **settings: Any) -> tuple[Running, AsyncTcpClient]:
        settings.setdefault("wake", WakeConfig(engine="none"))
        config = SatelliteConfig(enabled=True, start_stage="asr", mute_tail_ms=100, **settings)
        served = await start_satellite(config, paced)
        started.append(served)
        return served, await run_satellite(served.port)

    yield start
    for served in started:
        await served.stop()
