"""The Qwen HTTP TTS provider (qwen3-tts-flash, qwen-tts), with the real SDK, against the fake
DashScope HTTP API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from satellite.config_base import Timeouts
from satellite.errors import ErrorCode
from satellite.provider_specs.dashscope import DashScopeConfig, DashScopeTts
from satellite.provider_table import PROVIDERS
from satellite.providers.base import Credentials, SynthesisOptions
from satellite.providers.dashscope_http_tts import QwenHttpTtsProvider
from tests.fakes.dashscope_http import (
    AUTH_MESSAGE,
    ERROR_MESSAGE,
    PATH,
    FakeDashScopeHttp,
    audio_for,
)
from tests.providers.common import failure, fake_process_ready_line, pieces, speak, wait_for

KEY = "test-dashscope-http-key"
HINT = "set the environment variable DASHSCOPE_API_KEY"
MODEL = "qwen3-tts-flash"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScopeHttp]:
    with FakeDashScopeHttp(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def healthy_fake(fake: FakeDashScopeHttp) -> Iterator[None]:
    """Each test starts with a fault-free fake and leaves it so."""
    fake.fault, fake.delay, fake.interval = None, 0.0, 0.0
    yield
    fake.fault, fake.delay, fake.interval = None, 0.0, 0.0


@pytest.fixture
async def providers() -> AsyncIterator[list[QwenHttpTtsProvider]]:
    made: list[QwenHttpTtsProvider] = []
    yield made
    for provider in made:
        await provider.close()


def make_provider(
    made: list[QwenHttpTtsProvider],
    fake: FakeDashScopeHttp,
    *,
    key: str = KEY,
    voice: str | None = None,
    connect: float = 1.0,
    first_result: float = 2.0,
    total: float = 10.0,
    **tts: object,
) -> QwenHttpTtsProvider:
    tts.setdefault("model", MODEL)
    config = DashScopeConfig(
        http_url=fake.url,
        timeouts=Timeouts(connect=connect, first_result=first_result, total=total),
        tts=DashScopeTts(**tts),
    )
    provider = PROVIDERS["dashscope"].tts(config, Credentials(key, HINT), voice)
    assert isinstance(provider, QwenHttpTtsProvider)  # the loader picks the HTTP path
    made.append(provider)
    return provider


async def test_audio_of_each_sentence_in_order(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    provider = make_provider(providers, fake)
    assert (provider.audio_format.rate, provider.audio_format.width) == (24000, 2)
    assert provider.audio_format.channels == 1 and provider.model == MODEL
    before = len(fake.requests)
    audio = await speak(provider, "客厅的灯", "已经打开了。还有", "别的吗？")
    assert audio == audio_for("客厅的灯已经打开了。") + audio_for("还有别的吗？")
    assert len(audio) == 2 * 24000 * 0.04 * 16  # 40 ms per character
    sent = fake.requests[before:]  # both sentences were known at once: sent together
    assert sorted(r.text for r in sent) == sorted(["客厅的灯已经打开了。", "还有别的吗？"])
    assert all(r.finished and r.model == MODEL for r in sent)
    assert sent[0].headers["Authorization"] == f"Bearer {KEY}"
    assert sent[0].headers["X-DashScope-SSE"] == "enable"


async def test_voice_and_language_type_reach_the_service(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    provider = make_provider(providers, fake, voice="Ethan", language_type="English")
    assert provider.voices[0].name == "Ethan"
    await speak(provider, "Hello there.")
    assert (fake.requests[-1].voice, fake.requests[-1].language_type) == ("Ethan", "English")
    await speak(provider, "Hi.", voice="Jennifer")  # the request's voice wins
    assert fake.requests[-1].voice == "Jennifer"


async def test_defaults_the_model_voice_and_the_service_language(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    await speak(make_provider(providers, fake, model="qwen-tts"), "好。")
    request = fake.requests[-1]
    assert (request.model, request.voice, request.language_type) == ("qwen-tts", "Cherry", None)


def test_each_model_offers_its_voices(fake: FakeDashScopeHttp):
    config = DashScopeConfig(http_url=fake.url, tts=DashScopeTts(model=MODEL))
    qwen3 = QwenHttpTtsProvider(config, Credentials(KEY, HINT), None)
    names = [voice.name for voice in qwen3.voices]
    assert names[0] == "Cherry" and {"Serena", "Ethan", "Ryan", "Katerina", "Elias"} <= set(names)
    assert "en" in qwen3.voices[0].languages and "de" in qwen3.voices[0].languages
    old = DashScopeConfig(http_url=fake.url, tts=DashScopeTts(model="qwen-tts", voice="Serena"))
    qwen = QwenHttpTtsProvider(old, Credentials(KEY, HINT), None)
    assert [v.name for v in qwen.voices] == ["Serena", "Cherry", "Ethan", "Chelsie"]
    assert qwen.voices[0].languages == ("zh", "en")


async def test_first_audio_comes_before_the_last_sentence_is_written(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    provider = make_provider(providers, fake)
    last_written = asyncio.Event()

    async def slow_text() -> AsyncIterator[str]:
        yield "第一句。"
        await asyncio.sleep(0.5)  # the language model is still writing
        yield "第二句。"
        last_written.set()

    stream = provider.synthesize(slow_text(), SynthesisOptions())
    first = await anext(stream)
    assert first and not last_written.is_set()
    rest = b"".join([chunk async for chunk in stream])
    assert first + rest == audio_for("第一句。") + audio_for("第二句。")


async def test_the_next_sentence_is_requested_while_the_current_one_streams(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    fake.interval = 0.1  # 100 ms of audio every 100 ms: about 0.4 s for a 10-character sentence
    provider = make_provider(providers, fake)
    before = len(fake.requests)

    async def text() -> AsyncIterator[str]:
        yield "第一句话比较长一些。"
        await asyncio.sleep(0.1)
        yield "第二句。"

    audio = b"".join([c async for c in provider.synthesize(text(), SynthesisOptions())])
    assert audio == audio_for("第一句话比较长一些。") + audio_for("第二句。")
    first, second = fake.requests[before:]
    assert first.finished_at is not None and second.started_at < first.finished_at


async def test_closing_the_stream_early_closes_the_connection(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    fake.interval = 0.05
    provider = make_provider(providers, fake)
    stream = provider.synthesize(pieces("一段很长的文字，" * 10 + "。"), SynthesisOptions())
    assert await anext(stream)
    await stream.aclose()
    request = fake.requests[-1]
    assert await wait_for(lambda: request.client_closed, 1.0)
    assert not request.finished and len(request.audio) < len(audio_for(request.text))
    assert await wait_for(lambda: fake.open_requests == 0, 1.0)
    assert await speak(provider, "好。") == audio_for("好。")  # the provider still works


async def test_blank_text_sends_nothing(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    before = len(fake.requests)
    assert await speak(make_provider(providers, fake), "", " \n") == b""
    assert len(fake.requests) == before


# --- failures ------------------------------------------------------------------------


async def test_a_rejected_key(fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]):
    provider = make_provider(providers, fake, key="wrong-secret-key")
    error, elapsed = await failure(speak(provider, "你好。"))
    assert error.code == ErrorCode.AUTH_FAILED and elapsed < 0.5
    assert "DashScope rejected the API key (HTTP 401)" in error.message
    assert "wrong-secret-key" not in error.message and AUTH_MESSAGE not in error.message


async def test_without_a_key(fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]):
    before = len(fake.requests)
    error, _ = await failure(speak(make_provider(providers, fake, key=""), "你好。"))
    assert error.code == ErrorCode.MISSING_CREDENTIALS and HINT in error.message
    assert len(fake.requests) == before


@pytest.mark.parametrize(
    ("fault", "code", "within"),
    [
        ("auth", ErrorCode.AUTH_FAILED, 0.5),
        ("refuse", ErrorCode.CONNECT_FAILED, 0.5),
        ("stall", ErrorCode.TIMEOUT, 0.5 + 0.4),
        ("drop", ErrorCode.PROVIDER_FAILED, 0.5),
        ("error", ErrorCode.PROVIDER_FAILED, 0.5),
    ],
)
async def test_faults_then_recovery(
    fake: FakeDashScopeHttp,
    providers: list[QwenHttpTtsProvider],
    fault: str,
    code: ErrorCode,
    within: float,
):
    fake.fault = fault
    provider = make_provider(providers, fake, connect=0.5, first_result=0.5, total=4.0)
    error, elapsed = await failure(speak(provider, "你好，", "今天天气很好。"))
    assert error.code == code, error.message
    assert elapsed < within and KEY not in error.message
    if fault == "stall":
        assert "no answer within 0.5 s" in error.message
        request = fake.requests[-1]
        assert await wait_for(lambda: request.client_closed, 1.0)  # its connection is cut
    if fault == "error":
        assert ERROR_MESSAGE in error.message
    if fault == "refuse":
        assert fake.url in error.message
    fake.fault = None
    assert await speak(provider, "好的。") == audio_for("好的。")


async def test_total_deadline(fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]):
    fake.interval = 0.2
    provider = make_provider(providers, fake, first_result=1.0, total=0.6)
    error, elapsed = await failure(speak(provider, "一段很长的文字。"))
    assert error.code == ErrorCode.TIMEOUT and "not finished within 0.6 s" in error.message
    assert elapsed < 0.9


async def test_a_slow_first_answer_within_the_deadline(
    fake: FakeDashScopeHttp, providers: list[QwenHttpTtsProvider]
):
    fake.delay = 0.3
    started = time.monotonic()
    audio = await speak(make_provider(providers, fake, first_result=1.0), "好。")
    assert audio == audio_for("好。") and time.monotonic() - started >= 0.3


def test_fake_runs_as_a_process():
    line = fake_process_ready_line("tests.fakes.dashscope_http", "--fault", "stall")
    assert line.startswith("READY http://127.0.0.1:") and line.endswith("/api/v1")
    assert PATH.startswith("/api/v1/")
