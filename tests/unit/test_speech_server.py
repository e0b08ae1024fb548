"""The speech endpoint's Wyoming behaviour, with scripted providers behind our interface."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from functools import partial

import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.server import AsyncServer
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from satellite.audio.pcm import AudioFormat
from satellite.errors import ErrorCode, ProviderError
from satellite.providers.base import (
    AsrProvider,
    AsrResult,
    AsrSession,
    PartialCallback,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from satellite.speech.info import build_info
from satellite.speech.requests import SpeechEndpoint, SpeechService
from satellite.speech.server import SpeechHandler
from tests.wyoming_client import connect, read, read_until, send_utterance


class ScriptedSession(AsrSession):
    """Reports the provider's next scripted hypothesis after each piece of audio."""

    def __init__(self, provider: ScriptedAsr, on_partial: PartialCallback | None) -> None:
        self.provider = provider
        self.on_partial = on_partial
        self.audio = bytearray()
        self.pieces = 0

    async def send(self, pcm: bytes) -> None:
        self.audio += pcm
        if self.on_partial is not None and self.pieces < len(self.provider.hypotheses):
            self.on_partial(self.provider.hypotheses[self.pieces])
        self.pieces += 1

    async def finish(self) -> AsrResult:
        self.provider.received.append(bytes(self.audio))
        if self.provider.fail_on_finish:
            raise ProviderError(ErrorCode.TIMEOUT, "no answer within 1 s")
        return AsrResult("你好。打开客厅的灯。", 0.9, self.provider.identified_language)

    async def cancel(self) -> None:
        self.provider.cancelled += 1


class ScriptedAsr(AsrProvider):
    name = "dashscope"

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.languages_opened: list[str | None] = []
        self.fail_on_open = False
        self.fail_on_finish = False
        self.identified_language: str | None = None  # as a service identifying it would say
        self.cancelled = 0
        # Whole hypotheses, one after each piece of audio; "打开可" is revised to "打开客厅".
        self.hypotheses = ["你好", "你好。", "你好。打开可", "你好。打开客厅", "你好。打开客厅的"]

    model = "paraformer-realtime-v2"
    languages = ("zh", "en")

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        self.languages_opened.append(language)
        if self.fail_on_open:
            raise ProviderError(ErrorCode.AUTH_FAILED, "the key was rejected")
        return ScriptedSession(self, on_partial)


class ScriptedTts(TtsProvider):
    """Yields 100 bytes of audio per text character, in one chunk per piece of text."""

    name = "azure"
    audio_format = AudioFormat(24000, 2, 1)
    model = "azure-neural"
    voices = (
        Voice("zh-CN-XiaoxiaoNeural", ("zh-CN",), "Xiaoxiao"),
        Voice("en-US-JennyNeural", ("en-US",)),
    )

    def __init__(self) -> None:
        self.requests: list[tuple[list[str], SynthesisOptions]] = []
        self.fail_after_pieces: int | None = None

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        pieces: list[str] = []
        self.requests.append((pieces, options))
        async for piece in text:
            if self.fail_after_pieces is not None and len(pieces) >= self.fail_after_pieces:
                raise ProviderError(ErrorCode.PROVIDER_FAILED, "task failed: throttled")
            pieces.append(piece)
            yield bytes([len(pieces)]) * (100 * len(piece))


