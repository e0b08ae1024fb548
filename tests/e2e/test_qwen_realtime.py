"""The Qwen realtime models in the daemon: HA's flows against the fake realtime endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from wyoming.info import Describe, Info
from wyoming.tts import SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.audio.speech import speech_pcm
from tests.e2e.daemon import Daemon
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_realtime import FakeDashScopeRealtime
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Iterator[tuple[FakeDashScopeRealtime, Daemon]]:
    with FakeDashScopeRealtime() as fake:
        daemon = Daemon(
            tmp_path_factory.mktemp("qwen"),
            f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope, voice: Ethan}}
providers:
  dashscope:
    realtime_url: {fake.url}
    timeouts: {{connect: 2, first_result: 2, total: 8}}
    asr: {{model: qwen3-asr-flash-realtime}}
    tts: {{model: qwen3-tts-flash-realtime, language_type: Chinese}}
""",
        )
        try:
            daemon.wait_listening()
            yield fake, daemon
            assert daemon.stop() == 0, daemon.logs()
        finally:
            daemon.stop()


async def test_streaming_client_gets_live_qwen_transcripts(qwen):
    fake, daemon = qwen
    client = await connect(daemon.port)
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client))
    assert info.asr[0].models[0].name == "qwen3-asr-flash-realtime"
    assert info.tts[0].voices[0].name == "Ethan"
    audio = speech_pcm("turn on the living room light")
    # Live audio: partials come while it streams (a burst would let them coalesce).
    await send_utterance(client, audio, chunk_bytes=3200, language="zh", pause_s=0.05)
    events = await read_until(client, "transcript-stop")
    types = [e.type for e in events]
    assert types[0] == "transcript-start" and types.count("transcript-chunk") >= 2
    assert types[-2:] == ["transcript", "transcript-stop"]
    chunks = "".join(e.data["text"] for e in events if e.type == "transcript-chunk")
    assert chunks == events[-2].data["text"] == "打开客厅的灯。"
    assert fake.requests[-1].updates[-1]["input_audio_transcription"]["language"] == "zh"
    await client.disconnect()


async def test_streaming_synthesis_with_qwen_voice(qwen):
    fake, daemon = qwen
    client = await connect(daemon.port)
    await client.write_event(SynthesizeStart().event())
    for piece in ["客厅的灯", "已经打开了。", "还有别的吗？"]:
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped")
    assert events[0].type == "audio-start" and events[0].data["rate"] == 24000
    session = fake.requests[-1]
    assert session.model == "qwen3-tts-flash-realtime"
    assert session.updates[-1]["voice"] == "Ethan"
    assert session.updates[-1]["language_type"] == "Chinese"
    expected = b"".join(FakeDashScope.tts_audio_for(t, 24000) for t in session.synthesized)
    assert audio_of(events) == expected and session.synthesized
    await client.disconnect()
