"""The DashScope providers, with the real SDK, against the fake DashScope endpoint."""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import soundfile
from dashscope.common.error import InvalidTask

from satellite.config_base import Timeouts
from satellite.errors import ErrorCode, ProviderError
from satellite.provider_specs.dashscope import DashScopeAsr, DashScopeConfig, DashScopeTts
from satellite.providers import dashscope_asr
from satellite.providers.base import Credentials, EncodedAudio, SynthesisOptions
from satellite.providers.dashscope_asr import DashScopeAsrProvider
from satellite.providers.dashscope_common import language_hint
from satellite.providers.dashscope_tts import DashScopeTtsProvider
from satellite.providers.text import join_phrases
from tests.fakes.dashscope import FAILURE_MESSAGE, FakeDashScope
from tests.providers.common import (
    failure,
    fake_process_ready_line,
    pieces,
    speak,
    transcribe,
    wait_for,
)

KEY = "test-dashscope-key"
HINT = "set the environment variable DASHSCOPE_API_KEY"
SENTENCES = ["你好。", "打开客厅的灯。"]
# Threads of the SDK's websocket clients (tts_v2 websocket-client, Recognition worker + loop).
SDK_THREADS = ("run_forever", "receive_worker", "iter_async_thread")
KINDS = ("recognition", "synthesis")


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def healthy_fake(fake: FakeDashScope) -> Iterator[None]:
    """Each test starts with a fault-free fake and leaves it so."""
    fake.fault, fake.delay, fake.sentences = None, 0.0, list(SENTENCES)
    yield
    fake.fault, fake.delay, fake.sentences = None, 0.0, list(SENTENCES)


def make_config(
    fake: FakeDashScope,
    *,
    connect: float = 2.0,
    first_result: float = 3.0,
    total: float = 10.0,
    websocket_url: str | None = None,
    **settings: object,
) -> DashScopeConfig:
    timeouts = Timeouts(connect=connect, first_result=first_result, total=total)
    url = websocket_url or fake.url
    return DashScopeConfig(websocket_url=url, timeouts=timeouts, **settings)


def asr_provider(
    fake: FakeDashScope, key: str = KEY, language: str | None = "zh", **settings: object
) -> DashScopeAsrProvider:
    return DashScopeAsrProvider(make_config(fake, **settings), Credentials(key, HINT), language)


def tts_provider(
    fake: FakeDashScope, key: str = KEY, voice: str | None = None, **settings: object
) -> DashScopeTtsProvider:
    return DashScopeTtsProvider(make_config(fake, **settings), Credentials(key, HINT), voice)


def speech(seconds: float, seed: int = 0) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(int(32000 * seconds)))


def expected_audio(texts: list[str], rate: int = 22050) -> bytes:
    return b"".join(FakeDashScope.tts_audio_for(text, rate) for text in texts)


def sdk_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if any(n in t.name for n in SDK_THREADS)]


async def check_sdk_threads_end(timeout: float = 5.0) -> None:
    assert await wait_for(lambda: not sdk_threads(), timeout), sdk_threads()


# --- recognition -------------------------------------------------------------------


async def test_transcription_sends_exact_audio_and_joins_every_sentence(fake: FakeDashScope):
    provider = asr_provider(
        fake,
        asr=DashScopeAsr(
            model="paraformer-test", allow_unlisted_model=True, parameters={"punctuation": True}
        ),
    )
    audio = speech(1.0)
    assert await transcribe(provider, audio) == "你好。打开客厅的灯。"
    assert fake.received_audio[-1] == audio
    request = fake.requests[-1]
    assert (request["model"], request["task"], request["function"]) == (
        "paraformer-test",
        "asr",
        "recognition",
    )
    assert request["parameters"] == {
        "sample_rate": 16000,
        "format": "pcm",
        "language_hints": ["zh"],
        "punctuation": True,
    }
    assert provider.model == "paraformer-test"


async def test_partial_hypotheses_grow_before_the_final_text(fake: FakeDashScope):
    partials: list[str] = []
    text = await transcribe(asr_provider(fake), speech(1.0), "zh", partials)
    assert len(partials) >= 3 and partials[-1] == text == "你好。打开客厅的灯。"
    # Partial results of the first sentence came first, each a longer hypothesis.
    assert partials[0] == "你" and partials[1] == "你好"


