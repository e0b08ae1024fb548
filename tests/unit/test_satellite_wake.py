"""The wake word heard on the device, timers that ring and announcements, through the
satellite with the real microWakeWord models and a test client playing HA."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.timer import TimerFinished, TimerStarted, TimerUpdated

from satellite.assist.state import State
from satellite.config import SoundsConfig, SpeakerConfig, WakeConfig
from tests.audio.speech import silence, speech_pcm, write_wav
from tests.audio.wake_fixtures import continuous_speech, wake_phrase
from tests.wyoming_client import read

MICRO = WakeConfig(engine="micro", models=("okay_nabu", "alexa"))


async def events_until_quiet(client: AsyncTcpClient, quiet_s: float = 1.0) -> list[Event]:
    """Every event HA receives until none comes for ``quiet_s`` (bounded: 200 events)."""
    events = []
    for _ in range(200):
        try:
            event = await asyncio.wait_for(client.read_event(), quiet_s)
        except TimeoutError:
            return events
        assert event is not None
        events.append(event)
    return events


async def pong(client: AsyncTcpClient, text: str) -> list[Event]:
    """Events that reach HA before the answer to a ping (the satellite took the audio)."""
    await client.write_event(Ping(text=text).event())
    events = []
    while (event := await read(client, 10)).type != "pong":
        events.append(event)
    return events


def streamed(events: list[Event]) -> bytes:
    return b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")


async def test_wake_word_opens_a_run_that_streams_only_the_command(running, tmp_path: Path):
    chime = write_wav(tmp_path / "awake.wav", speech_pcm("ding"))
    sink = tmp_path / "speaker.raw"
    wake = wake_phrase("okay nabu")
    command = speech_pcm("what time is it")
    mic_pcm = silence(1.0) + wake + silence(0.8) + command + silence(2.5)
    served, client = await running(
        paced=True,
        wake=MICRO,
        sounds=SoundsConfig(awake=chime),
        speaker=SpeakerConfig(backend="file", file=sink),
    )
    served.mic.say(mic_pcm)
    detection = await read(client, 15)
    assert detection.type == "detection" and detection.data["name"] == "okay_nabu"
    run = await read(client)
    assert run.type == "run-pipeline"
    assert (run.data["start_stage"], run.data["end_stage"]) == ("asr", "tts")
    events = []
    while (event := await read(client, 10)).type != "audio-stop":
        events.append(event)
    assert {e.type for e in events} == {"audio-chunk"}
    audio = streamed(events)
    offset = mic_pcm.find(audio)
    assert offset >= 0, "the streamed audio is not a contiguous slice of the mic audio"
    wake_end = len(silence(1.0)) + len(wake)
    command_start = wake_end + len(silence(0.8))
    assert offset >= wake_end, "the wake word (or the chime's time) reached HA"
    assert offset <= command_start, "the start of the command is missing"
    assert offset + len(audio) >= command_start + len(command), "the command was cut"
    assert sink.read_bytes() == speech_pcm("ding"), "the awake chime was not played"
    assert served.satellite.state is State.AWAITING_ANSWER


async def test_speech_without_the_wake_word_sends_nothing_to_ha(running):
    served, client = await running(wake=WakeConfig(engine="micro"))
    served.mic.say(continuous_speech(60))
    await served.mic.heard_all(60)
    assert await pong(client, "done?") == []
    assert served.satellite.runs == 0


async def test_two_wake_words_a_second_apart_open_one_run(running):
    served, client = await running(wake=MICRO)
    wake = wake_phrase("okay nabu")
    served.mic.say(silence(1.0) + wake + silence(1.0) + wake + silence(3.0))
    await served.mic.heard_all()
    events = [*await pong(client, "done?"), *await events_until_quiet(client)]
    kinds = [e.type for e in events if e.type != "audio-chunk"]
    assert kinds == ["detection", "run-pipeline", "audio-stop"]


async def test_info_lists_the_wake_models_and_their_phrases(running):
    _, client = await running(wake=MICRO)
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client))
    assert info.satellite is not None
    (program,) = info.wake
    assert program.name == "micro" and program.installed
    assert {(m.name, m.phrase) for m in program.models} == {
        ("okay_nabu", "Okay Nabu"),
        ("alexa", "Alexa"),
    }


async def test_a_ringing_timer_is_stopped_by_the_wake_word(running, tmp_path: Path):
    sink = tmp_path / "speaker.raw"
    served, client = await running(
        paced=True, wake=MICRO, speaker=SpeakerConfig(backend="file", file=sink)
    )
    await client.write_event(TimerStarted(id="t1", total_seconds=60, name="pasta").event())
    await client.write_event(TimerFinished(id="t1").event())
    await pong(client, "rings?")
    for _ in range(100):  # the built-in ring reaches the speaker, again and again
        if sink.exists() and sink.stat().st_size > 2 * 32000:
            break
        await asyncio.sleep(0.05)
    assert served.satellite.state is State.RINGING
    assert "a timer is ringing" in served.satellite.status()

    served.mic.say(silence(0.5) + wake_phrase("alexa") + silence(1.5))
    await served.mic.heard_all()
    await asyncio.sleep(0.5)
    assert served.satellite.state is State.IDLE
    rung = sink.stat().st_size
    await asyncio.sleep(2.5)  # longer than a ring and its pause
    assert sink.stat().st_size == rung, "the timer still rings"
    assert [e.type for e in await pong(client, "stopped?")] == [], "the wake word opened a run"


async def test_a_timer_rings_for_timer_ring_s_then_stops(running, tmp_path: Path):
    sink = tmp_path / "speaker.raw"
    served, client = await running(
        wake=MICRO, timer_ring_s=1.5, speaker=SpeakerConfig(backend="file", file=sink)
    )
    await client.write_event(TimerFinished(id="unknown").event())
    await pong(client, "rings?")
    assert served.satellite.state is State.RINGING
    for _ in range(100):
        if served.satellite.state is not State.RINGING:
            break
        await asyncio.sleep(0.05)
    assert served.satellite.state is State.IDLE
    assert "ringing" not in served.satellite.status()


async def test_status_shows_the_timers_running(running):
    served, client = await running(wake=MICRO)
    await client.write_event(
        TimerStarted(id="k", total_seconds=300, name="kitchen", start_minutes=5).event()
    )
    await client.write_event(TimerStarted(id="e", total_seconds=600).event())
    await client.write_event(TimerUpdated(id="e", is_active=False, total_seconds=420).event())
    await pong(client, "kept?")
    status = served.satellite.status()
    assert re.search(r"kitchen timer 5:00, [45]:\d\d left; timer 10:00, 7:00 left, paused", status)
    await client.write_event(Event(type="timer-cancelled", data={"id": "k"}))
    await pong(client, "cancelled?")
    assert "kitchen" not in served.satellite.status()


async def test_announcement_is_preceded_by_the_announce_sound(running, tmp_path: Path):
    sink = tmp_path / "speaker.raw"
    bell = silence(0.1)[:-4] + b"\x01\x02\x03\x04"
    write_wav(tmp_path / "announce.wav", bell)
    served, client = await running(
        wake=MICRO,
        sounds=SoundsConfig(announce=tmp_path / "announce.wav"),
        speaker=SpeakerConfig(backend="file", file=sink),
    )
    message = bytes(range(256)) * 25
    await client.write_event(
        Event(type="audio-start", data={"rate": 16000, "width": 2, "channels": 1})
    )
    await client.write_event(
        Event(type="audio-chunk", data={"rate": 16000, "width": 2, "channels": 1}, payload=message)
    )
    await client.write_event(Event(type="audio-stop"))
    assert (await read(client, 10)).type == "played"
    assert sink.read_bytes() == bell + message
    assert served.satellite.state is State.IDLE


@pytest.mark.parametrize("models", [("hey_rhasspy",), ("/nowhere/model.json",)])
def test_a_model_that_does_not_exist_names_the_bundled_ones(models: tuple[str, ...]):
    from satellite.config import ConfigError, parse_config

    raw = {"satellite": {"wake": {"engine": "micro", "models": list(models)}}}
    with pytest.raises(ConfigError) as failure:
        parse_config(raw, "test.yaml")
    (problem,) = failure.value.problems
    assert problem.startswith("satellite.wake: models.0:")
    assert "alexa, hey_jarvis, hey_mycroft, okay_nabu" in problem


async def test_remote_wake_service_opens_a_run_with_its_model_name(running):
    from tests.fakes.wyoming_wake import MARKER, FakeWakeService

    async with FakeWakeService(models=[("okay_nabu", "OK Nabu", ("en",))]) as service:
        wake = WakeConfig(engine="remote", uri=f"tcp://127.0.0.1:{service.port}", vad_gated=False)
        served, client = await running(wake=wake)
        await client.write_event(Describe().event())
        (program,) = Info.from_event(await read(client)).wake
        assert program.name == "remote"
        for _ in range(100):  # the service's models, once it has been asked
            await client.write_event(Describe().event())
            (program,) = Info.from_event(await read(client)).wake
            if program.models and program.models[0].phrase == "OK Nabu":
                break
            served.mic.say(silence(0.03))
            await asyncio.sleep(0.05)
        assert [(m.name, m.phrase) for m in program.models] == [("okay_nabu", "OK Nabu")]
        assert service.detect_names[-1] == ["okay_nabu"]

        served.mic.say(MARKER + bytes(960 - len(MARKER)))
        for _ in range(100):  # the detection comes back with a later chunk
            if served.satellite.runs:
                break
            served.mic.say(silence(0.03))
            await asyncio.sleep(0.02)
        detection = await read(client)
        assert (detection.type, detection.data["name"]) == ("detection", "okay_nabu")
        run = await read(client)
        assert (run.type, run.data["start_stage"]) == ("run-pipeline", "asr")


async def test_a_wake_service_that_is_down_leaves_ha_served_and_timers_ringing(
    running, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = tmp_path / "speaker.raw"
    served, client = await running(
        paced=True,
        wake=WakeConfig(engine="remote", uri=f"tcp://127.0.0.1:{port}", vad_gated=False),
        speaker=SpeakerConfig(backend="file", file=sink),
        timer_ring_s=1.0,
    )
    served.mic.say(silence(3.0))
    for text in ("a", "b", "c"):
        assert await pong(client, text) == []
    await client.write_event(TimerFinished(id="t").event())
    await pong(client, "ring")
    for _ in range(100):
        if sink.exists() and sink.stat().st_size > 0:
            break
        await asyncio.sleep(0.05)
    assert sink.stat().st_size > 0, "the timer did not ring"
    await served.mic.heard_all()
    warnings = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert 1 <= len(warnings) <= 3, "one warning per attempt (1 s, then 2 s apart), not per chunk"


async def test_a_reload_changes_the_wake_word_without_dropping_ha(running):
    served, client = await running(wake=MICRO)
    config = served.satellite.config
    await served.satellite.reconfigure(
        config.model_copy(update={"wake": WakeConfig(engine="micro", models=("hey_mycroft",))})
    )
    await client.write_event(Describe().event())
    (program,) = Info.from_event(await read(client)).wake
    assert [m.name for m in program.models] == ["hey_mycroft"]
    served.mic.say(silence(0.5) + wake_phrase("okay nabu") + silence(1.5))
    served.mic.say(silence(0.5) + wake_phrase("hey mycroft") + silence(1.5))
    await served.mic.heard_all()
    events = await pong(client, "which?")
    assert [e.data["name"] for e in events if e.type == "detection"] == ["hey_mycroft"]

    await served.satellite.reconfigure(
        config.model_copy(update={"wake": WakeConfig(engine="none")})
    )
    await client.write_event(Describe().event())
    assert Info.from_event(await read(client)).wake == []
