"""Clients vanishing mid-request, through the daemon: a speech client mid-ASR and mid-TTS
(on every cloud), and HA mid-pipeline and mid-answer at the satellite.

A vanished client must free what it held (the provider's connection closes), must not
fill the log with errors, and the next client must be served. A synthesis whose client has
vanished stops at the provider: the fakes, speaking in paced steps, count what they still
sent after the client left.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import Event, async_read_event, async_write_event
from wyoming.info import Describe
from wyoming.satellite import RunSatellite
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart

from tests.audio.speech import silence, speech_pcm, write_wav
from tests.e2e.test_satellite import (
    collect_run,
    file_mic,
    file_speaker,
    satellite_config,
)
from tests.faults.clouds import CLOUDS, PIECES, SPEECH, Cloud, check_answer
from tests.faults.common import check_log, running_daemon
from tests.providers.common import wait_for

SETTLE_S = 5.0
# A long answer, about 10 s of audio from every fake, spoken at twice real time.
LONG_ANSWER = "The kitchen light is on and the living room light is off, " * 4 + "and that is all."
PACE = 0.5
# Azure TTS keeps a synthesizer that is not speaking (between two sentences of a stream)
# for the next request, connection and all.
KEPT = {("azure", "tts")}


class RawClient:
    """A client on plain asyncio streams, so that it can vanish as a lost peer does: a TCP
    reset, no goodbye."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, *events: Event) -> None:
        for event in events:
            await async_write_event(event, self.writer)

    async def until(self, types: set[str], timeout: float = 10.0) -> Event:
        """Reads up to the first event of one of ``types``; anything else but an error is
        skipped."""
        async with asyncio.timeout(timeout):
            while True:
                event = await async_read_event(self.reader)
                assert event is not None, "the daemon closed the connection"
                assert event.type != "error", event
                if event.type in types:
                    return event

    async def read_event(self) -> Event | None:
        return await async_read_event(self.reader)

    def vanish(self) -> None:
        self.writer.transport.abort()


async def settled_connections(cloud: Cloud) -> int:
    """The fake's open connections once they stop changing (warm ones being replaced)."""
    deadline = time.monotonic() + SETTLE_S
    count = cloud.fake.open_connections
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        if cloud.fake.open_connections == count:
            break
        count = cloud.fake.open_connections
    return count


async def vanish_mid_request(cloud: Cloud, kind: str) -> frozenset:
    """Starts a request, waits until the provider is answering it, and vanishes; returns
    the fake's connections open at that moment."""
    client = await RawClient.connect(cloud.daemon.port)
    if kind == "asr":
        await client.send(Describe().event())  # a client that takes live transcripts
        await client.until({"info"})
        fmt = {"rate": 16000, "width": 2, "channels": 1}
        await client.send(Transcribe(language=cloud.language).event(), AudioStart(**fmt).event())

        async def speak() -> None:  # a live stream: 100 ms of audio every 100 ms
            for number in range(50):
                start = number * 3200 % len(SPEECH)
                await client.send(AudioChunk(**fmt, audio=SPEECH[start : start + 3200]).event())
                await asyncio.sleep(0.1)

        speaking = asyncio.ensure_future(speak())
        try:  # the provider hears it (a partial transcript); no audio-stop comes
            await client.until({"transcript-start", "transcript-chunk"})
        finally:
            speaking.cancel()
            await asyncio.gather(speaking, return_exceptions=True)
    else:
        await client.send(SynthesizeStart().event())
        await client.send(*(SynthesizeChunk(text=piece).event() for piece in PIECES[:2]))
        await client.until({"audio-chunk"})  # audio streams; the text is not finished
    serving = cloud.fake.live_connections
    client.vanish()
    return serving


@pytest.mark.parametrize("kind", ["asr", "tts"])
@pytest.mark.parametrize("name", list(CLOUDS))
async def test_speech_client_vanishing_mid_request_frees_the_provider_connection(
    request, name: str, kind: str
):
    cloud: Cloud = request.getfixturevalue(name)
    await check_answer(cloud, kind)  # warm connections, if any, are in use and replaced
    idle = await settled_connections(cloud)
    log_mark = len(cloud.daemon.logs())
    serving = await vanish_mid_request(cloud, kind)
    if (name, kind) not in KEPT:  # the connection that served the request closes
        assert await wait_for(lambda: not serving <= cloud.fake.live_connections, SETTLE_S)
    assert await wait_for(lambda: cloud.fake.open_connections <= idle, SETTLE_S)
    await check_answer(cloud, kind)
    new_log = cloud.daemon.logs()[log_mark:]
    check_log(new_log)
    assert " ERROR " not in new_log and new_log.count(" WARNING ") <= 1, new_log