async def test_language_hint_follows_the_requested_language(fake: FakeDashScope):
    provider = asr_provider(fake, language="zh-CN", asr=DashScopeAsr(languages=("zh", "zh-CN")))
    assert provider.languages == ("zh-CN", "zh")
    await transcribe(provider, speech(0.2), "en-US")
    assert fake.requests[-1]["parameters"]["language_hints"] == ["en"]
    await transcribe(provider, speech(0.2))
    assert fake.requests[-1]["parameters"]["language_hints"] == ["zh"]


async def test_auto_language_hints_every_configured_language(fake: FakeDashScope):
    """speech.asr.language: auto: the model chooses among the configured languages; a
    language the client sends still wins."""
    provider = asr_provider(fake, language="auto", asr=DashScopeAsr(languages=("zh", "en", "ja")))
    assert provider.languages == ("zh", "en", "ja")
    await transcribe(provider, speech(0.2))
    assert fake.requests[-1]["parameters"]["language_hints"] == ["zh", "en", "ja"]
    await transcribe(provider, speech(0.2), "en-US")
    assert fake.requests[-1]["parameters"]["language_hints"] == ["en"]


@pytest.mark.parametrize(
    ("language", "hint"),
    [
        ("zh-CN", "zh"),
        ("zh-Hans", "zh"),
        ("zh", "zh"),
        ("en-US", "en"),
        ("yue", "yue"),
        ("zh-HK", "yue"),
        ("ja-JP", "ja"),
        ("de", "de"),
        ("ko_KR", "ko"),
    ],
)
def test_language_hints(language: str, hint: str):
    assert language_hint(language) == hint


def test_sentences_join_with_spaces_only_between_latin_text():
    assert join_phrases(["Turn on the light.", "Close the blinds."]) == (
        "Turn on the light. Close the blinds."
    )
    assert join_phrases(["你好。", "打开客厅的灯。", "OK."]) == "你好。打开客厅的灯。OK."
    assert join_phrases(["", " Hi. "]) == "Hi."


async def test_english_sentences_and_silence(fake: FakeDashScope):
    provider = asr_provider(fake, language="en-US")
    fake.sentences = ["Turn on the light.", "Close the blinds."]
    assert await transcribe(provider, speech(0.5)) == "Turn on the light. Close the blinds."
    fake.sentences = []
    assert await transcribe(provider, speech(0.5)) == ""
    assert await transcribe(provider, b"") == ""


async def test_audio_is_streamed_before_finish(fake: FakeDashScope):
    session = await asr_provider(fake).open(None)
    try:
        audio = speech(0.5)
        for offset in range(0, len(audio), 1000):
            await session.send(audio[offset : offset + 1000])
        assert await wait_for(lambda: fake.received_audio[-1] == audio)
        assert (await session.finish()).text == "你好。打开客厅的灯。"
    finally:
        await session.cancel()


async def test_provider_delay_is_waited_for(fake: FakeDashScope):
    fake.delay = 0.5
    started = time.monotonic()
    assert await transcribe(asr_provider(fake), speech(0.2)) == "你好。打开客厅的灯。"
    assert time.monotonic() - started >= 0.5


async def test_recognition_total_deadline(fake: FakeDashScope):
    fake.delay = 2.0
    provider = asr_provider(fake, first_result=5.0, total=1.0)
    error, elapsed = await failure(transcribe(provider, speech(0.2)))
    assert error.code == ErrorCode.TIMEOUT and "1 s" in error.message
    assert elapsed < 1.5


async def test_cancelled_recognition_releases_the_session(fake: FakeDashScope):
    fake.fault = "stall"
    session = await asr_provider(fake).open(None)
    await session.send(speech(0.2))
    await session.cancel()
    await check_sdk_threads_end()


async def test_ten_concurrent_recognitions(fake: FakeDashScope):
    provider = asr_provider(fake)
    audios = [speech(0.3, seed) for seed in range(10)]
    before = len(fake.received_audio)
    texts = await asyncio.gather(*(transcribe(provider, audio) for audio in audios))
    assert texts == ["你好。打开客厅的灯。"] * 10
    assert sorted(fake.received_audio[before:]) == sorted(audios)


