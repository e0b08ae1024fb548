"""Failover chains and circuit breakers, with scripted providers behind our interfaces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from satellite.audio.pcm import AudioFormat
from satellite.config import FailoverConfig
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
from satellite.providers.failover import CircuitBreaker, FailoverAsr, FailoverTts
from satellite.speech.info import build_info

SETTINGS = FailoverConfig(failures=2, cooldown_s=30.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- circuit breaker -----------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_probes_after_cooldown():
    clock = Clock()
    breaker = CircuitBreaker("ASR x", SETTINGS, clock)
    assert breaker.begin()
    breaker.failed()
    assert breaker.state == "closed"  # one failure is not a pattern
    assert breaker.begin()
    breaker.succeeded()
    for _ in range(2):
        assert breaker.begin()
        breaker.failed()
    assert breaker.state == "open" and not breaker.begin()
    clock.now += 29.0
    assert not breaker.available()
    clock.now += 1.0
    assert breaker.state == "half-open"
    assert breaker.begin()  # one probe...
    assert not breaker.begin()  # ...at a time
    breaker.failed()  # a failed probe opens it again for a whole cool-down
    assert breaker.state == "open"
    clock.now += 30.0
    assert breaker.begin()
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.begin()


def test_abandoned_probe_lets_the_next_request_probe():
    clock = Clock()
    breaker = CircuitBreaker("TTS x", SETTINGS, clock)
    for _ in range(2):
        breaker.begin()
        breaker.failed()
    clock.now += 30.0
    assert breaker.begin()
    breaker.abandoned()
    assert breaker.begin()


# --- speech to text -----------------------------------------------------------


class ScriptedAsrSession(AsrSession):
    def __init__(self, provider: ScriptedAsr, on_partial: PartialCallback | None) -> None:
        self.provider = provider
        self.on_partial = on_partial
        self.audio = bytearray()

    async def send(self, pcm: bytes) -> None:
        self.audio += pcm
        if self.provider.partial_then_fail:
            if self.on_partial is not None:
                self.on_partial("打开")
            raise ProviderError(ErrorCode.PROVIDER_FAILED, "connection lost")

    async def finish(self) -> AsrResult:
        self.provider.received.append(bytes(self.audio))
        if self.provider.finish_error is not None:
            raise self.provider.finish_error
        return AsrResult(f"{self.provider.name} heard {len(self.audio)} bytes")

    async def cancel(self) -> None:
        self.provider.cancelled += 1


class ScriptedAsr(AsrProvider):
    model = "scripted"

    def __init__(self, name: str, languages: tuple[str, ...]) -> None:
        self.name = name
        self.languages = languages
        self.open_error: Exception | None = None
        self.finish_error: Exception | None = None
        self.partial_then_fail = False
        self.opened = 0
        self.received: list[bytes] = []
        self.cancelled = 0

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        self.opened += 1
        if self.open_error is not None:
            raise self.open_error
        return ScriptedAsrSession(self, on_partial)


async def utterance(asr: AsrProvider, pieces: int = 3) -> str:
    session = await asr.open("zh")
    for index in range(pieces):
        await session.send(bytes([index]) * 320)
    return (await session.finish()).text


def asr_chain(clock: Clock | None = None) -> tuple[ScriptedAsr, ScriptedAsr, FailoverAsr]:
    first, second = ScriptedAsr("dashscope", ("zh", "en")), ScriptedAsr("azure", ("zh-CN",))
    return first, second, FailoverAsr([first, second], SETTINGS, clock or Clock())


async def test_asr_refused_primary_hands_over_at_open():
    first, _, chain = asr_chain()
    first.open_error = ProviderError(ErrorCode.CONNECT_FAILED, "refused")
    assert await utterance(chain) == "azure heard 960 bytes"
    assert chain.languages == ("zh", "en", "zh-CN")


async def test_asr_timeout_at_finish_replays_the_whole_utterance():
    first, second, chain = asr_chain()
    first.finish_error = ProviderError(ErrorCode.TIMEOUT, "no answer within 3 s")
    assert await utterance(chain) == "azure heard 960 bytes"
    assert first.received == second.received == [b"\x00" * 320 + b"\x01" * 320 + b"\x02" * 320]
    assert first.cancelled == 1


async def test_asr_failure_after_a_partial_is_an_error_not_a_failover():
    first, second, chain = asr_chain()
    first.partial_then_fail = True
    heard: list[str] = []
    session = await chain.open("zh", heard.append)
    with pytest.raises(ProviderError) as caught:
        await session.send(bytes(320))
    assert caught.value.code == ErrorCode.PROVIDER_FAILED and heard == ["打开"]
    assert second.opened == 0


async def test_asr_failure_after_a_partial_nobody_asked_for_still_fails_over():
    first, second, chain = asr_chain()
    first.partial_then_fail = True
    assert await utterance(chain) == "azure heard 960 bytes"
    assert second.received == [b"\x00" * 320 + b"\x01" * 320 + b"\x02" * 320]


async def test_asr_every_provider_failing_names_each_reason():
    first, second, chain = asr_chain()
    first.open_error = ProviderError(ErrorCode.CONNECT_FAILED, "refused")
    second.open_error = ProviderError(ErrorCode.AUTH_FAILED, "key rejected")
    with pytest.raises(ProviderError) as caught:
        await utterance(chain)
    assert caught.value.code == ErrorCode.AUTH_FAILED
    assert "dashscope: refused" in caught.value.message
    assert "azure: key rejected" in caught.value.message


@pytest.mark.parametrize("where", ["open", "finish"])
async def test_asr_unexpected_exception_fails_over_and_is_logged_with_its_traceback(
    where: str, caplog: pytest.LogCaptureFixture
):
    """Not an internal error for the client: a provider whose SDK raises something nobody
    mapped counts as failing, like any other provider failure."""
    first, _, chain = asr_chain()
    bug = RuntimeError("an SDK exception nobody mapped")
    if where == "open":
        first.open_error = bug
    else:
        first.finish_error = bug
    for _ in range(SETTINGS.failures):
        assert await utterance(chain) == "azure heard 960 bytes"
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == SETTINGS.failures and errors[0].exc_info is not None
    assert errors[0].getMessage() == "ASR dashscope: unexpected failure"
    assert chain.breaker(0).state == "open"


async def test_asr_bad_request_is_not_passed_on():
    first, second, chain = asr_chain()
    first.open_error = ProviderError(ErrorCode.BAD_REQUEST, "unsupported language")
    with pytest.raises(ProviderError):
        await utterance(chain)
    assert second.opened == 0


async def test_asr_open_breaker_skips_the_primary_until_it_is_probed():
    clock = Clock()
    first, _, chain = asr_chain(clock)
    first.open_error = ProviderError(ErrorCode.CONNECT_FAILED, "refused")
    for _ in range(2):
        await utterance(chain)
    assert first.opened == 2 and chain.breaker(0).state == "open"
    await utterance(chain)
    assert first.opened == 2  # skipped: no connect attempt, no added delay
    clock.now += SETTINGS.cooldown_s
    first.open_error = None
    assert await utterance(chain) == "dashscope heard 960 bytes"
    assert chain.breaker(0).state == "closed"


# --- text to speech -----------------------------------------------------------


class ScriptedTts(TtsProvider):
    """Yields one chunk per piece of text: the piece's length in bytes of ``byte``."""

    model = "scripted"

    def __init__(self, name: str, rate: int, voices: tuple[str, ...], byte: bytes) -> None:
        self.name = name
        self.audio_format = AudioFormat(rate, 2, 1)
        self.voices = tuple(Voice(v, ("zh",), f"{v} voice") for v in voices)
        self.byte = byte
        self.fail_after_pieces: int | None = None
        self.failure: Exception = ProviderError(ErrorCode.PROVIDER_FAILED, "task failed")
        self.requests: list[tuple[list[str], SynthesisOptions]] = []

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        pieces: list[str] = []
        self.requests.append((pieces, options))
        async for piece in text:
            if self.fail_after_pieces is not None and len(pieces) >= self.fail_after_pieces:
                raise self.failure
            pieces.append(piece)
            yield self.byte * (2 * len(piece))


