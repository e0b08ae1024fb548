"""The Qwen HTTP voice models in the daemon: Home Assistant's synthesis flows against the fake
DashScope HTTP API."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.e2e.daemon import Daemon
from tests.fakes.dashscope_http import FakeDashScopeHttp, audio_for
from tests.wyoming_client import audio_of, connect, read, read_until

KEY = "sk-e2e-http"


@pytest.fixture(scope="module")
def qwen_http(tmp_path_factory) -> Iterator[tuple[FakeDashScopeHttp, Daemon]]:
    with FakeDashScopeHttp(api_key=KEY) as fake:
        daemon = Daemon(
            tmp_path_factory.mktemp("qwen-http"),
            f"""
speech:
  uri: LISTEN_URI
  tts: {{provider: dashscope, voice: Ethan}}
providers:
  dashscope:
    api_key: {KEY}
    http_url: {fake.url}
    timeouts: {{connect: 2, first_result: 1, total: 8}}
    tts: {{model: qwen3-tts-flash, language_type: Chinese}}
""",
        )
        try:
            daemon.wait_listening()
            yield fake, daemon
            assert daemon.stop() == 0, daemon.logs()
        finally:
            daemon.stop()


@pytest.fixture(autouse=True)
def healthy(qwen_http) -> Iterator[None]:
    fake, _ = qwen_http
    fake.fault = None
    yield
    fake.fault = None


async def test_streaming_synthesis_one_request_per_sentence(qwen_http):
    fake, daemon = qwen_http
    client = await connect(daemon.port)
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client))
    assert info.tts[0].voices[0].name == "Ethan"
    before = len(fake.requests)
    await client.write_event(SynthesizeStart().event())
    for piece in ["客厅的灯", "已经打开了。", "还有别的吗？"]:
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(Synthesize(text="客厅的灯已经打开了。还有别的吗？").event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped")
    assert events[0].type == "audio-start" and events[0].data["rate"] == 24000
    sent = fake.requests[before:]
    # Both sentences were known at once: their requests went together, in either order.
    assert sorted(r.text for r in sent) == sorted(["客厅的灯已经打开了。", "还有别的吗？"])
    assert {(r.model, r.voice, r.language_type) for r in sent} == {
        ("qwen3-tts-flash", "Ethan", "Chinese")
    }
    assert audio_of(events) == audio_for("客厅的灯已经打开了。") + audio_for("还有别的吗？")
    await client.disconnect()


async def test_a_stalled_service_becomes_a_timeout_then_recovers(qwen_http):
    fake, daemon = qwen_http
    fake.fault = "stall"
    client = await connect(daemon.port)
    started = time.monotonic()
    await client.write_event(Synthesize(text="你好。").event())
    error = await read(client)
    assert error.type == "error" and error.data["code"] == "timeout"
    assert time.monotonic() - started < 2.0
    await client.disconnect()
    fake.fault = None
    client = await connect(daemon.port)
    await client.write_event(Synthesize(text="好的。").event())
    events = await read_until(client, "audio-stop")
    assert audio_of(events) == audio_for("好的。")
    await client.disconnect()