# --- synthesis ---------------------------------------------------------------------


async def test_synthesis_yields_the_provider_audio(fake: FakeDashScope):
    provider = tts_provider(
        fake,
        tts=DashScopeTts(model="cosyvoice-v2", speech_rate=1.2, pitch=0.9, volume=70),
    )
    texts = ["今天天气很好。", "", "  ", "Hello there."]
    audio = await speak(provider, *texts)
    assert audio == expected_audio(["今天天气很好。", "Hello there."])
    assert fake.received_text[-1] == ["今天天气很好。", "Hello there."]
    request = fake.requests[-1]
    assert (request["model"], request["task"]) == ("cosyvoice-v2", "tts")
    parameters = request["parameters"]
    assert (parameters["voice"], parameters["format"], parameters["sample_rate"]) == (
        "longxiaochun_v2",
        "pcm",
        22050,
    )
    assert (parameters["rate"], parameters["pitch"], parameters["volume"]) == (1.2, 0.9, 70)
    assert provider.audio_format.rate == 22050 and provider.model == "cosyvoice-v2"


async def test_sample_rate_and_voice(fake: FakeDashScope):
    provider = tts_provider(
        fake,
        voice="longshu_v2",
        tts=DashScopeTts(sample_rate=16000, voices={"my-clone": ("zh",)}),
    )
    assert (provider.audio_format.rate, provider.audio_format.width) == (16000, 2)
    names = [voice.name for voice in provider.voices]
    assert names[0] == "longshu_v2" and "longxiaochun_v2" in names and "my-clone" in names
    assert len(names) == len(set(names))
    assert await speak(provider, "你好") == expected_audio(["你好"], 16000)
    assert fake.requests[-1]["parameters"]["voice"] == "longshu_v2"
    assert await speak(provider, "你好", voice="my-clone") == expected_audio(["你好"], 16000)
    assert fake.requests[-1]["parameters"]["voice"] == "my-clone"


async def test_encoded_output_comes_on_a_connection_apart_from_the_warm_ones(fake: FakeDashScope):
    provider = tts_provider(fake, warm_connections=1, tts=DashScopeTts(sample_rate=24000))
    try:
        await provider.prepare()
        assert provider.encoded_formats() == {EncodedAudio.MP3, EncodedAudio.OGG_OPUS}
        text = "今天天气很好，我们出去走走吧。"
        encoded = provider.synthesize_encoded(text, SynthesisOptions(), EncodedAudio.MP3)
        mp3 = b"".join([chunk async for chunk in encoded])
        assert fake.requests[-1]["parameters"]["format"] == "mp3"
        assert provider.warm_connections == 1  # kept for PCM
        assert await speak(provider, "你好") == expected_audio(["你好"], 24000)
        assert fake.requests[-1]["parameters"]["format"] == "pcm"
    finally:
        await provider.close()
    info = soundfile.info(io.BytesIO(mp3))
    assert (info.format, info.samplerate) == ("MP3", 24000)
    assert abs(info.duration - len(text) * 0.04) < 0.15
    assert tts_provider(fake, tts=DashScopeTts(sample_rate=22050)).encoded_formats() == {
        EncodedAudio.MP3  # CosyVoice has no 22.05 kHz Opus
    }


def test_unknown_default_voice_is_listed_first(fake: FakeDashScope):
    voices = tts_provider(fake, voice="cosyvoice-v2-custom-abc").voices
    assert voices[0].name == "cosyvoice-v2-custom-abc" and voices[0].languages


async def test_cosyvoice_v1_offers_and_speaks_its_own_voices(fake: FakeDashScope):
    provider = tts_provider(fake, tts=DashScopeTts(model="cosyvoice-v1"))
    names = [voice.name for voice in provider.voices]
    assert names[0] == "longwan" and "longxiaochun" in names
    assert not [name for name in names if name.endswith("_v2")]  # cosyvoice-v2's voices
    assert await speak(provider, "你好") == expected_audio(["你好"])
    request = fake.requests[-1]
    assert (request["model"], request["parameters"]["voice"]) == ("cosyvoice-v1", "longwan")


