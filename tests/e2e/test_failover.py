"""Failover lists in the daemon: the primary cloud goes away mid-run and no request is lost.

The daemon runs as a subprocess with ``provider: [dashscope, azure]`` for both roles; the
real SDKs inside it talk to the fake DashScope and Azure servers started here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize

from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

COOLDOWN_S = 1.5


@dataclass
class Clouds:
    dashscope: FakeDashScope
    azure: FakeAzure
    daemon: Daemon


@pytest.fixture
def clouds(tmp_path) -> Iterator[Clouds]:
    with FakeDashScope() as dashscope, FakeAzure() as azure:
        config = f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: [dashscope, azure], language: zh}}
  tts: {{provider: [dashscope, azure]}}
  failover: {{failures: 2, cooldown_s: {COOLDOWN_S}}}
providers:
  dashscope:
    api_key: ${{DASHSCOPE_API_KEY}}
    websocket_url: {dashscope.url}
    timeouts: {{connect: 2, first_result: 1, total: 8}}
    warm_connections: 0
  azure:
    key: ${{AZURE_SPEECH_KEY}}
    host: {azure.host}
    timeouts: {{connect: 2, first_result: 2, total: 8}}
    asr: {{languages: [zh-CN, en-US]}}
    tts: {{voice: zh-CN-XiaoxiaoNeural, sample_rate: 24000}}
"""
        daemon = Daemon(tmp_path, config)
        try:
            daemon.wait_listening()
            yield Clouds(dashscope, azure, daemon)
            assert daemon.stop() == 0, daemon.logs()
        finally:
            daemon.stop()


async def transcribe(port: int) -> str:
    client = await connect(port)
    try:
        await send_utterance(client, bytes(16000), chunk_bytes=3200, language="zh")
        event = await read(client)
        assert event.type == "transcript", event.data
        return event.data["text"]
    finally:
        await client.disconnect()


async def speak(port: int, text: str) -> bytes:
    client = await connect(port)
    try:
        await client.write_event(Synthesize(text=text).event())
        events = await read_until(client, "audio-stop")
        assert events[-1].type == "audio-stop", events[-1].data
        assert events[0].data["rate"] == 22050  # the first provider's format, whoever spoke
        return audio_of(events)
    finally:
        await client.disconnect()


async def test_pulling_the_primary_offline_mid_run_loses_no_request(clouds):
    port = clouds.daemon.port
    transcripts, audio = [], []
    for round_number in range(8):
        if round_number == 3:
            clouds.dashscope.fault = "refuse"  # the primary cloud is gone
        if round_number == 6:
            clouds.dashscope.fault = None  # and back
            await asyncio.sleep(COOLDOWN_S)  # its breaker lets a probe through
        asr, tts = await asyncio.gather(transcribe(port), speak(port, f"第{round_number}句。"))
        transcripts.append(asr)
        audio.append(tts)
    dashscope_text, azure_text = "你好。打开客厅的灯。", "Turn on the light. And close the blinds."
    assert transcripts == [dashscope_text] * 3 + [azure_text] * 3 + [dashscope_text] * 2
    assert all(audio)
    logs = clouds.daemon.logs()
    assert "failed before any output [connect-failed]" in logs
    assert "skipped for 1.5 s" in logs  # after two failures, no more connect attempts
    assert "answers again" in logs
    # Azure answered only while DashScope was away: three utterances, three texts.
    assert len(clouds.azure.received_audio) == 3 and len(clouds.azure.received_ssml) == 3


async def test_stalled_primary_times_out_and_the_next_answers(clouds):
    clouds.dashscope.fault = "stall"
    port = clouds.daemon.port
    assert await transcribe(port) == "Turn on the light. And close the blinds."
    assert await speak(port, "你好。")
    assert "failed before any output [timeout]" in clouds.daemon.logs()


async def test_streaming_client_sees_partials_through_the_chain(clouds):
    client = await connect(clouds.daemon.port)
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client))
    assert info.asr[0].supports_transcript_streaming
    assert [m.name for m in info.asr[0].models] == ["paraformer-realtime-v2", "azure-conversation"]
    voices = {v.name: v.description for v in info.tts[0].voices}
    assert voices["longxiaochun_v2"].endswith("(DashScope)")
    assert voices["zh-CN-XiaoxiaoNeural"].endswith("(Azure Speech)")
    await send_utterance(client, bytes(16000), chunk_bytes=3200, language="zh")
    events = await read_until(client, "transcript-stop")
    types = [e.type for e in events]
    assert types[0] == "transcript-start" and "transcript-chunk" in types
    assert types[-2:] == ["transcript", "transcript-stop"]
    chunks = "".join(e.data["text"] for e in events if e.type == "transcript-chunk")
    assert chunks == events[-2].data["text"] == "你好。打开客厅的灯。"
    await client.disconnect()


async def test_offline_voice_answers_when_every_cloud_is_unreachable(tmp_path):
    dashscope, azure = FakeDashScope(), FakeAzure()
    dashscope.fault = azure.fault = "refuse"  # the internet is down
    with dashscope, azure:
        daemon = Daemon(
            tmp_path,
            f"""
speech:
  uri: LISTEN_URI
  tts: {{provider: [dashscope, azure, espeak]}}
providers:
  dashscope: {{websocket_url: {dashscope.url}, warm_connections: 0}}
  azure: {{host: {azure.host}, warm_connections: 0}}
  espeak: {{voice: en-us}}
""",
        )
        try:
            daemon.wait_listening()
            audio = await speak(daemon.port, "I can't reach the cloud.")
            assert len(audio) > 22050 * 2 * 0.5  # over half a second of speech
            assert "TTS answered by espeak" in daemon.logs()
        finally:
            assert daemon.stop() == 0, daemon.logs()
