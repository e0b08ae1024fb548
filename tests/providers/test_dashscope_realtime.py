"""The Qwen realtime providers, with the real SDK, against the fake DashScope realtime endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from satellite.config import FailoverConfig
from satellite.config_base import Timeouts
from satellite.errors import ErrorCode, ProviderError
from satellite.provider_specs.azure import AzureConfig, AzureTts
from satellite.provider_specs.dashscope import DashScopeAsr, DashScopeConfig, DashScopeTts
from satellite.providers.azure_asr import AzureAsrProvider
from satellite.providers.azure_tts import AzureTtsProvider
from satellite.providers.base import Credentials, SynthesisOptions
from satellite.providers.dashscope_realtime_asr import QwenRealtimeAsrProvider
from satellite.providers.dashscope_realtime_tts import QwenRealtimeTtsProvider
from satellite.providers.failover import FailoverAsr, FailoverTts
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.fakes.dashscope_realtime import ERROR_MESSAGE, FakeDashScopeRealtime, FakeSession
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
ASR_MODEL = "qwen3-asr-flash-realtime"
TTS_MODEL = "qwen3-tts-flash-realtime"
TRANSCRIPT = "打开客厅的灯。"
KINDS = ("recognition", "synthesis")

Provider = QwenRealtimeAsrProvider | QwenRealtimeTtsProvider


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScopeRealtime]:
    with FakeDashScopeRealtime(api_key=KEY) as server:
        yield server


@pytest.fixture(autouse=True)
def healthy_fake(fake: FakeDashScopeRealtime) -> Iterator[None]:
    """Each test starts with a fault-free fake and leaves it so."""
    fake.fault, fake.delay, fake.transcript = None, 0.0, TRANSCRIPT
    yield
    fake.fault, fake.delay, fake.transcript = None, 0.0, TRANSCRIPT


@pytest.fixture
async def providers() -> AsyncIterator[list[Provider]]:
    """Providers made by a test are closed after it (their warm connections with them)."""
    made: list[Provider] = []
    yield made
    for provider in made:
        await provider.close()


def make_config(
    fake: FakeDashScopeRealtime,
    *,
    connect: float = 2.0,
    first_result: float = 3.0,
    total: float = 10.0,
    realtime_url: str | None = None,
    warm_connections: int = 0,
    **settings: object,
) -> DashScopeConfig:
    settings.setdefault("asr", DashScopeAsr(model=ASR_MODEL))
    settings.setdefault("tts", DashScopeTts(model=TTS_MODEL))
    return DashScopeConfig(
        realtime_url=realtime_url or fake.url,
        timeouts=Timeouts(connect=connect, first_result=first_result, total=total),
        warm_connections=warm_connections,
        **settings,
    )


def asr_provider(
    made: list[Provider],
    fake: FakeDashScopeRealtime,
    key: str = KEY,
    language: str | None = "zh",
    **settings: object,
) -> QwenRealtimeAsrProvider:
    config = make_config(fake, **settings)
    provider = QwenRealtimeAsrProvider(config, Credentials(key, HINT), language)
    made.append(provider)
    return provider


def tts_provider(
    made: list[Provider],
    fake: FakeDashScopeRealtime,
    key: str = KEY,
    voice: str | None = None,
    **settings: object,
) -> QwenRealtimeTtsProvider:
    config = make_config(fake, **settings)
    provider = QwenRealtimeTtsProvider(config, Credentials(key, HINT), voice)
    made.append(provider)
    return provider


def speech(seconds: float, seed: int = 0) -> bytes:
    """Never a whole chunk of zeros: the fake hears it as speech."""
    return bytes((i * 7 + seed) % 251 for i in range(int(32000 * seconds)))


def silence(seconds: float) -> bytes:
    return bytes(int(32000 * seconds))


def expected_audio(texts: list[str], rate: int = 24000) -> bytes:
    return b"".join(FakeDashScope.tts_audio_for(text, rate) for text in texts)


def sdk_threads() -> list[str]:
    """The SDK's websocket threads (``Thread-N (run_forever)``)."""
    return [t.name for t in threading.enumerate() if "run_forever" in t.name]