async def test_an_8k_model_is_sent_8khz_audio(fake: FakeDashScope):
    provider = asr_provider(fake, asr=DashScopeAsr(model="paraformer-realtime-8k-v2"))
    assert provider.input_format.rate == 8000  # what the server converts the client's audio to
    audio = speech(1.0)[:16000]  # 1 s at 8 kHz
    assert await transcribe(provider, audio) == "你好。打开客厅的灯。"
    assert fake.requests[-1]["parameters"]["sample_rate"] == 8000
    assert fake.received_audio[-1] == audio


async def test_audio_flows_before_all_text_is_sent(fake: FakeDashScope):
    provider = tts_provider(fake)
    first_audio = asyncio.Event()

    async def slow_text() -> AsyncIterator[str]:
        yield "第一句。"
        await asyncio.wait_for(first_audio.wait(), 5)  # only once audio has come back
        yield "第二句。"

    chunks = []
    async for chunk in provider.synthesize(slow_text(), SynthesisOptions()):
        chunks.append(chunk)
        first_audio.set()
    assert b"".join(chunks) == expected_audio(["第一句。", "第二句。"])


async def test_no_text_no_request(fake: FakeDashScope):
    before = len(fake.requests)
    assert await speak(tts_provider(fake), "", " \n") == b""
    assert await speak(tts_provider(fake)) == b""
    assert len(fake.requests) == before


async def test_consumer_stopping_early_cancels_the_synthesis(fake: FakeDashScope):
    stream = tts_provider(fake).synthesize(pieces("一段很长的文字。" * 10), SynthesisOptions())
    assert await anext(stream)
    await stream.aclose()
    await check_sdk_threads_end()
    assert await speak(tts_provider(fake), "好") == expected_audio(["好"])


async def test_ten_concurrent_syntheses(fake: FakeDashScope):
    provider = tts_provider(fake)
    texts = [f"第{n}句话。" for n in range(10)]
    before = len(fake.first_audio_sent)
    audios = await asyncio.gather(*(speak(provider, text) for text in texts))
    assert audios == [expected_audio([text]) for text in texts]
    assert len(fake.first_audio_sent) == before + 10


async def test_first_audio_is_timed_once_per_task(fake: FakeDashScope):
    before = len(fake.first_audio_sent)
    started = time.monotonic()
    assert await speak(tts_provider(fake), "第一句。", "第二句。") == expected_audio(
        ["第一句。", "第二句。"]
    )
    assert len(fake.first_audio_sent) == before + 1
    assert started < fake.first_audio_sent[-1] < time.monotonic()


# --- faults, in recognition and in synthesis ----------------------------------------


def provider_for(
    kind: str, fake: FakeDashScope, key: str = KEY, **settings: object
) -> DashScopeAsrProvider | DashScopeTtsProvider:
    if kind == "recognition":
        return asr_provider(fake, key, **settings)
    return tts_provider(fake, key, **settings)


async def make_request(provider: DashScopeAsrProvider | DashScopeTtsProvider) -> object:
    """The recognition or synthesis that a fault breaks."""
    if isinstance(provider, DashScopeAsrProvider):
        return await transcribe(provider, speech(0.5))
    return await speak(provider, "你好，", "今天天气很好。")


async def check_works(kind: str, fake: FakeDashScope) -> None:
    if kind == "recognition":
        assert await transcribe(asr_provider(fake), speech(0.3)) == "你好。打开客厅的灯。"
    else:
        assert await speak(tts_provider(fake), "好的。") == expected_audio(["好的。"])


async def check_fault(
    fake: FakeDashScope,
    kind: str,
    fault: str | None,
    codes: set[ErrorCode],
    within: float,
    **settings: object,
) -> ProviderError:
    """The request fails as expected, within ``within`` seconds; then, healthy, it works."""
    fake.fault = fault
    provider = provider_for(kind, fake, connect=1.0, first_result=0.5, total=4.0, **settings)
    error, elapsed = await failure(make_request(provider))
    assert elapsed < within
    assert error.code in codes, error.message
    assert KEY not in error.message and "wrong-secret" not in error.message
    fake.fault = None
    await check_works(kind, fake)
    return error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "codes", "within"),
    [
        ("refuse", {ErrorCode.CONNECT_FAILED}, 1.0),
        ("auth", {ErrorCode.AUTH_FAILED}, 1.0),
        ("task-failed", {ErrorCode.PROVIDER_FAILED}, 1.5),
        ("stall", {ErrorCode.TIMEOUT}, 0.5 + 1.0),
        ("drop", {ErrorCode.PROVIDER_FAILED, ErrorCode.TIMEOUT}, 0.5 + 1.0),
    ],
)
async def test_faults_then_recovery(
    fake: FakeDashScope, kind: str, fault: str, codes: set[ErrorCode], within: float
):
    error = await check_fault(fake, kind, fault, codes, within)
    if fault == "task-failed":
        assert FAILURE_MESSAGE in error.message
    await check_sdk_threads_end()


