"""Home Assistant's STT and TTS flows against the daemon process, for each provider.

The daemon runs as a subprocess from a YAML file; the real SDKs inside it talk to the
fake DashScope and Azure servers started here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from wyoming.info import Describe, Info
from wyoming.tts import Synthesize, SynthesizeChunk, SynthesizeStart, SynthesizeStop

from tests.e2e.daemon import TEST_KEYS, Daemon
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import audio_of, connect, read, read_until, send_utterance

DEADLINES = "{connect: 2, first_result: 2, total: 8}"


@dataclass
class Setup:
    provider: str
    fake: FakeDashScope | FakeAzure
    daemon: Daemon
    language: str
    expected_transcript: str
    sample_rate: int

    def expected_audio(self, first_request: int) -> bytes:
        """What the fake sent for each TTS request it received from ``first_request`` on."""
        if isinstance(self.fake, FakeDashScope):
            texts = [t for task in self.fake.received_text[first_request:] for t in task]
        else:
            texts = self.fake.received_ssml[first_request:]
        return b"".join(self.fake.tts_audio_for(t, self.sample_rate) for t in texts)

    def tts_requests(self) -> int:
        if isinstance(self.fake, FakeDashScope):
            return len(self.fake.received_text)
        return len(self.fake.received_ssml)


def dashscope_config(fake: FakeDashScope) -> str:
    return f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: dashscope, language: zh}}
  tts: {{provider: dashscope, voice: longxiaochun_v2}}
providers:
  dashscope:
    api_key: ${{DASHSCOPE_API_KEY}}
    websocket_url: {fake.url}
    timeouts: {DEADLINES}
    warm_connections: 0  # a connection opened before a fault would not see it
    tts: {{sample_rate: 22050}}
"""


def azure_config(fake: FakeAzure) -> str:
    return f"""
speech:
  uri: LISTEN_URI
  asr: {{provider: azure, language: en-US}}
  tts: {{provider: azure, voice: en-US-JennyNeural}}
providers:
  azure:
    key: ${{AZURE_SPEECH_KEY}}
    host: {fake.host}
    timeouts: {DEADLINES}
    asr: {{languages: [en-US, zh-CN]}}
    tts: {{voice: en-US-JennyNeural, sample_rate: 24000}}
"""


@pytest.fixture(scope="module", params=["dashscope", "azure"])
def setup(request, tmp_path_factory) -> Iterator[Setup]:
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == "dashscope":
        fake = FakeDashScope().start()
        daemon = Daemon(workdir, dashscope_config(fake))
        result = Setup("dashscope", fake, daemon, "zh", "你好。打开客厅的灯。", 22050)
    else:
        fake = FakeAzure().start()
        daemon = Daemon(workdir, azure_config(fake))
        result = Setup(
            "azure", fake, daemon, "en-US", "Turn on the light. And close the blinds.", 24000
        )
    try:
        daemon.wait_listening()
        yield result
        assert daemon.stop() == 0, daemon.logs()
        logs = daemon.logs()
        for key in TEST_KEYS.values():
            assert key not in logs
    finally:
        daemon.stop()
        fake.stop()


@pytest.fixture(autouse=True)
def healthy_fake(request):
    """Each test starts with a fault-free fake and leaves it so."""
    if "setup" in request.fixturenames:
        fake = request.getfixturevalue("setup").fake
        fake.fault = None
        yield
        fake.fault = None
    else:
        yield


def speech_audio(seconds: float) -> bytes:
    count = int(16000 * seconds)
    return bytes((i * 7) % 251 for i in range(count * 2))


async def test_info_answers_within_a_second(setup: Setup):
    client = await connect(setup.daemon.port)
    started = time.monotonic()
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client, timeout=1.0))
    assert time.monotonic() - started < 1.0
    [asr] = info.asr
    [tts] = info.tts
    assert asr.installed and setup.language in asr.models[0].languages
    assert tts.installed and tts.voices[0].installed and tts.voices[0].languages
    assert tts.attribution.url.startswith("https://")
    await client.disconnect()


async def test_transcribe_odd_chunks_joins_every_sentence(setup: Setup):
    audio = speech_audio(1.5)
    client = await connect(setup.daemon.port)
    await send_utterance(client, audio, chunk_bytes=1001, language=setup.language)
    transcript = await read(client)
    assert transcript.type == "transcript", transcript.data
    assert transcript.data["text"] == setup.expected_transcript
    assert setup.fake.received_audio[-1] == audio
    await client.disconnect()


