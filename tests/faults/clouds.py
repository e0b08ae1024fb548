"""One daemon per cloud (DashScope inference, DashScope realtime, Azure), serving both of
its paths (ASR and TTS) against the cloud's fake, and HA's requests to it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wyoming.event import Event

from tests.e2e.daemon import Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_realtime import FakeDashScopeRealtime
from tests.faults.common import (
    MARGIN_S,
    next_event,
    read_synthesis,
    running_daemon,
    send_streaming_synthesis,
)
from tests.wyoming_client import audio_of, connect, send_utterance

CONNECT_S, FIRST_RESULT_S, TOTAL_S = 2.0, 1.0, 8.0
TIMEOUTS = f"{{connect: {CONNECT_S}, first_result: {FIRST_RESULT_S}, total: {TOTAL_S}}}"
SLOW_S = 5.0
SPEECH = bytes((i * 7) % 251 for i in range(16000))  # 0.5 s of 16 kHz s16le, never silent
PIECES = ["The kitchen light ", "is on. ", "Anything else?"]

Fake = FakeDashScope | FakeDashScopeRealtime | FakeAzure


@dataclass
class Cloud:
    name: str
    fake: Fake
    daemon: Daemon
    language: str
    transcript: str

    def apply(self, fault: str | None) -> None:
        """Switch the fault; a cloud that goes away (refuse, auth) also loses the
        connections clients keep open between requests."""
        self.fake.delay = SLOW_S if fault == "slow" else 0.0
        self.fake.fault = None if fault == "slow" else fault
        if fault in ("refuse", "auth"):
            if isinstance(self.fake, FakeDashScope):
                self.fake.drop_connections()
            elif isinstance(self.fake, FakeDashScopeRealtime):
                self.fake.close_connections()
            # FakeAzure cuts them itself on these faults

    def tts_mark(self) -> int:
        fake = self.fake
        if isinstance(fake, FakeDashScope):
            return len(fake.received_text)
        if isinstance(fake, FakeDashScopeRealtime):
            return len(fake.requests)
        return len(fake.received_ssml)

    def tts_audio_since(self, mark: int) -> bytes:
        """What the fake sent for the TTS requests it received since ``mark``."""
        fake = self.fake
        if isinstance(fake, FakeDashScope):
            texts = [text for task in fake.received_text[mark:] for text in task]
            return b"".join(fake.tts_audio_for(text, 22050) for text in texts)
        if isinstance(fake, FakeDashScopeRealtime):
            sessions = [s for s in fake.requests[mark:] if "tts" in s.model]
            texts = [text for session in sessions for text in session.synthesized]
            return b"".join(FakeDashScope.tts_audio_for(text, 24000) for text in texts)
        return b"".join(fake.tts_audio_for(ssml, 24000) for ssml in fake.received_ssml[mark:])


def config_for(fake: Fake) -> str:
    speech = "speech:\n  uri: LISTEN_URI\n"
    if isinstance(fake, FakeDashScope):
        return f"""{speech}  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope}}
providers:
  dashscope: {{websocket_url: {fake.url}, timeouts: {TIMEOUTS}}}
"""
    if isinstance(fake, FakeDashScopeRealtime):
        return f"""{speech}  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope}}
providers:
  dashscope:
    realtime_url: {fake.url}
    timeouts: {TIMEOUTS}
    asr: {{model: qwen3-asr-flash-realtime}}
    tts: {{model: qwen3-tts-flash-realtime}}
"""
    return f"""{speech}  asr: {{provider: azure, language: en-US}}
  tts: {{provider: azure}}
providers:
  azure:
    host: {fake.host}
    timeouts: {TIMEOUTS}
    asr: {{languages: [en-US]}}
    tts: {{voice: en-US-JennyNeural, sample_rate: 24000}}
"""


CLOUDS = {
    "dashscope": (FakeDashScope, "zh", "你好。打开客厅的灯。"),
    "qwen": (FakeDashScopeRealtime, "zh", "打开客厅的灯。"),
    "azure": (FakeAzure, "en-US", "Turn on the light. And close the blinds."),
}


def cloud_fixture(name: str):
    """A fixture for the whole fault suite: the fake of cloud ``name`` and a daemon
    serving both of its paths (ASR and TTS)."""

    @pytest.fixture(scope="package", name=name)
    def cloud(tmp_path_factory) -> Iterator[Cloud]:
        fake_type, language, transcript = CLOUDS[name]
        workdir = tmp_path_factory.mktemp(name)
        with fake_type() as fake, running_daemon(workdir, config_for(fake)) as daemon:
            yield Cloud(name, fake, daemon, language, transcript)

    return cloud


async def transcribe(cloud: Cloud) -> tuple[Event, float]:
    """HA's STT flow on a new connection: the outcome and the seconds it took after
    audio-stop."""
    client = await connect(cloud.daemon.port)
    try:
        await send_utterance(client, SPEECH, chunk_bytes=3200, language=cloud.language)
        sent = time.monotonic()
        event = await next_event(client, {"transcript"}, TOTAL_S + MARGIN_S)
        return event, time.monotonic() - sent
    finally:
        await client.disconnect()


async def synthesize(cloud: Cloud) -> tuple[list[Event], float]:
    """HA's streaming TTS flow on a new connection: every event up to synthesize-stopped,
    and the seconds until the error (or the end)."""
    client = await connect(cloud.daemon.port)
    try:
        await send_streaming_synthesis(client, PIECES)
        return await read_synthesis(client, TOTAL_S + MARGIN_S)
    finally:
        await client.disconnect()


async def check_answer(cloud: Cloud, kind: str) -> None:
    """A request that must get its whole, right answer."""
    if kind == "asr":
        event, _ = await transcribe(cloud)
        assert (event.type, event.data.get("text")) == ("transcript", cloud.transcript), event
        return
    mark = cloud.tts_mark()
    events, _ = await synthesize(cloud)
    types = [event.type for event in events]
    assert "error" not in types, events
    assert types[0] == "audio-start" and types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert audio_of(events) == cloud.tts_audio_since(mark)