def tts_chain() -> tuple[ScriptedTts, ScriptedTts, FailoverTts]:
    first = ScriptedTts("dashscope", 16000, ("Cherry", "Ethan"), b"\x11")
    second = ScriptedTts("azure", 16000, ("zh-CN-XiaoxiaoNeural",), b"\x22")
    return first, second, FailoverTts([first, second], SETTINGS)


async def streamed(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    while (piece := await queue.get()) is not None:
        yield piece


async def test_tts_failure_before_audio_resends_all_text_to_the_next():
    first, second, chain = tts_chain()
    first.fail_after_pieces = 0
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["你好。", "今天"]:
        queue.put_nowait(piece)
    audio = chain.synthesize(streamed(queue), SynthesisOptions())
    assert await anext(audio) == b"\x22" * 6  # the second provider got "你好。" again
    queue.put_nowait("晴天。")
    queue.put_nowait(None)
    rest = [chunk async for chunk in audio]
    assert second.requests[0][0] == ["你好。", "今天", "晴天。"]
    assert rest == [b"\x22" * 4, b"\x22" * 6]


async def test_tts_unexpected_exception_before_audio_fails_over(caplog: pytest.LogCaptureFixture):
    first, _, chain = tts_chain()
    first.fail_after_pieces, first.failure = 0, RuntimeError("an SDK exception nobody mapped")
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["你好。", None]:
        queue.put_nowait(piece)
    assert [c async for c in chain.synthesize(streamed(queue), SynthesisOptions())] == [b"\x22" * 6]
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert error.getMessage() == "TTS dashscope: unexpected failure" and error.exc_info


async def test_tts_unexpected_exception_after_audio_ends_the_request_with_an_internal_error():
    first, second, chain = tts_chain()
    first.fail_after_pieces, first.failure = 1, RuntimeError("an SDK exception nobody mapped")
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["one. ", "two. ", None]:
        queue.put_nowait(piece)
    with pytest.raises(ProviderError) as caught:
        async for _ in chain.synthesize(streamed(queue), SynthesisOptions()):
            pass
    assert caught.value.code == ErrorCode.INTERNAL and second.requests == []


async def test_tts_failure_after_audio_ends_the_request_with_the_error():
    first, second, chain = tts_chain()
    first.fail_after_pieces = 1
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["one. ", "two. ", None]:
        queue.put_nowait(piece)
    received: list[bytes] = []
    with pytest.raises(ProviderError):
        async for chunk in chain.synthesize(streamed(queue), SynthesisOptions()):
            received.append(chunk)
    assert received == [b"\x11" * 10] and second.requests == []


async def test_tts_audio_of_a_fallback_is_converted_to_the_advertised_format():
    first = ScriptedTts("dashscope", 24000, ("Cherry",), b"\x11")
    second = ScriptedTts("espeak", 12000, ("en-us",), b"\x00")
    first.fail_after_pieces = 0
    chain = FailoverTts([first, second], SETTINGS)
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["x" * 600, None]:
        queue.put_nowait(piece)
    audio = b"".join([c async for c in chain.synthesize(streamed(queue), SynthesisOptions())])
    assert chain.audio_format.rate == 24000
    assert abs(len(audio) - 2 * 1200) <= 8  # 12 kHz audio doubled to 24 kHz


async def test_tts_voice_goes_to_the_provider_that_has_it():
    first, second, chain = tts_chain()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["hi", None]:
        queue.put_nowait(piece)
    options = SynthesisOptions(voice="zh-CN-XiaoxiaoNeural")
    audio = [c async for c in chain.synthesize(streamed(queue), options)]
    assert audio == [b"\x22" * 4] and first.requests == []
    assert second.requests[0][1].voice == "zh-CN-XiaoxiaoNeural"


async def test_tts_fallback_speaks_with_its_own_default_voice():
    first, second, chain = tts_chain()
    first.fail_after_pieces = 0
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    for piece in ["hi", None]:
        queue.put_nowait(piece)
    [_ async for _ in chain.synthesize(streamed(queue), SynthesisOptions(voice="Ethan"))]
    assert first.requests[0][1].voice == "Ethan" and second.requests[0][1].voice is None


def test_info_has_one_program_with_every_voice_labelled():
    _, _, tts = tts_chain()
    _, _, asr = asr_chain()
    info = build_info(asr, tts)
    [asr_program], [tts_program] = info.asr, info.tts
    assert [m.name for m in asr_program.models] == ["scripted", "scripted"]
    assert asr_program.supports_transcript_streaming
    assert "DashScope, then Azure Speech" in asr_program.description
    voices = {v.name: v for v in tts_program.voices}
    assert list(voices) == ["Cherry", "Ethan", "zh-CN-XiaoxiaoNeural"]
    assert voices["Cherry"].description == "Cherry voice (DashScope)"
    assert voices["zh-CN-XiaoxiaoNeural"].attribution.name == "Microsoft Azure AI Speech"