class _EndedBeforeStartReturned(dashscope_asr._Recognition):
    """The SDK's ``start()`` raises InvalidTask when its worker thread has already ended by
    the time it checks on it: the task failed that fast (seen under load, as an internal
    error instead of a failover). This forces that order: the real start against the fake,
    the worker's end, then the exception the SDK raises then."""

    def start(self, *args: Any, **kwargs: Any) -> None:
        super().start(*args, **kwargs)
        self._worker.join(5)
        raise InvalidTask("Invalid task, task create failed.")


@pytest.mark.parametrize(
    ("fault", "code", "says"),
    [
        ("auth", ErrorCode.AUTH_FAILED, "HTTP 401"),
        ("refuse", ErrorCode.CONNECT_FAILED, "cannot connect to ws://127.0.0.1"),
    ],
)
async def test_a_task_that_fails_before_start_returns_is_a_provider_failure(
    fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch, fault: str, code: ErrorCode, says: str
):
    """Not an internal error: failover moves on, and the message says what failed."""
    monkeypatch.setattr(dashscope_asr, "_Recognition", _EndedBeforeStartReturned)
    fake.fault = fault
    provider = asr_provider(fake, connect=1.0, first_result=0.5, total=4.0)
    error, elapsed = await failure(transcribe(provider, speech(0.5)))
    assert (error.code, elapsed < 1.0) == (code, True) and says in error.message
    await check_sdk_threads_end()


@pytest.mark.parametrize("kind", KINDS)
async def test_with_a_wrong_key(fake: FakeDashScope, kind: str):
    await check_fault(fake, kind, None, {ErrorCode.AUTH_FAILED}, 1.0, key="wrong-secret")


@pytest.mark.parametrize("kind", KINDS)
async def test_without_a_key(fake: FakeDashScope, kind: str):
    error = await check_fault(fake, kind, None, {ErrorCode.MISSING_CREDENTIALS}, 0.5, key="")
    assert HINT in error.message


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts TCP connections and never answers the websocket handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/api-ws/v1/inference"


@pytest.mark.parametrize(("kind", "released_within"), [("recognition", 5), ("synthesis", 2)])
async def test_without_handshake(
    fake: FakeDashScope, silent_url: str, kind: str, released_within: float
):
    provider = provider_for(kind, fake, connect=0.5, websocket_url=silent_url)
    error, elapsed = await failure(make_request(provider))
    assert error.code == ErrorCode.CONNECT_FAILED
    assert elapsed < 1.0
    await check_sdk_threads_end(released_within)


# --- the fake as a process ---------------------------------------------------------


def test_fake_runs_as_a_process():
    line = fake_process_ready_line("tests.fakes.dashscope", "--delay", "0.1")
    assert line.startswith("READY ws://127.0.0.1:") and line.endswith("/api-ws/v1/inference")


async def test_recognition_options_reach_the_service_by_their_names(fake: FakeDashScope):
    asr = DashScopeAsr(disfluency_removal=True, punctuation="semantic", max_sentence_silence_ms=800)
    await transcribe(asr_provider(fake, asr=asr), speech(0.2))
    parameters = fake.requests[-1]["parameters"]
    assert parameters["disfluency_removal_enabled"] is True
    assert parameters["semantic_punctuation_enabled"] is True
    assert parameters["max_sentence_silence"] == 800
    # Options left unset are not sent: the model's defaults apply.
    await transcribe(asr_provider(fake), speech(0.2))
    assert "disfluency_removal_enabled" not in fake.requests[-1]["parameters"]
