"""The daemon's life under systemd: SIGHUP reloads the config under traffic, SIGTERM drains.

The daemon runs as a subprocess; its real SDKs talk to the fake DashScope and Azure servers
started here, and the test clients play Home Assistant.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.tts import Synthesize

from tests.audio.speech import silence, speech_pcm, write_wav
from tests.e2e.daemon import Daemon
from tests.e2e.test_satellite import (
    collect_run,
    expect_nothing,
    file_mic,
    file_speaker,
    satellite_config,
    send_tts,
    start_ha,
    tone,
)
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

DASHSCOPE_TEXT, AZURE_TEXT = "你好。打开客厅的灯。", "Turn on the light. And close the blinds."
DASHSCOPE_RATE, AZURE_RATE = 22050, 24000


def speech_config(
    provider: str, dashscope: FakeDashScope, azure: FakeAzure, extra: str = ""
) -> str:
    return f"""
{extra}
speech:
  uri: LISTEN_URI
  asr: {{provider: {provider}, language: zh}}
  tts: {{provider: {provider}}}
providers:
  dashscope:
    websocket_url: {dashscope.url}
    timeouts: {{connect: 2, first_result: 5, total: 20}}
    warm_connections: 0  # each connection the fake sees is a request's
  azure:
    host: {azure.host}
    timeouts: {{connect: 2, first_result: 5, total: 20}}
    asr: {{languages: [zh-CN, en-US]}}