@pytest.fixture
async def served():
    """The scripted providers, the port, and the endpoint that serves them."""
    asr, tts = ScriptedAsr(), ScriptedTts()
    speech = SpeechEndpoint(SpeechService(asr=asr, tts=tts, info=build_info(asr, tts).event()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    await server.start(partial(SpeechHandler, endpoint=speech))
    yield asr, tts, port, speech
    await server.stop()


@pytest.fixture
def endpoint(served):
    asr, tts, port, _ = served
    return asr, tts, port


async def test_describe_advertises_both_roles(endpoint):
    _, _, port = endpoint
    client = await connect(port)
    await client.write_event(Describe().event())
    info = Info.from_event(await read(client))
    [asr] = info.asr
    [tts] = info.tts
    assert asr.installed and asr.attribution.name and asr.models[0].languages == ["zh", "en"]
    assert tts.installed and tts.supports_synthesize_streaming
    assert [v.name for v in tts.voices] == ["zh-CN-XiaoxiaoNeural", "en-US-JennyNeural"]
    assert tts.voices[0].languages == ["zh-CN"] and tts.voices[0].description == "Xiaoxiao"
    await client.disconnect()


async def test_transcribe_with_odd_chunks_reaches_provider_byte_exact(endpoint):
    asr, _, port = endpoint
    audio = bytes(range(256)) * 40
    client = await connect(port)
    await send_utterance(client, audio, chunk_bytes=333, language="zh")
    event = await read(client)
    assert event.type == "transcript" and event.data["text"] == "你好。打开客厅的灯。"
    assert asr.received == [audio]
    assert asr.languages_opened == ["zh"]
    await client.disconnect()


async def test_transcript_names_the_language_the_service_identified(endpoint):
    """With speech.asr.language: auto and no language from the client, the provider
    identifies it: the transcript says which, so HA's pipeline can follow."""
    asr, _, port = endpoint
    asr.identified_language = "en-US"
    client = await connect(port)
    await send_utterance(client, bytes(3200), chunk_bytes=320)
    event = await read(client)
    assert event.type == "transcript" and event.data["language"] == "en-US"
    assert asr.languages_opened == [None]
    await client.disconnect()


async def test_streaming_client_sees_live_partials_before_audio_stop(endpoint):
    _, _, port = endpoint
    client = await connect(port)
    await client.write_event(Describe().event())  # it has read supports_transcript_streaming
    assert Info.from_event(await read(client)).asr[0].supports_transcript_streaming
    await client.write_event(Transcribe(language="zh").event())
    await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
    for _ in range(5):
        await client.write_event(AudioChunk(16000, 2, 1, bytes(320)).event())
    live = [await read(client), await read(client), await read(client)]
    assert [e.type for e in live] == ["transcript-start", "transcript-chunk", "transcript-chunk"]
    assert live[0].data.get("language") == "zh"
    await client.write_event(AudioStop().event())
    events = live + await read_until(client, "transcript-stop")
    chunks = [e.data["text"] for e in events if e.type == "transcript-chunk"]
    # Only text two hypotheses agreed on went out live: the revised "可" never did.
    assert "".join(chunks) == "你好。打开客厅的灯。" and "可" not in "".join(chunks)
    assert [e.type for e in events[-2:]] == ["transcript", "transcript-stop"]
    assert events[-2].data["text"] == "你好。打开客厅的灯。"
    await client.disconnect()


async def test_client_that_did_not_ask_gets_only_the_transcript(endpoint):
    _, _, port = endpoint
    client = await connect(port)
    await send_utterance(client, bytes(3200), chunk_bytes=320, language="zh")
    assert (await read(client)).type == "transcript"
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.read_event(), timeout=0.3)
    await client.disconnect()


async def test_failure_after_partials_sends_error_then_transcript_stop(endpoint):
    asr, _, port = endpoint
    asr.fail_on_finish = True
    client = await connect(port)
    await client.write_event(Describe().event())
    await read(client)
    await send_utterance(client, bytes(3200), chunk_bytes=320)
    events = await read_until(client, "error")
    assert events[0].type == "transcript-start" and events[-1].data["code"] == "timeout"
    assert (await read(client)).type == "transcript-stop"
    await client.disconnect()


async def test_audio_is_converted_to_16k_mono(endpoint):
    asr, _, port = endpoint
    client = await connect(port)
    await client.write_event(AudioStart(rate=48000, width=2, channels=2).event())
    one_second = bytes(48000 * 2 * 2)
    await client.write_event(AudioChunk(48000, 2, 2, one_second).event())
    await client.write_event(AudioStop().event())
    assert (await read(client)).type == "transcript"
    assert abs(len(asr.received[0]) - 32000) <= 4
    await client.disconnect()


async def test_asr_failure_becomes_error_and_next_request_works(endpoint):
    asr, _, port = endpoint
    asr.fail_on_open = True
    client = await connect(port)
    await send_utterance(client, bytes(640), chunk_bytes=640)
    error = await read(client)
    assert error.type == "error" and error.data["code"] == "auth-failed"
    asr.fail_on_open = False
    await send_utterance(client, bytes(640), chunk_bytes=640)
    assert (await read(client)).type == "transcript"
    await client.disconnect()


async def test_asr_timeout_is_reported_with_its_code(endpoint):
    asr, _, port = endpoint
    asr.fail_on_finish = True
    client = await connect(port)
    await send_utterance(client, b"", chunk_bytes=640)
    error = await read(client)
    assert (error.type, error.data["code"]) == ("error", "timeout")
    assert "dashscope" in error.data["text"]
    await client.disconnect()


async def test_plain_synthesize(endpoint):
    _, tts, port = endpoint
    client = await connect(port)
    voice = SynthesizeVoice(name="en-US-JennyNeural")
    await client.write_event(Synthesize(text="hello", voice=voice).event())
    events = await read_until(client, "audio-stop")
    assert events[0].type == "audio-start" and events[0].data["rate"] == 24000
    audio = b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")
    assert audio == b"\x01" * 500
    assert tts.requests[0] == (["hello"], SynthesisOptions(voice="en-US-JennyNeural"))
    await client.disconnect()


async def test_streaming_synthesis_ignores_the_repeated_synthesize(endpoint):
    _, tts, port = endpoint
    client = await connect(port)
    await client.write_event(SynthesizeStart().event())
    for piece in ["Hello there. ", "How are ", "you?"]:
        await client.write_event(SynthesizeChunk(text=piece).event())
    await client.write_event(Synthesize(text="Hello there. How are you?").event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped")
    types = [e.type for e in events]
    assert types[0] == "audio-start" and types[-2:] == ["audio-stop", "synthesize-stopped"]
    assert types.count("audio-start") == 1
    assert tts.requests[0][0] == ["Hello there. ", "How are ", "you?"]
    assert len(tts.requests) == 1
    # Nothing else arrives: the repeated synthesize was not answered.
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(client.read_event(), timeout=0.3)
    await client.disconnect()


async def test_streaming_failure_still_ends_with_synthesize_stopped(endpoint):
    _, tts, port = endpoint
    tts.fail_after_pieces = 1
    client = await connect(port)
    await client.write_event(SynthesizeStart().event())
    await client.write_event(SynthesizeChunk(text="one. ").event())
    await client.write_event(SynthesizeChunk(text="two. ").event())
    await client.write_event(SynthesizeStop().event())
    events = await read_until(client, "synthesize-stopped")
    assert events[-1].type == "error" and events[-1].data["code"] == "provider-failed"
    assert (await read(client)).type == "synthesize-stopped"
    tts.fail_after_pieces = None
    await client.write_event(Synthesize(text="ok").event())
    assert (await read_until(client, "audio-stop"))[0].type == "audio-start"
    await client.disconnect()


async def test_bad_events_get_errors_and_the_connection_keeps_serving(endpoint):
    _, _, port = endpoint
    client = await connect(port)
    await client.write_event(SynthesizeChunk(text="orphan").event())
    assert (await read(client)).data["code"] == "bad-request"
    await client.write_event(Event(type="audio-start", data={"rate": "fast"}))
    assert (await read(client)).data["code"] == "bad-request"
    await client.write_event(Event(type="synthesize", data={"text": 5}))
    assert (await read(client)).data["code"] == "bad-request"
    await client.write_event(Event(type="made-up-event", data={"x": 1}))
    await client.write_event(Describe().event())
    assert (await read(client)).type == "info"
    await client.disconnect()


async def test_malformed_header_gets_error_then_close(endpoint):
    _, _, port = endpoint
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"this is not json\n")
    await writer.drain()
    header = await asyncio.wait_for(reader.readline(), 5)
    assert b'"error"' in header
    assert await asyncio.wait_for(reader.read(), 5)  # the error's data, then EOF
    writer.close()
    client = await connect(port)  # the server is still serving
    await client.write_event(Describe().event())
    assert (await read(client)).type == "info"
    await client.disconnect()


async def test_many_clients_at_once(endpoint):
    asr, _, port = endpoint

    async def one(index: int) -> str:
        client = await connect(port)
        await send_utterance(client, bytes([index]) * 320, chunk_bytes=320)
        event = await read(client)
        await client.disconnect()
        return event.type

    assert await asyncio.gather(*(one(i) for i in range(20))) == ["transcript"] * 20
    assert sorted(a[0] for a in asr.received) == list(range(20))


async def test_a_vanished_streaming_client_leaves_no_request_behind(served):
    _, tts, port, speech = served
    client = await connect(port)
    await client.write_event(SynthesizeStart().event())
    await client.write_event(SynthesizeChunk(text="你好，").event())
    for _ in range(100):
        if tts.requests and tts.requests[0][0]:
            break
        await asyncio.sleep(0.02)
    assert speech.in_flight == 1
    await client.disconnect()  # gone before synthesize-stop
    for _ in range(100):
        if speech.in_flight == 0:
            break
        await asyncio.sleep(0.02)
    assert speech.in_flight == 0


async def test_while_stopping_new_requests_get_shutting_down(served):
    _, _, port, speech = served
    speech.stopping = True
    client = await connect(port)
    await client.write_event(Synthesize(text="你好。").event())
    await send_utterance(client, bytes(3200), chunk_bytes=320)
    error = await read(client)
    assert error.type == "error" and error.data["code"] == ErrorCode.SHUTTING_DOWN
    await client.write_event(Describe().event())  # once per connection; info still answered
    assert (await read(client)).type == "info"
    await client.disconnect()