def own_threads() -> int:
    """Threads of the process, without the shared pool's workers (reused, never ended)."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("sdk-call"))


def open_sockets() -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


async def check_sdk_threads_end(timeout: float = 5.0) -> None:
    assert await wait_for(lambda: not sdk_threads(), timeout), sdk_threads()


# --- recognition -------------------------------------------------------------------


async def test_manual_commit_sends_exact_audio_and_returns_the_transcript(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    provider = asr_provider(providers, fake, asr=DashScopeAsr(model=ASR_MODEL, languages=("en",)))
    assert provider.languages == ("zh", "en") and provider.model == ASR_MODEL
    audio = speech(1.0)
    assert await transcribe(provider, audio, "en-US") == TRANSCRIPT
    session = fake.requests[-1]
    assert bytes(session.audio) == audio and session.model == ASR_MODEL
    update = session.updates[0]
    assert update["input_audio_transcription"] == {"language": "en"}
    assert (update["sample_rate"], update["input_audio_format"]) == (16000, "pcm")
    assert update["modalities"] == ["text"] and update["turn_detection"] is None
    assert await wait_for(lambda: session.finished)  # the session is ended after the result
    events = session.client_events
    assert events[0] == "session.update" and events[-2:] == [
        "input_audio_buffer.commit",
        "session.finish",
    ]
    assert events.count("input_audio_buffer.append") == 10


async def test_default_language_hint(fake: FakeDashScopeRealtime, providers: list[Provider]):
    assert await transcribe(asr_provider(providers, fake, language="zh-CN"), speech(0.2))
    assert fake.requests[-1].updates[0]["input_audio_transcription"] == {"language": "zh"}


async def test_auto_language_lets_the_model_identify_it(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    """speech.asr.language: auto: no language is named, the transcript says what was heard,
    and a language the client sends still wins."""
    fake.spoken_language = "en"
    provider = asr_provider(providers, fake, language="auto")
    assert "auto" not in provider.languages
    session = await provider.open(None)
    await session.send(speech(0.2))
    result = await session.finish()
    assert result.text == TRANSCRIPT and result.language == "en"
    assert fake.requests[-1].updates[0]["input_audio_transcription"] == {}
    assert await transcribe(provider, speech(0.2), "zh-CN") == TRANSCRIPT
    assert fake.requests[-1].updates[0]["input_audio_transcription"] == {"language": "zh"}


async def test_partials_grow_while_audio_streams(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    partials: list[str] = []
    session = await asr_provider(providers, fake).open(None, partials.append)
    try:
        audio = speech(0.5)
        for offset in range(0, len(audio), 1600):
            await session.send(audio[offset : offset + 1600])
        # Partials (text + stash) arrive before the audio ends; send() reports them.
        assert await wait_for(lambda: len(fake.requests[-1].audio) == len(audio))
        await asyncio.sleep(0.1)
        await session.send(b"")
        before_finish = list(partials)
        assert (await session.finish()).text == TRANSCRIPT
    finally:
        await session.cancel()
    assert len(before_finish) >= 3
    assert before_finish == [TRANSCRIPT[: n + 1] for n in range(len(before_finish))]
    assert partials[-1] == TRANSCRIPT


async def test_turn_detection_joins_every_turn_in_order(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    fake.transcript = ["打开客厅的灯。", "关上窗帘。"]
    asr = DashScopeAsr(model=ASR_MODEL, turn_detection=True, turn_detection_silence_ms=400)
    provider = asr_provider(providers, fake, asr=asr)
    audio = speech(0.5) + silence(0.6) + speech(0.5, 1) + silence(0.2)
    assert await transcribe(provider, audio) == "打开客厅的灯。关上窗帘。"
    session = fake.requests[-1]
    assert session.updates[0]["turn_detection"]["silence_duration_ms"] == 400
    assert bytes(session.audio) == audio
    # The server committed the first turn; the client committed only the rest.
    assert session.client_events.count("input_audio_buffer.commit") == 1


async def test_turn_detection_without_a_final_commit(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    """Once the server has committed every turn and no audio followed, the client does not
    commit: it waits for the outstanding transcript."""
    fake.transcript, fake.delay = ["一。", "二。"], 0.3
    asr = DashScopeAsr(model=ASR_MODEL, turn_detection=True, turn_detection_silence_ms=400)
    session = await asr_provider(providers, fake, asr=asr).open(None)
    try:
        for chunk in (speech(0.2), silence(0.4), speech(0.2, 1), silence(0.4)):
            await session.send(chunk)
        request = fake.requests[-1]
        commits = request.server_events.count
        assert await wait_for(lambda: commits("input_audio_buffer.committed") == 2)
        await asyncio.sleep(0.2)  # the second commit has come, its transcript is delayed
        assert (await session.finish()).text == "一。二。"
    finally:
        await session.cancel()
    assert "input_audio_buffer.commit" not in request.client_events


async def test_turn_detection_when_the_last_turn_ends_with_the_audio(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    """Audio ending with a full pause: the server ends the last turn itself, possibly while
    the client's own commit is on its way (answered then by an empty-buffer error)."""
    fake.transcript = ["一。", "二。"]
    asr = DashScopeAsr(model=ASR_MODEL, turn_detection=True, turn_detection_silence_ms=400)
    provider = asr_provider(providers, fake, asr=asr)
    audio = speech(0.3) + silence(0.4) + speech(0.3, 1) + silence(0.4)
    for _ in range(3):
        assert await transcribe(provider, audio) == "一。二。"


