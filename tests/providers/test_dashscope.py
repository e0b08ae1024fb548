"""The DashScope providers, with the real SDK, against the fake DashScope endpoint."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from satellite.config import DashScopeAsr, DashScopeConfig, DashScopeTts, Timeouts
from satellite.providers.base import Credentials, ErrorCode, ProviderError, SynthesisOptions
from satellite.providers.dashscope_asr import (
    DashScopeAsrProvider,
    join_sentences,
    language_hint,
)
from satellite.providers.dashscope_tts import DashScopeTtsProvider
from tests.fakes.dashscope import FAILURE_MESSAGE, FakeDashScope

KEY = "test-dashscope-key"
HINT = "set the environment variable DASHSCOPE_API_KEY"
SENTENCES = ["你好。", "打开客厅的灯。"]
REPO = Path(__file__).resolve().parents[2]
# Threads of the SDK's websocket clients (tts_v2 websocket-client, Recognition worker + loop).
SDK_THREADS = ("run_forever", "receive_worker", "iter_async_thread")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's HTTP clients trust proxy variables: keep 127.0.0.1 direct."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


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
    **settings: object,
) -> DashScopeConfig:
    timeouts = Timeouts(connect=connect, first_result=first_result, total=total)
    return DashScopeConfig(websocket_url=fake.url, timeouts=timeouts, **settings)


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


async def transcribe(
    provider: DashScopeAsrProvider, audio: bytes, language: str | None = None
) -> str:
    session = await provider.open(language)
    try:
        for offset in range(0, len(audio), 3200):
            await session.send(audio[offset : offset + 3200])
        return await session.finish()
    except BaseException:
        await session.cancel()
        raise


async def pieces(*texts: str) -> AsyncIterator[str]:
    for text in texts:
        yield text


async def speak(provider: DashScopeTtsProvider, *texts: str, voice: str | None = None) -> bytes:
    options = SynthesisOptions(voice=voice)
    return b"".join([chunk async for chunk in provider.synthesize(pieces(*texts), options)])


def expected_audio(texts: list[str], rate: int = 22050) -> bytes:
    return b"".join(FakeDashScope.tts_audio_for(text, rate) for text in texts)


async def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def sdk_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if any(n in t.name for n in SDK_THREADS)]


# --- recognition -------------------------------------------------------------------


async def test_transcription_sends_exact_audio_and_joins_every_sentence(fake: FakeDashScope):
    provider = asr_provider(
        fake, asr=DashScopeAsr(model="paraformer-test", parameters={"punctuation": True})
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


async def test_language_hint_follows_the_requested_language(fake: FakeDashScope):
    provider = asr_provider(fake, language="zh-CN", asr=DashScopeAsr(languages=("zh", "zh-CN")))
    assert provider.languages == ("zh-CN", "zh")
    await transcribe(provider, speech(0.2), "en-US")
    assert fake.requests[-1]["parameters"]["language_hints"] == ["en"]
    await transcribe(provider, speech(0.2))
    assert fake.requests[-1]["parameters"]["language_hints"] == ["zh"]


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
    assert join_sentences(["Turn on the light.", "Close the blinds."]) == (
        "Turn on the light. Close the blinds."
    )
    assert join_sentences(["你好。", "打开客厅的灯。", "OK."]) == "你好。打开客厅的灯。OK."
    assert join_sentences(["", " Hi. "]) == "Hi."


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
        assert await session.finish() == "你好。打开客厅的灯。"
    finally:
        await session.cancel()


async def test_provider_delay_is_waited_for(fake: FakeDashScope):
    fake.delay = 0.5
    started = time.monotonic()
    assert await transcribe(asr_provider(fake), speech(0.2)) == "你好。打开客厅的灯。"
    assert time.monotonic() - started >= 0.5


async def check_recognition_fault(
    fake: FakeDashScope, fault: str | None, codes: set[ErrorCode], within: float, **kwargs: object
) -> ProviderError:
    fake.fault = fault
    provider = asr_provider(fake, connect=1.0, first_result=0.5, total=4.0, **kwargs)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await transcribe(provider, speech(0.5))
    assert time.monotonic() - started < within
    assert caught.value.code in codes, caught.value.message
    assert KEY not in caught.value.message and "wrong-secret" not in caught.value.message
    fake.fault = None
    assert await transcribe(asr_provider(fake), speech(0.3)) == "你好。打开客厅的灯。"
    return caught.value


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
async def test_recognition_faults_then_recovery(
    fake: FakeDashScope, fault: str, codes: set[ErrorCode], within: float
):
    error = await check_recognition_fault(fake, fault, codes, within)
    if fault == "task-failed":
        assert FAILURE_MESSAGE in error.message
    assert await wait_for(lambda: not sdk_threads(), timeout=5), sdk_threads()


async def test_recognition_with_a_wrong_key(fake: FakeDashScope):
    await check_recognition_fault(fake, None, {ErrorCode.AUTH_FAILED}, 1.0, key="wrong-secret")


async def test_recognition_without_a_key(fake: FakeDashScope):
    error = await check_recognition_fault(fake, None, {ErrorCode.MISSING_CREDENTIALS}, 0.5, key="")
    assert HINT in error.message


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts TCP connections and never answers the websocket handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/api-ws/v1/inference"


async def test_recognition_without_handshake(fake: FakeDashScope, silent_url: str):
    config = make_config(fake, connect=0.5).model_copy(update={"websocket_url": silent_url})
    provider = DashScopeAsrProvider(config, Credentials(KEY, HINT), "zh")
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await transcribe(provider, speech(0.2))
    assert caught.value.code == ErrorCode.CONNECT_FAILED
    assert time.monotonic() - started < 1.0
    assert await wait_for(lambda: not sdk_threads(), timeout=5), sdk_threads()


async def test_recognition_total_deadline(fake: FakeDashScope):
    fake.delay = 2.0
    provider = asr_provider(fake, first_result=5.0, total=1.0)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await transcribe(provider, speech(0.2))
    assert caught.value.code == ErrorCode.TIMEOUT and "1 s" in caught.value.message
    assert time.monotonic() - started < 1.5


async def test_cancelled_recognition_releases_the_session(fake: FakeDashScope):
    fake.fault = "stall"
    session = await asr_provider(fake).open(None)
    await session.send(speech(0.2))
    await session.cancel()
    assert await wait_for(lambda: not sdk_threads(), timeout=5), sdk_threads()


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
        tts=DashScopeTts(model="cosyvoice-test", speech_rate=1.2, pitch=0.9, volume=70),
    )
    texts = ["今天天气很好。", "", "  ", "Hello there."]
    audio = await speak(provider, *texts)
    assert audio == expected_audio(["今天天气很好。", "Hello there."])
    assert fake.received_text[-1] == ["今天天气很好。", "Hello there."]
    request = fake.requests[-1]
    assert (request["model"], request["task"]) == ("cosyvoice-test", "tts")
    parameters = request["parameters"]
    assert (parameters["voice"], parameters["format"], parameters["sample_rate"]) == (
        "longxiaochun_v2",
        "pcm",
        22050,
    )
    assert (parameters["rate"], parameters["pitch"], parameters["volume"]) == (1.2, 0.9, 70)
    assert provider.audio_format.rate == 22050 and provider.model == "cosyvoice-test"


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


def test_unknown_default_voice_is_listed_first(fake: FakeDashScope):
    voices = tts_provider(fake, voice="cosyvoice-v2-custom-abc").voices
    assert voices[0].name == "cosyvoice-v2-custom-abc" and voices[0].languages


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
    assert await wait_for(lambda: not sdk_threads(), timeout=5), sdk_threads()
    assert await speak(tts_provider(fake), "好") == expected_audio(["好"])


async def check_synthesis_fault(
    fake: FakeDashScope, fault: str | None, codes: set[ErrorCode], within: float, **kwargs: object
) -> ProviderError:
    fake.fault = fault
    provider = tts_provider(fake, connect=1.0, first_result=0.5, total=4.0, **kwargs)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await speak(provider, "你好，", "今天天气很好。")
    assert time.monotonic() - started < within
    assert caught.value.code in codes, caught.value.message
    assert KEY not in caught.value.message and "wrong-secret" not in caught.value.message
    fake.fault = None
    assert await speak(tts_provider(fake), "好的。") == expected_audio(["好的。"])
    return caught.value


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
async def test_synthesis_faults_then_recovery(
    fake: FakeDashScope, fault: str, codes: set[ErrorCode], within: float
):
    error = await check_synthesis_fault(fake, fault, codes, within)
    if fault == "task-failed":
        assert FAILURE_MESSAGE in error.message
    assert await wait_for(lambda: not sdk_threads(), timeout=5), sdk_threads()


async def test_synthesis_without_handshake(fake: FakeDashScope, silent_url: str):
    config = make_config(fake, connect=0.5).model_copy(update={"websocket_url": silent_url})
    provider = DashScopeTtsProvider(config, Credentials(KEY, HINT), None)
    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await speak(provider, "你好")
    assert caught.value.code == ErrorCode.CONNECT_FAILED
    assert time.monotonic() - started < 1.0
    assert await wait_for(lambda: not sdk_threads(), timeout=2), sdk_threads()


async def test_synthesis_with_a_wrong_key(fake: FakeDashScope):
    await check_synthesis_fault(fake, None, {ErrorCode.AUTH_FAILED}, 1.0, key="wrong-secret")


async def test_synthesis_without_a_key(fake: FakeDashScope):
    error = await check_synthesis_fault(fake, None, {ErrorCode.MISSING_CREDENTIALS}, 0.5, key="")
    assert HINT in error.message


async def test_ten_concurrent_syntheses(fake: FakeDashScope):
    provider = tts_provider(fake)
    texts = [f"第{n}句话。" for n in range(10)]
    audios = await asyncio.gather(*(speak(provider, text) for text in texts))
    assert audios == [expected_audio([text]) for text in texts]


# --- the fake as a process ---------------------------------------------------------


def test_fake_runs_as_a_process():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.dashscope", "--port", "0", "--delay", "0.1"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("READY ws://127.0.0.1:") and line.strip().endswith(
            "/api-ws/v1/inference"
        )
        process.terminate()
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