@pytest.mark.parametrize("name", list(CLOUDS))
async def test_a_speech_client_vanishing_mid_answer_stops_the_provider_speaking(request, name: str):
    cloud: Cloud = request.getfixturevalue(name)
    await check_answer(cloud, "tts")
    log_mark = len(cloud.daemon.logs())
    cloud.fake.pace = PACE
    try:
        client = await RawClient.connect(cloud.daemon.port)
        await client.send(Synthesize(text=LONG_ANSWER).event())
        await client.until({"audio-chunk"})
        production = cloud.fake.productions[-1]
        client.vanish()
        left = time.monotonic()
        assert await wait_for(lambda: production.stopped_at is not None, 2.0), production
        assert production.stopped_at is not None and production.stopped_at - left < 1.0
        await asyncio.sleep(1.0)  # a provider still speaking would send 2 s of audio meanwhile
    finally:
        cloud.fake.pace = 0.0
    whole = 0.04 * len(LONG_ANSWER)
    rate = 2 * (22050 if name == "dashscope" else 24000)
    assert production.sent_after_stop / rate < 0.25
    assert production.sent_after(left) / rate < 0.5
    assert production.sent / rate < whole / 4 and not production.finished
    await check_answer(cloud, "tts")
    new_log = cloud.daemon.logs()[log_mark:]
    check_log(new_log)
    assert " ERROR " not in new_log and new_log.count(" WARNING ") <= 1, new_log


async def run_satellite(port: int) -> RawClient:
    """HA connecting to the satellite."""
    ha = await RawClient.connect(port)
    await ha.send(RunSatellite().event())
    return ha


async def test_ha_vanishing_mid_run_and_mid_answer_then_reconnecting(tmp_path: Path):
    commands = [speech_pcm(text) for text in ("what time is it", "turn on the radio", "stop")]
    gaps = [silence(3.0), silence(4.0), silence(5.0)]
    mic_pcm = b"".join(gap + command for gap, command in zip(gaps, commands, strict=True))
    mic_pcm += silence(20)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    sink = tmp_path / "speaker.raw"
    config = satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(sink), 500)
    with running_daemon(tmp_path, config) as daemon:
        ha = await run_satellite(daemon.port)  # HA goes away while the first command streams
        await ha.until({"run-pipeline"}, timeout=15)
        for _ in range(3):
            await ha.until({"audio-chunk"})
        ha.vanish()
        await asyncio.sleep(len(commands[0]) / 32000 + 1.0)  # the first command is over

        ha = await run_satellite(daemon.port)  # back: it goes away while the answer streams
        _, audio = await collect_run(ha, timeout=15)  # type: ignore[arg-type]
        assert mic_pcm.find(audio) <= mic_pcm.find(commands[1]) < mic_pcm.find(audio) + len(audio)
        answer = bytes((i * 37) % 256 for i in range(3 * 2048))
        await ha.send(AudioStart(rate=22050, width=2, channels=1, timestamp=0).event())
        for start in range(0, len(answer), 2048):
            piece = answer[start : start + 2048]
            await ha.send(AudioChunk(rate=22050, width=2, channels=1, audio=piece).event())
        await asyncio.sleep(0.2)  # the chunks are in before the connection goes
        ha.vanish()

        ha = await run_satellite(daemon.port)  # back again: the mic listens, not deafened
        _, audio = await collect_run(ha, timeout=15)  # type: ignore[arg-type]
        assert mic_pcm.find(audio) <= mic_pcm.find(commands[2]) < mic_pcm.find(audio) + len(audio)
        assert sink.read_bytes() == answer  # what arrived of the answer was played
        ha.vanish()
    logs = daemon.logs()  # stopped: everything is in
    assert logs.count("HA disconnected") == 3
    assert " ERROR " not in logs and logs.count("cannot reach HA") <= 1, logs
