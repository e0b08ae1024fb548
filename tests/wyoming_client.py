"""A Wyoming client that plays Home Assistant's side in tests."""

from __future__ import annotations

import asyncio

from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event


async def connect(port: int) -> AsyncTcpClient:
    client = AsyncTcpClient("127.0.0.1", port)
    await client.connect()
    return client


async def read(client: AsyncTcpClient, timeout: float = 10.0) -> Event:
    event = await asyncio.wait_for(client.read_event(), timeout=timeout)
    assert event is not None, "the server closed the connection"
    return event


async def read_until(client: AsyncTcpClient, last_type: str, timeout: float = 10.0) -> list[Event]:
    """Events up to and including the first of ``last_type`` (or an ``error``)."""
    events = []
    while True:
        events.append(await read(client, timeout))
        if events[-1].type in (last_type, "error"):
            return events


async def send_utterance(
    client: AsyncTcpClient,
    audio: bytes,
    chunk_bytes: int,
    language: str | None = None,
    pause_s: float = 0.0,
) -> None:
    """HA's STT flow: transcribe, audio-start, chunks of ``chunk_bytes`` (``pause_s`` apart,
    as a live stream arrives), audio-stop."""
    await client.write_event(Transcribe(language=language).event())
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    for start in range(0, len(audio), chunk_bytes):
        piece = audio[start : start + chunk_bytes]
        await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=piece).event())
        await asyncio.sleep(pause_s)
    await client.write_event(AudioStop().event())


def audio_of(events: list[Event]) -> bytes:
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")
