"""The satellite's handling of HA events, with a scripted mic and real speaker backends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.satellite import PauseSatellite, RunSatellite

from satellite.config import SoundsConfig, SpeakerConfig
from tests.audio.speech import silence, speech_pcm, write_wav
from tests.unit.satellite_harness import CHUNK, run_satellite
from tests.wyoming_client import read

UTTERANCE = silence(0.5) + speech_pcm("turn off the lights") + silence(1.5)


async def next_run(client: AsyncTcpClient) -> Event:
    event = await read(client)
    assert event.type == "run-pipeline", event
    while (event := await read(client)).type == "audio-chunk":
        pass
    assert event.type == "audio-stop", event
    return event


async def play(client: AsyncTcpClient, pcm: bytes, stop: bool = True) -> None:
    await client.write_event(AudioStart(rate=16000, width=2, channels=1, timestamp=0).event())
    await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=pcm).event())
    if stop:
        await client.write_event(AudioStop().event())


async def test_failed_playback_still_sends_played(running):
    _, client = await running(speaker=SpeakerConfig(backend="command", command="exit 1"))
    await play(client, bytes(3200))
    assert (await read(client)).type == "played"


async def test_without_a_speaker_runs_end_at_handle_and_audio_is_acknowledged(running):
    served, client = await running(speaker=None)
    served.mic.say(UTTERANCE)
    run = await read(client)
    assert run.data["end_stage"] == "handle"
    await play(client, bytes(3200))
    while (event := await read(client)).type != "played":
        assert event.type in ("audio-chunk", "audio-stop")


async def test_timer_sound_and_event_hook(running, tmp_path: Path):
    sound = silence(0.2)[:-2] + b"\x01\x02"
    write_wav(tmp_path / "timer.wav", sound)
    sink = tmp_path / "speaker.raw"
    hook_out = tmp_path / "hook.json"
    _, client = await running(
        speaker=SpeakerConfig(backend="file", file=sink),
        sounds=SoundsConfig(timer_finished=tmp_path / "timer.wav"),
        events={"timer-finished": f"cat > {hook_out}"},
    )
    await client.write_event(Event(type="timer-finished", data={"id": "pasta"}))

    def hook_wrote() -> dict | None:
        """What the hook has written once it is complete: the file exists before that."""
        try:
            return json.loads(hook_out.read_text())
        except (FileNotFoundError, ValueError):
            return None

    for _ in range(400):  # bounded at 20 s: a slow machine takes longer, the result is the same
        if sink.exists() and sink.stat().st_size == len(sound) and hook_wrote() is not None:
            break
        await asyncio.sleep(0.05)
    assert sink.read_bytes() == sound
    assert hook_wrote() == {"id": "pasta"}


async def test_ha_dropping_mid_answer_neither_hangs_nor_deafens(running, tmp_path: Path):
    sink = tmp_path / "speaker.raw"
    served, client = await running(speaker=SpeakerConfig(backend="file", file=sink))
    await play(client, bytes(6400), stop=False)  # no audio-stop: HA went away
    await client.disconnect()
    for _ in range(100):  # what arrived is played, then the mic listens again
        if sink.exists() and sink.stat().st_size == 6400 and not served.satellite.playback.deaf:
            break
        await asyncio.sleep(0.05)
    assert sink.read_bytes() == bytes(6400)

    client = await run_satellite(served.port)
    served.mic.say(UTTERANCE)
    await next_run(client)


async def test_paused_satellite_opens_no_run_until_run_satellite(running):
    served, client = await running(speaker=None)
    await client.write_event(PauseSatellite().event())
    await asyncio.sleep(0.1)
    served.mic.say(UTTERANCE)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.read_event(), 1.5)
    await client.write_event(RunSatellite().event())
    await asyncio.sleep(0.1)
    served.mic.say(UTTERANCE)
    await next_run(client)


async def test_after_the_wake_word_ha_decides_when_the_command_ends(running):
    served, client = await running(speaker=None)
    served.mic.say(silence(0.5) + speech_pcm("okay nabu"))
    assert (await read(client)).type == "run-pipeline"
    await client.write_event(Event(type="detection", data={"name": "okay_nabu"}))
    await asyncio.sleep(0.1)
    # A pause longer than the hangover, then the command: all of it still reaches HA.
    pause, command = silence(2.0), speech_pcm("turn off the lights")
    served.mic.say(pause + command)
    streamed = 0
    while streamed < len(pause) + len(command) - 2 * CHUNK:
        event = await read(client)
        assert event.type == "audio-chunk", event
        streamed += len(event.payload or b"")
    await client.write_event(Event(type="transcript", data={"text": "turn off the lights"}))
    while (event := await read(client)).type == "audio-chunk":
        pass
    assert event.type == "audio-stop"


async def test_status_tells_whether_ha_is_connected_and_counts_runs(running):
    served, client = await running(speaker=None)
    assert served.satellite.status() == "HA connected, pipeline runs: 0"
    served.mic.say(UTTERANCE)
    await next_run(client)
    served.mic.say(UTTERANCE)
    await next_run(client)
    assert served.satellite.status() == "HA connected, pipeline runs: 2"
    await client.disconnect()
    for _ in range(100):
        if served.satellite.status().startswith("waiting for HA"):
            break
        await asyncio.sleep(0.02)
    assert served.satellite.status() == "waiting for HA, pipeline runs: 2"
