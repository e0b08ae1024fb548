"""Satellite hardware faults through the daemon, with HA connected: the PyAudio mic going
silent mid-run and coming back, and a speaker that fails.

The mic is real PyAudio -> PortAudio -> ALSA reading a file-backed device (tests/audio/alsa.py)
whose source is a FIFO: the test writes the "room" into it in real time, and stops writing
(the device hangs, as an unplugged USB mic can) for longer than the daemon waits for audio.
A command mic that exits is covered by tests/e2e/test_satellite.py.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.ping import Ping

from satellite.assist.satellite import MIC_GAP_S
from tests.audio.alsa import use_file_alsa
from tests.audio.speech import silence, speech_pcm, write_wav
from tests.e2e.test_satellite import (
    collect_run,
    file_mic,
    file_speaker,
    satellite_config,
    send_tts,
    start_ha,
    tone,
)
from tests.faults.common import MARGIN_S, running_daemon

AWAY_S = 10.0  # how long the mic delivers nothing
PING_EVERY_S = 1.0
PIECE = 3200  # 100 ms of 16 kHz s16le


@dataclass
class Timeline:
    """What HA saw while the mic went away mid-run and came back (seconds since the
    speech began to be written)."""

    away_at: float = 0.0  # the mic stopped delivering
    back_at: float = 0.0
    events: list[tuple[float, Event]] = field(default_factory=list)
    pong_delays: list[float] = field(default_factory=list)
    logs: str = ""

    def times(self, event_type: str) -> list[float]:
        return [at for at, event in self.events if event.type == event_type]


class RoomWriter(threading.Thread):
    """Writes the room's audio into the FIFO in real time; ``None`` in the plan is a silence
    of AWAY_S in which nothing is written (the FIFO stays open: the device hangs)."""

    def __init__(self, fifo: Path, plan: list[bytes | None], timeline: Timeline) -> None:
        super().__init__(name="room-writer", daemon=True)
        self.fifo, self.plan, self.timeline = fifo, plan, timeline
        self.started_at = 0.0
        self.stopped = threading.Event()

    def run(self) -> None:
        fd = os.open(self.fifo, os.O_RDWR)  # read-write: never blocks on opening
        try:
            self.started_at = time.monotonic()
            for part in self.plan:
                if part is None:
                    self.timeline.away_at = time.monotonic() - self.started_at
                    if self.stopped.wait(AWAY_S):
                        return
                    self.timeline.back_at = time.monotonic() - self.started_at
                    continue
                for start in range(0, len(part), PIECE):
                    os.write(fd, part[start : start + PIECE])
                    if self.stopped.wait(0.1):
                        return
        finally:
            os.close(fd)


async def follow_ha(
    client: AsyncTcpClient, writer: RoomWriter, timeline: Timeline, runs: int
) -> None:
    """Reads as HA until ``runs`` runs have ended, pinging every second; bounded in time."""
    pinged: dict[str, float] = {}

    async def ping() -> None:
        for number in range(60):
            pinged[str(number)] = time.monotonic()
            await client.write_event(Ping(text=str(number)).event())
            await asyncio.sleep(PING_EVERY_S)

    pinger = asyncio.ensure_future(ping())
    try:
        async with asyncio.timeout(AWAY_S + 25):
            while len(timeline.times("audio-stop")) < runs:
                event = await client.read_event()
                assert event is not None, "the satellite closed HA's connection"
                now = time.monotonic()
                if event.type == "pong":
                    timeline.pong_delays.append(now - pinged[event.data["text"]])
                else:
                    timeline.events.append((now - writer.started_at, event))
    finally:
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)


@pytest.fixture(scope="module")
def mic_away_mid_run(tmp_path_factory) -> Iterator[Timeline]:
    """HA connected; a command begins, the mic goes away in the middle of it for AWAY_S,
    comes back, and a second command follows."""
    workdir = tmp_path_factory.mktemp("mic-away")
    first = speech_pcm("turn on the kitchen light and the lamp in the hallway please")
    second = speech_pcm("open the blinds")
    plan = [silence(2.0), first[: len(first) // 2], None, silence(1.5), second, silence(4.0)]
    timeline = Timeline()
    with pytest.MonkeyPatch.context() as monkeypatch:
        alsa = use_file_alsa(workdir, monkeypatch, source=None)
        os.mkfifo(alsa.source)
        config = satellite_config("{backend: pyaudio}", file_speaker(workdir / "spk.raw"), 500)
        with running_daemon(workdir, config) as daemon:
            writer = RoomWriter(alsa.source, plan, timeline)

            async def scenario() -> None:
                client = await start_ha(daemon)
                writer.start()
                try:
                    await follow_ha(client, writer, timeline, runs=2)
                finally:
                    await client.disconnect()

            try:
                asyncio.run(scenario())
            finally:
                writer.stopped.set()
                writer.join(5)
            timeline.logs = daemon.logs()
    yield timeline


def test_ha_stays_connected_while_the_mic_is_away_and_a_later_command_opens_a_run(
    mic_away_mid_run: Timeline,
):
    timeline = mic_away_mid_run
    runs, stops = timeline.times("run-pipeline"), timeline.times("audio-stop")
    assert len(runs) == 2 and len(stops) == 2, [e.type for _, e in timeline.events]
    assert runs[0] < timeline.away_at < stops[0], "the first run did not span the outage"
    assert runs[1] > timeline.back_at, "the second run opened before the mic came back"
    second_run_audio = [
        len(event.payload or b"")
        for at, event in timeline.events
        if event.type == "audio-chunk" and at > runs[1]
    ]
    assert sum(second_run_audio) >= 0.5 * 32000  # the second command was heard
    # HA drops a satellite that answers nothing for 5 s: every ping was answered in time.
    assert len(timeline.pong_delays) >= AWAY_S / PING_EVERY_S
    assert max(timeline.pong_delays) < 2.0
    # One outage, logged once (and the device call it abandoned), then read again.
    assert len(re.findall(r"microphone .* unavailable", timeline.logs)) == 1
    assert timeline.logs.count("microphone: reading") == 2


def test_a_run_ends_when_its_mic_goes_away(mic_away_mid_run: Timeline):
    timeline = mic_away_mid_run
    first_stop = timeline.times("audio-stop")[0]
    assert first_stop - timeline.away_at < MIC_GAP_S + MARGIN_S
    assert "audio for the pipeline run ended: no audio from the microphone" in timeline.logs


@pytest.mark.parametrize(
    "command", ["cat > /dev/null; exit 3", "no-such-speaker-program"], ids=["exits-3", "missing"]
)
async def test_failing_speaker_still_sends_played_and_the_next_command_opens_a_run(
    tmp_path: Path, command: str
):
    first = speech_pcm("what time is it", 0.0, 0.0)
    second = speech_pcm("turn off the radio", 0.0, 0.0)
    mic_pcm = silence(3.0) + first + silence(3.0) + second + silence(20)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    speaker = f"{{backend: command, command: '{command}'}}"
    config = satellite_config(file_mic(tmp_path / "mic.wav"), speaker, 500)
    with running_daemon(tmp_path, config) as daemon:
        client = await start_ha(daemon)
        await collect_run(client, timeout=15)
        answer_s = 1.5
        sent_at = time.monotonic()
        await send_tts(client, tone(answer_s))
        played = await asyncio.wait_for(client.read_event(), answer_s + MARGIN_S)
        assert played is not None and played.type == "played", played
        assert time.monotonic() - sent_at < answer_s + MARGIN_S
        _, audio = await collect_run(client, timeout=15)  # the mic listens again
        offset = mic_pcm.find(audio)
        onset = mic_pcm.find(second)
        assert offset >= 0 and offset <= onset < offset + len(audio), "not the second command"
        await client.disconnect()
        assert "speaker failed" in daemon.logs()