async def test_no_audio_no_commit(fake: FakeDashScopeRealtime, providers: list[Provider]):
    assert await transcribe(asr_provider(providers, fake), b"") == ""
    assert "input_audio_buffer.commit" not in fake.requests[-1].client_events


async def test_concurrent_recognitions(fake: FakeDashScopeRealtime, providers: list[Provider]):
    provider = asr_provider(providers, fake, warm_connections=1)
    await provider.prepare()
    audios = [speech(0.3, seed) for seed in range(6)]
    before = len(fake.requests)
    texts = await asyncio.gather(*(transcribe(provider, audio) for audio in audios))
    assert texts == [TRANSCRIPT] * 6
    assert sorted(bytes(s.audio) for s in fake.requests[before:]) == sorted(audios)


async def test_cancelled_recognition_releases_the_session(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    fake.fault = "stall"
    session = await asr_provider(providers, fake).open(None)
    await session.send(speech(0.2))
    await session.cancel()
    await check_sdk_threads_end(2.0)


# --- synthesis ---------------------------------------------------------------------


async def test_server_commit_streams_text_and_yields_the_audio(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    tts = DashScopeTts(
        model=TTS_MODEL,
        speech_rate=1.2,
        pitch=0.9,
        volume=70,
        language_type="Chinese",
        instructions="Speak calmly.",
    )
    provider = tts_provider(providers, fake, tts=tts)
    audio = await speak(provider, "", "今天天气", "很好。", " ", "Hello there.")
    session = fake.requests[-1]
    assert session.synthesized == ["今天天气很好。", "Hello there."]
    assert audio == expected_audio(["今天天气很好。", "Hello there."])
    assert session.texts == ["今天天气", "很好。", " ", "Hello there."]
    assert session.client_events == [
        "session.update",
        *["input_text_buffer.append"] * 4,
        "session.finish",
    ]
    update = session.updates[0]
    assert update["voice"] == "Cherry" and update["mode"] == "server_commit"
    assert (update["response_format"], update["sample_rate"]) == ("pcm", 24000)
    assert (update["speech_rate"], update["pitch_rate"], update["volume"]) == (1.2, 0.9, 70)
    assert (update["language_type"], update["instructions"]) == ("Chinese", "Speak calmly.")
    assert provider.audio_format.rate == 24000 and provider.model == TTS_MODEL


async def test_unset_options_are_not_sent(fake: FakeDashScopeRealtime, providers: list[Provider]):
    await speak(tts_provider(providers, fake), "好。")
    update = fake.requests[-1].updates[0]
    assert "language_type" not in update and "instructions" not in update


async def test_commit_mode_commits_each_sentence(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    tts = DashScopeTts(model="qwen-tts-realtime", mode="commit", sample_rate=16000)
    provider = tts_provider(providers, fake, voice="Ethan", tts=tts)
    audio = await speak(provider, "第一", "句。第二", "句")
    session = fake.requests[-1]
    assert session.texts == ["第一句。", "第二句"] == session.synthesized
    assert session.client_events == [
        "session.update",
        *["input_text_buffer.append", "input_text_buffer.commit"] * 2,
        "session.finish",
    ]
    assert (session.updates[0]["mode"], session.updates[0]["voice"]) == ("commit", "Ethan")
    assert audio == expected_audio(["第一句。", "第二句"], 16000)
    assert provider.audio_format.rate == 16000


async def test_audio_flows_before_all_text_is_sent(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    provider = tts_provider(providers, fake)
    first_audio = asyncio.Event()

    async def slow_text() -> AsyncIterator[str]:
        yield "第一句。"
        await asyncio.wait_for(first_audio.wait(), 5)  # only once audio has come back
        yield "第二句。"

    chunks = []
    async for chunk in provider.synthesize(slow_text(), SynthesisOptions(voice="Serena")):
        chunks.append(chunk)
        first_audio.set()
    assert b"".join(chunks) == expected_audio(["第一句。", "第二句。"])
    assert fake.requests[-1].updates[0]["voice"] == "Serena"


def test_voices(fake: FakeDashScopeRealtime):
    config = make_config(fake, tts=DashScopeTts(model=TTS_MODEL, voices={"my-clone": ("zh",)}))
    voices = QwenRealtimeTtsProvider(config, Credentials(KEY, HINT), None).voices
    names = [voice.name for voice in voices]
    assert names[0] == "Cherry" and {"Serena", "Ethan", "Chelsie", "Jennifer"} <= set(names)
    assert "my-clone" in names and len(names) == len(set(names))
    assert voices[0].description and "ja" in voices[0].languages
    old = make_config(fake, tts=DashScopeTts(model="qwen-tts-realtime", voice="Ethan"))
    voices = QwenRealtimeTtsProvider(old, Credentials(KEY, HINT), None).voices
    assert [v.name for v in voices] == ["Ethan", "Cherry", "Serena", "Chelsie"]
    assert all(v.languages == ("zh", "en") for v in voices)
    custom = QwenRealtimeTtsProvider(old, Credentials(KEY, HINT), "qwen-tts-vc-abc").voices
    assert custom[0].name == "qwen-tts-vc-abc" and custom[0].languages


async def test_no_text_no_connection(fake: FakeDashScopeRealtime, providers: list[Provider]):
    before = len(fake.sessions)
    assert await speak(tts_provider(providers, fake), "", " \n") == b""
    assert await speak(tts_provider(providers, fake)) == b""
    assert len(fake.sessions) == before


async def test_consumer_stopping_early_cancels_the_synthesis(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    provider = tts_provider(providers, fake)
    stream = provider.synthesize(pieces("一段很长的文字。" * 10), SynthesisOptions())
    assert await anext(stream)
    await stream.aclose()
    await check_sdk_threads_end(2.0)
    assert await speak(provider, "好。") == expected_audio(["好。"])


async def test_first_audio_is_timed_once_per_session(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    before = len(fake.first_audio_sent)
    started = time.monotonic()
    audio = await speak(tts_provider(providers, fake), "第一句。", "第二句。")
    assert audio == expected_audio(["第一句。", "第二句。"])
    assert len(fake.first_audio_sent) == before + 1
    assert started < fake.first_audio_sent[-1] < time.monotonic()


# --- faults, in recognition and in synthesis ----------------------------------------


async def make_request(provider: Provider) -> object:
    """The recognition or synthesis that a fault breaks."""
    if isinstance(provider, QwenRealtimeAsrProvider):
        return await transcribe(provider, speech(0.5))
    return await speak(provider, "你好，", "今天天气很好。")


async def check_works(provider: Provider) -> None:
    if isinstance(provider, QwenRealtimeAsrProvider):
        assert await transcribe(provider, speech(0.3)) == TRANSCRIPT
    else:
        assert await speak(provider, "好的。") == expected_audio(["好的。"])


def provider_for(
    kind: str, made: list[Provider], fake: FakeDashScopeRealtime, **settings: object
) -> Provider:
    if kind == "recognition":
        return asr_provider(made, fake, **settings)
    return tts_provider(made, fake, **settings)


async def check_fault(
    fake: FakeDashScopeRealtime,
    made: list[Provider],
    kind: str,
    fault: str | None,
    codes: set[ErrorCode],
    within: float,
    key: str = KEY,
) -> ProviderError:
    """The request fails as expected within ``within`` seconds; then, healthy, the same
    provider works."""
    fake.fault = fault
    provider = provider_for(
        kind, made, fake, key=key, connect=1.0, first_result=0.5, total=4.0, warm_connections=1
    )
    error, elapsed = await failure(make_request(provider))
    assert elapsed < within
    assert error.code in codes, error.message
    assert KEY not in error.message and "wrong-secret" not in error.message
    fake.fault = None
    if key == KEY:
        await check_works(provider)
    return error


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("fault", "codes", "within"),
    [
        ("refuse", {ErrorCode.CONNECT_FAILED}, 0.5),
        ("auth", {ErrorCode.AUTH_FAILED}, 0.5),
        ("error", {ErrorCode.PROVIDER_FAILED}, 0.5),
        ("stall", {ErrorCode.TIMEOUT}, 0.5 + 0.5),
        ("drop", {ErrorCode.PROVIDER_FAILED}, 0.5),
        ("garbage", {ErrorCode.PROVIDER_FAILED}, 0.5),
    ],
)
async def test_faults_then_recovery(
    fake: FakeDashScopeRealtime,
    providers: list[Provider],
    kind: str,
    fault: str,
    codes: set[ErrorCode],
    within: float,
):
    error = await check_fault(fake, providers, kind, fault, codes, within)
    if fault == "error":
        assert ERROR_MESSAGE in error.message
    if fault == "stall":
        assert "0.5 s" in error.message


async def test_failed_transcription(fake: FakeDashScopeRealtime, providers: list[Provider]):
    error = await check_fault(
        fake, providers, "recognition", "failed", {ErrorCode.PROVIDER_FAILED}, 0.5
    )
    assert ERROR_MESSAGE in error.message


@pytest.mark.parametrize("kind", KINDS)
async def test_with_a_wrong_key(fake: FakeDashScopeRealtime, providers: list[Provider], kind: str):
    await check_fault(fake, providers, kind, None, {ErrorCode.AUTH_FAILED}, 0.5, "wrong-secret")


@pytest.mark.parametrize("kind", KINDS)
async def test_without_a_key(fake: FakeDashScopeRealtime, providers: list[Provider], kind: str):
    before = len(fake.sessions)
    provider = provider_for(kind, providers, fake, key="", warm_connections=1)
    await provider.prepare()  # never raises; no key, no connection
    error, _ = await failure(make_request(provider))
    assert error.code == ErrorCode.MISSING_CREDENTIALS and HINT in error.message
    assert len(fake.sessions) == before


@pytest.mark.parametrize("kind", KINDS)
async def test_total_deadline(fake: FakeDashScopeRealtime, providers: list[Provider], kind: str):
    fake.delay = 2.0
    provider = provider_for(kind, providers, fake, first_result=5.0, total=1.0)
    error, elapsed = await failure(make_request(provider))
    assert error.code == ErrorCode.TIMEOUT and "1 s" in error.message
    assert elapsed < 1.5


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A server that accepts TCP connections and never answers the websocket handshake."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}/api-ws/v1/realtime"


@pytest.mark.parametrize("kind", KINDS)
async def test_without_handshake(
    fake: FakeDashScopeRealtime, providers: list[Provider], silent_url: str, kind: str
):
    provider = provider_for(kind, providers, fake, connect=0.5, realtime_url=silent_url)
    error, elapsed = await failure(make_request(provider))
    assert error.code == ErrorCode.CONNECT_FAILED and "0.5 s" in error.message
    assert elapsed < 1.0
    await check_sdk_threads_end(2.0)


# --- warm connections ----------------------------------------------------------------


def served_by(fake: FakeDashScopeRealtime, before: int) -> list[FakeSession]:
    """The sessions that served requests since ``before`` requests."""
    return fake.requests[before:]


def numbers(sessions: list[FakeSession]) -> list[int]:
    return [session.number for session in sessions]


@pytest.mark.parametrize("kind", KINDS)
async def test_warm_connection_is_used_and_replaced(
    fake: FakeDashScopeRealtime, providers: list[Provider], kind: str
):
    provider = provider_for(kind, providers, fake, warm_connections=1)
    opened = len(fake.sessions)
    await provider.prepare()
    assert len(fake.sessions) == opened + 1  # prepare() returns once it is open
    warm = fake.sessions[-1]
    assert not warm.client_events  # idle: opened, not configured
    requests = len(fake.requests)
    await check_works(provider)
    assert numbers(served_by(fake, requests)) == [warm.number]  # no connect for the request
    # A spare one replaces it in the background (prepare() waits for it), and serves the
    # next request.
    await provider.prepare()
    assert len(fake.sessions) == opened + 2
    spare = fake.sessions[-1]
    assert await wait_for(lambda: fake.open_connections == 1)  # the used one is closed
    await check_works(provider)
    assert numbers(served_by(fake, requests)) == [warm.number, spare.number]
    assert await wait_for(lambda: len(fake.sessions) == opened + 3)
    await asyncio.sleep(0.2)
    assert len(fake.sessions) == opened + 3 and fake.open_connections == 1  # bounded


@pytest.mark.parametrize("kind", KINDS)
async def test_warm_connection_closed_by_the_server_is_replaced(
    fake: FakeDashScopeRealtime, providers: list[Provider], kind: str
):
    provider = provider_for(kind, providers, fake, warm_connections=1)
    await provider.prepare()
    warm = fake.sessions[-1]
    fake.close_connections()
    assert await wait_for(lambda: fake.open_connections == 0)
    requests = len(fake.requests)
    await check_works(provider)
    (used,) = served_by(fake, requests)
    assert used.number > warm.number and not warm.client_events


async def test_close_ends_every_warm_connection(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    asr = asr_provider(providers, fake, warm_connections=2)
    tts = tts_provider(providers, fake, warm_connections=2)
    await asyncio.gather(asr.prepare(), tts.prepare())
    assert fake.open_connections == 4 and len(sdk_threads()) == 4
    await asr.close()
    await tts.close()
    assert await wait_for(lambda: fake.open_connections == 0)
    await check_sdk_threads_end(2.0)


async def test_fifty_requests_leave_no_threads_or_sockets(
    fake: FakeDashScopeRealtime, providers: list[Provider]
):
    asr = asr_provider(providers, fake, warm_connections=1)
    tts = tts_provider(providers, fake, warm_connections=1)
    await asyncio.gather(asr.prepare(), tts.prepare())
    await check_works(asr)  # the pool's workers, the loop's sockets: started once
    await check_works(tts)

    def settled() -> bool:
        return fake.open_connections == 2 and len(sdk_threads()) == 2

    assert await wait_for(settled)
    threads, sockets = own_threads(), open_sockets()
    for number in range(25):
        assert await transcribe(asr, speech(0.1, number)) == TRANSCRIPT
        assert await speak(tts, f"第{number}句。") == expected_audio([f"第{number}句。"])
    assert await wait_for(lambda: settled() and own_threads() == threads, 5.0), sdk_threads()
    assert await wait_for(lambda: open_sockets() == sockets, 5.0), (open_sockets(), sockets)


# --- the fake as a process ---------------------------------------------------------


def test_fake_runs_as_a_process():
    line = fake_process_ready_line("tests.fakes.dashscope_realtime", "--delay", "0.1")
    assert line.startswith("READY ws://127.0.0.1:") and line.endswith("/api-ws/v1/realtime")


# --- in a failover list ----------------------------------------------------------


async def utterance_after_a_partial(asr: FailoverAsr, partials: list[str]) -> str:
    """100 ms of speech, then (once a partial has come) the rest of a second of it."""
    session = await asr.open("zh", partials.append)
    await session.send(speech(0.1))
    for _ in range(300):  # events are picked up as audio is sent
        if partials:
            break
        await session.send(b"")
        await asyncio.sleep(0.01)
    await session.send(speech(0.9, seed=1))
    return (await session.finish()).text


async def test_failover_list_ends_a_request_that_failed_mid_stream(fake, providers):
    """Audio already sent cannot be taken back: the next provider is not asked."""
    fake.fault = "drop"  # cut after the first partial / the first audio delta
    with FakeAzure() as azure:
        azure_config = AzureConfig(host=azure.host, tts=AzureTts(voice="zh-CN-XiaoxiaoNeural"))
        credentials = Credentials("test-azure-key", "set AZURE_SPEECH_KEY")
        tts = FailoverTts(
            [tts_provider(providers, fake), AzureTtsProvider(azure_config, credentials, None)],
            FailoverConfig(),
        )
        audio: list[bytes] = []
        heard = asyncio.Event()

        async def text() -> AsyncIterator[str]:
            yield "你好。"
            await heard.wait()  # more text only once audio has reached the client
            yield "今天天气很好。"

        with pytest.raises(ProviderError) as caught:
            async for chunk in tts.synthesize(text(), SynthesisOptions()):
                audio.append(chunk)
                heard.set()
        assert audio and caught.value.code == ErrorCode.PROVIDER_FAILED
        partials: list[str] = []
        asr = FailoverAsr(
            [asr_provider(providers, fake), AzureAsrProvider(azure_config, credentials, "zh")],
            FailoverConfig(),
        )
        error, _ = await failure(utterance_after_a_partial(asr, partials))
        assert partials and error.code == ErrorCode.PROVIDER_FAILED
        await tts.close()
        assert azure.received_ssml == [] and azure.received_audio == []