"""


@dataclass
class Clouds:
    dashscope: FakeDashScope
    azure: FakeAzure
    daemon: Daemon | None = None


@pytest.fixture
def clouds(tmp_path) -> Iterator[Clouds]:
    with FakeDashScope() as dashscope, FakeAzure() as azure:
        clouds = Clouds(dashscope, azure)
        try:
            yield clouds
        finally:
            if clouds.daemon is not None:
                clouds.daemon.stop()


def start(clouds: Clouds, tmp_path: Path, provider: str, extra: str = "") -> Daemon:
    clouds.daemon = Daemon(tmp_path, speech_config(provider, clouds.dashscope, clouds.azure, extra))
    clouds.daemon.wait_listening()
    return clouds.daemon


async def transcribe(port: int) -> str:
    client = await connect(port)
    try:
        await send_utterance(client, bytes(16000), chunk_bytes=3200, language="zh")
        event = await read(client, 30)
        assert event.type == "transcript", event.data
        return event.data["text"]
    finally:
        await client.disconnect()


async def speak(port: int, text: str = "你好。") -> int:
    """Synthesizes ``text``; the sample rate of the answer tells which provider spoke."""
    client = await connect(port)
    try:
        await client.write_event(Synthesize(text=text).event())
        events = await read_until(client, "audio-stop", timeout=30)
        assert events[-1].type == "audio-stop", events[-1].data
        assert audio_of(events)
        return events[0].data["rate"]
    finally:
        await client.disconnect()


@dataclass
class Traffic:
    """Requests made by clients that never pause, with when each started and ended."""

    done: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, answer
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, port: int, kind: str) -> None:
        for _ in range(200):  # bounded; ends well before when ``stop`` is set
            if self.stop.is_set():
                return
            started = time.monotonic()
            answer = await transcribe(port) if kind == "asr" else str(await speak(port))
            self.done.append((started, time.monotonic(), answer))


async def test_sighup_switches_provider_under_load_without_dropping_a_request(clouds, tmp_path):
    clouds.dashscope.delay = 0.5  # requests are in flight when the signal comes
    daemon = start(clouds, tmp_path, "dashscope")
    kept = await connect(daemon.port)  # a connection that stays open across the reload
    await kept.write_event(Describe().event())
    assert Info.from_event(await read(kept)).tts[0].voices[0].name == "longxiaochun_v2"

    traffic = Traffic()
    clients = [
        asyncio.create_task(traffic.client(daemon.port, kind)) for kind in ("asr", "tts") * 3
    ]
    while len(traffic.done) < 6:
        await asyncio.sleep(0.05)
    signalled = time.monotonic()
    logs = await asyncio.to_thread(
        daemon.reload, speech_config("azure", clouds.dashscope, clouds.azure)
    )
    applied = time.monotonic()
    await asyncio.sleep(3)
    traffic.stop.set()
    await asyncio.wait_for(asyncio.gather(*clients), 60)  # any error or hang fails here

    assert "configuration from" in logs and "applied" in logs, logs
    in_flight = [d for d in traffic.done if d[0] < signalled < d[1]]
    assert in_flight, "no request was in flight during the reload"
    dashscope_answers = {DASHSCOPE_TEXT, str(DASHSCOPE_RATE)}
    assert all(answer in dashscope_answers for _, _, answer in in_flight)
    after = [answer for started, _, answer in traffic.done if started > applied]
    assert len(after) >= 6 and set(after) <= {AZURE_TEXT, str(AZURE_RATE)}, after

    await kept.write_event(Describe().event())  # the old connection is served, with new info
    assert Info.from_event(await read(kept)).tts[0].voices[0].name == "zh-CN-XiaoxiaoNeural"
    await kept.disconnect()
    assert daemon.stop() == 0, daemon.logs()


async def test_invalid_config_on_sighup_is_logged_and_the_old_one_keeps_serving(clouds, tmp_path):
    daemon = start(clouds, tmp_path, "dashscope")
    logs = await asyncio.to_thread(
        daemon.reload, "speech:\n  uri: LISTEN_URI\n  asr: {provider: nope}\n"
    )
    assert "keeping the running configuration" in logs
    assert str(daemon.config_path) in logs and "speech.asr.provider" in logs
    assert await transcribe(daemon.port) == DASHSCOPE_TEXT
    assert await speak(daemon.port) == DASHSCOPE_RATE
    assert daemon.stop() == 0, daemon.logs()


async def test_sighup_reports_keys_that_need_a_restart(clouds, tmp_path):
    daemon = start(clouds, tmp_path, "dashscope")
    changed = speech_config("azure", clouds.dashscope, clouds.azure).replace(
        "  uri: LISTEN_URI", "  uri: tcp://127.0.0.1:1"
    )
    logs = await asyncio.to_thread(daemon.reload, changed)
    assert "speech.uri changed; restart the service to apply" in logs
    assert await speak(daemon.port) == AZURE_RATE  # the rest applied; same port
    assert daemon.stop() == 0, daemon.logs()


async def test_sigterm_lets_a_request_in_flight_finish(clouds, tmp_path):
    clouds.dashscope.delay = 1.5
    daemon = start(clouds, tmp_path, "dashscope", extra="shutdown_timeout_s: 10")
    request = asyncio.create_task(speak(daemon.port))
    while clouds.dashscope.connections == 0:  # the request reached the provider
        await asyncio.sleep(0.02)
    stopped = asyncio.create_task(asyncio.to_thread(daemon.stop))
    assert await asyncio.wait_for(request, 20) == DASHSCOPE_RATE  # finished, not cut off
    assert await stopped == 0, daemon.logs()
    assert "waiting up to 10 s for 1 request(s)" in daemon.logs()


async def test_sigterm_ends_a_stalled_request_with_an_error_within_the_bound(clouds, tmp_path):
    clouds.dashscope.fault = "stall"
    daemon = start(clouds, tmp_path, "dashscope", extra="shutdown_timeout_s: 1")
    client = await connect(daemon.port)
    await client.write_event(Synthesize(text="你好。").event())
    while clouds.dashscope.connections == 0:
        await asyncio.sleep(0.02)
    signalled = time.monotonic()
    stopped = asyncio.create_task(asyncio.to_thread(daemon.stop))
    error = await read(client, 10)
    assert error.type == "error" and error.data["code"] == "shutting-down", error
    assert await stopped == 0, daemon.logs()
    assert time.monotonic() - signalled < 6  # the 1 s bound, plus process exit on a busy host
    assert "ended 1 unfinished request(s)" in daemon.logs()
    await client.disconnect()


async def test_sighup_changes_vad_and_speaker_while_ha_stays_connected(tmp_path: Path):
    utterance = speech_pcm("turn on the kitchen light", 0.0, 0.0)
    mic_pcm = silence(2) + (utterance + silence(5)) * 4 + silence(30)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    first_sink, second_sink = tmp_path / "first.raw", tmp_path / "second.raw"

    def config(sink: Path, min_speech_ms: int, area: str) -> str:
        return (
            satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(sink))
            .replace("preroll_ms", f"min_speech_ms: {min_speech_ms}, preroll_ms")
            .replace("area: Kitchen", f"area: {area}")
        )

    # No utterance is long enough to open a run until the reload lowers min_speech_ms.
    daemon = Daemon(tmp_path, config(first_sink, 5000, "Kitchen"))
    try:
        client = await start_ha(daemon)
        await expect_nothing(client, 4.0)  # the first utterance went by
        logs = await asyncio.to_thread(daemon.reload, config(second_sink, 150, "Hall"))
        assert "satellite: new settings applied" in logs

        await collect_run(client, timeout=15)  # the same connection gets the next utterance
        answer = tone(0.5)
        await send_tts(client, answer)
        assert (await read(client, 10)).type == "played"
        assert second_sink.read_bytes() == answer and not first_sink.exists()
        await client.write_event(Ping(text="still there").event())
        await client.write_event(Describe().event())
        events = [await read(client, 5) for _ in range(2)]
        assert [e.type for e in events] == ["pong", "info"]
        assert Info.from_event(events[1]).satellite.area == "Hall"
        assert "HA disconnected" not in daemon.logs()
        await client.disconnect()
    finally:
        assert daemon.stop() == 0, daemon.logs()


async def test_sigterm_ends_the_satellites_run_with_audio_stop_and_keeps_its_recording(
    tmp_path: Path,
):
    mic_pcm = silence(2) + speech_pcm("turn on the kitchen light", 0.0, 0.0) + silence(30)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    config = satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(tmp_path / "out.raw"))
    recordings = tmp_path / "recordings"
    daemon = Daemon(tmp_path, f'{config}\nrecordings: {{dir: "{recordings}"}}\n')
    try:
        client = await start_ha(daemon)
        assert (await read(client, 15)).type == "run-pipeline"
        # HA heard speech: from now on HA, not the satellite's gate, ends the audio.
        await client.write_event(Event(type="voice-started", data={"timestamp": 0}))
        stopped = asyncio.create_task(asyncio.to_thread(daemon.stop))
        for _ in range(500):  # the audio so far, then audio-stop, then the close
            event = await read(client, 10)
            if event.type != "audio-chunk":
                break
        assert event.type == "audio-stop", event
        assert await stopped == 0, daemon.logs()
        assert "audio for the pipeline run ended: shutting down" in daemon.logs()
        [recording] = recordings.glob("*-satellite.wav")  # the run cut short is kept
        with wave.open(str(recording)) as wav:
            assert wav.getnframes() > 0
        await client.disconnect()
    finally:
        daemon.stop()


async def test_sighup_applies_recordings_and_limits_to_what_comes_next(clouds, tmp_path):
    daemon = start(clouds, tmp_path, "dashscope")
    kept = await connect(daemon.port)
    recordings = tmp_path / "recordings"
    extra = f'recordings: {{dir: "{recordings}"}}\nlimits: {{allowed_networks: [10.0.0.0/8]}}'
    await asyncio.to_thread(
        daemon.reload, speech_config("dashscope", clouds.dashscope, clouds.azure, extra)
    )
    outsider = await connect(daemon.port)  # 127.0.0.1 is no longer allowed
    with contextlib.suppress(ConnectionResetError):  # closed unanswered, either way
        assert await asyncio.wait_for(outsider.read_event(), 5) is None
    await send_utterance(kept, bytes(16000), chunk_bytes=3200, language="zh")
    assert (await read(kept, 30)).data["text"] == DASHSCOPE_TEXT  # admitted before: served
    for _ in range(200):
        if list(recordings.glob("*-asr.wav")):
            break
        await asyncio.sleep(0.05)
    assert len(list(recordings.glob("*-asr.wav"))) == 1
    await kept.disconnect()
    assert daemon.stop() == 0, daemon.logs()