async def test_plain_synthesis_streams_the_provider_audio(setup: Setup):
    before = setup.tts_requests()
    client = await connect(setup.daemon.port)
    await client.write_event(Synthesize(text="Hello from the satellite.").event())
    events = await read_until(client, "audio-stop")
    assert events[0].type == "audio-start"
    assert events[0].data["rate"] == setup.sample_rate
    assert events[-1].type == "audio-stop"
    audio = audio_of(events)
    assert audio and audio == setup.expected_audio(before)
    await client.disconnect()


async def test_streaming_synthesis(setup: Setup):
    before = setup.tts_requests()
    client = await connect(setup.daemon.port)
    await client.write_event(SynthesizeStart().event())
    for piece in ["The kitchen light ", "is on. ", "The blinds ", "are closed."]:
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(
        Synthesize(text="The kitchen light is on. The blinds are closed.").event()
    )
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped")
    types = [e.type for e in events]
    assert types[0] == "audio-start" and types.count("audio-start") == 1
    assert types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert audio_of(events) == setup.expected_audio(before)
    await client.disconnect()


@pytest.mark.parametrize(
    ("fault", "codes"),
    [
        ("auth", {"auth-failed"}),
        ("stall", {"timeout"}),
        ("drop", {"provider-failed", "timeout"}),
    ],
)
async def test_provider_faults_become_errors_then_recover(setup: Setup, fault, codes):
    setup.fake.fault = fault
    client = await connect(setup.daemon.port)
    started = time.monotonic()
    await send_utterance(client, speech_audio(0.5), chunk_bytes=3200, language=setup.language)
    error = await read(client, timeout=15)
    assert error.type == "error" and error.data["code"] in codes, error.data
    assert time.monotonic() - started < 8 + 2  # within the total deadline
    await client.write_event(Synthesize(text="Are you there?").event())
    error = (await read_until(client, "audio-stop", timeout=15))[-1]
    assert error.type == "error" and error.data["code"] in codes, error.data
    await client.disconnect()

    setup.fake.fault = None
    client = await connect(setup.daemon.port)
    await send_utterance(client, speech_audio(0.5), chunk_bytes=3200, language=setup.language)
    assert (await read(client)).data.get("text") == setup.expected_transcript
    await client.write_event(Synthesize(text="Yes.").event())
    assert audio_of(await read_until(client, "audio-stop"))
    await client.disconnect()


async def test_provider_failing_mid_task(setup: Setup):
    setup.fake.fault = "task-failed" if setup.provider == "dashscope" else "error"
    client = await connect(setup.daemon.port)
    await send_utterance(client, speech_audio(0.5), chunk_bytes=3200, language=setup.language)
    error = await read(client, timeout=15)
    assert (error.type, error.data["code"]) == ("error", "provider-failed"), error.data
    await client.write_event(SynthesizeStart().event())
    await client.write_event(SynthesizeChunk(text="This will fail.").event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped", timeout=15)
    assert events[-1].type == "error" and events[-1].data["code"] == "provider-failed"
    assert (await read(client, timeout=15)).type == "synthesize-stopped"
    await client.disconnect()


async def test_concurrent_clients(setup: Setup):
    async def transcribe() -> str:
        client = await connect(setup.daemon.port)
        await send_utterance(client, speech_audio(0.3), chunk_bytes=640, language=setup.language)
        event = await read(client, timeout=20)
        await client.disconnect()
        return event.data.get("text", event.type)

    async def speak() -> int:
        client = await connect(setup.daemon.port)
        await client.write_event(Synthesize(text="Concurrent request.").event())
        audio = audio_of(await read_until(client, "audio-stop", timeout=20))
        await client.disconnect()
        return len(audio)

    results = await asyncio.gather(*(transcribe() for _ in range(5)), *(speak() for _ in range(5)))
    assert results[:5] == [setup.expected_transcript] * 5
    assert all(size > 0 for size in results[5:])


async def test_garbage_gets_an_error_and_the_daemon_keeps_serving(setup: Setup):
    reader, writer = await asyncio.open_connection("127.0.0.1", setup.daemon.port)
    writer.write(b'{"type": "audio-chunk", "data_length": "many"}\nxx\n')
    await writer.drain()
    assert b'"error"' in await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    client = await connect(setup.daemon.port)
    await client.write_event(Describe().event())
    assert (await read(client)).type == "info"
    await client.disconnect()
