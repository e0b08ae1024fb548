"""The Azure providers, real SDK against the fake USP service in tests/fakes/azure.py."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from typing import Any

import azure.cognitiveservices.speech as speechsdk
import numpy as np
import pytest
import soundfile

from satellite.config_base import Timeouts
from satellite.errors import ErrorCode, ProviderError
from satellite.provider_specs.azure import AzureAsr, AzureConfig, AzureTts
from satellite.providers.azure_asr import AzureAsrProvider, advertised_languages
from satellite.providers.azure_common import Cancellation, speech_config
from satellite.providers.azure_tts import AzureTtsProvider
from satellite.providers.base import Credentials, EncodedAudio, SynthesisOptions
from satellite.providers.text import SentenceSplitter, join_phrases
from tests.fakes.azure import FakeAzure
from tests.providers.common import failure, fake_process_ready_line, pieces, wait_for

pytestmark = pytest.mark.timeout(60)

KEY = "test-azure-key"
HINT = "set the environment variable AZURE_SPEECH_KEY"
CREDENTIALS = Credentials(key=KEY, hint=HINT)
FAST = Timeouts(connect=3, first_result=3, total=20)
TIGHT = Timeouts(connect=3, first_result=0.5, total=20)
SSML_NS = "{http://www.w3.org/2001/10/synthesis}"
# Each fault, and the error it makes.
FAULT_CODES = pytest.mark.parametrize(
    ("fault", "code"),
    [
        ("auth", ErrorCode.AUTH_FAILED),
        ("refuse", ErrorCode.CONNECT_FAILED),
        ("error", ErrorCode.PROVIDER_FAILED),
        ("stall", ErrorCode.TIMEOUT),
        ("drop", ErrorCode.PROVIDER_FAILED),
    ],
)


@pytest.fixture
def fake() -> Iterator[FakeAzure]:
    with FakeAzure() as server:
        yield server


def azure_config(fake: FakeAzure, timeouts: Timeouts = FAST, **fields: Any) -> AzureConfig:
    return AzureConfig(host=fake.host, timeouts=timeouts, **fields)


def speech(seconds: float, seed: int = 1) -> bytes:
    """Noise-like 16 kHz s16le PCM, different for every seed."""
    samples = np.random.default_rng(seed).integers(-3000, 3000, int(16000 * seconds))
    return samples.astype("<i2").tobytes()


async def transcribe(
    provider: AzureAsrProvider, pcm: bytes, language: str | None = None, chunk: int = 1000
) -> str:
    session = await provider.open(language)
    for start in range(0, len(pcm), chunk):
        await session.send(pcm[start : start + chunk])
    return (await session.finish()).text


async def speak(
    provider: AzureTtsProvider, *texts: str, voice: str | None = None, ssml: bool = False
) -> list[bytes]:
    options = SynthesisOptions(voice=voice, ssml=ssml)
    return [chunk async for chunk in provider.synthesize(pieces(*texts), options)]


def expected_audio(fake: FakeAzure, rate: int = 24000) -> bytes:
    return b"".join(FakeAzure.tts_audio_for(ssml, rate) for ssml in fake.received_ssml)


def spoken_texts(fake: FakeAzure) -> list[str]:
    return ["".join(ET.fromstring(ssml).itertext()) for ssml in fake.received_ssml]


def check_error(error: ProviderError, *codes: ErrorCode) -> None:
    assert error.code in codes, f"{error.code}: {error.message}"
    for key in (KEY, "wrong-secret-key"):
        assert key not in error.message


def native_threads() -> int:
    """OS threads not created by Python: those of the Speech SDK."""
    return len(os.listdir("/proc/self/task")) - threading.active_count()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def resources(seconds: float = 0.5) -> tuple[int, int]:
    """SDK threads and open file descriptors, once detached releases have had time to run."""
    await asyncio.sleep(seconds)
    return native_threads(), open_fds()


async def check_settles_to(baseline: tuple[int, int], seconds: float = 5.0) -> None:
    """Threads and descriptors come back to ``baseline`` (detached releases run late)."""
    settled = await wait_for(
        lambda: native_threads() <= baseline[0] and open_fds() <= baseline[1], seconds
    )
    assert settled, (baseline, native_threads(), open_fds())


@contextlib.asynccontextmanager
async def tts_provider(
    config: AzureConfig, credentials: Credentials = CREDENTIALS
) -> AsyncIterator[AzureTtsProvider]:
    provider = AzureTtsProvider(config, credentials, None)
    try:
        yield provider
    finally:
        await provider.close()


# --- ASR ---------------------------------------------------------------------


async def test_asr_streams_audio_and_joins_every_phrase(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, "en")
    pcm = speech(1.0)
    session = await provider.open("en-US")
    for start in range(0, len(pcm), 1000):
        await session.send(pcm[start : start + 1000])
    assert await wait_for(lambda: fake.streamed_bytes == len(pcm))  # streamed before finish()
    assert (await session.finish()).text == "Turn on the light. And close the blinds."
    assert fake.received_audio == [pcm]
    assert fake.languages == ["en-US"]
    assert fake.modes == ["conversation"]


async def test_asr_reports_growing_hypotheses_while_audio_streams(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, "en")
    partials: list[str] = []
    session = await provider.open("en-US", partials.append)
    pcm = speech(1.0)
    for start in range(0, len(pcm), 1000):  # paced as a live stream: hypotheses arrive meanwhile
        await session.send(pcm[start : start + 1000])
        await asyncio.sleep(0.01)
    assert partials[:2] == ["Turn", "Turn on"]  # before finish()
    assert (await session.finish()).text == "Turn on the light. And close the blinds."
    assert partials[-1] == "Turn on the light. And close the blinds."


async def test_asr_joins_cjk_without_spaces_and_skips_no_match(fake: FakeAzure) -> None:
    fake.phrases = ["打开灯。", "", "Hello", "世界", "and bye"]
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, "zh")
    assert await transcribe(provider, speech(0.5), None) == "打开灯。Hello世界and bye"
    assert fake.languages == ["zh-CN"]


async def test_asr_reports_the_mean_confidence_of_its_phrases(fake: FakeAzure) -> None:
    fake.confidences = [0.9, 0.6]
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, "en")
    session = await provider.open("en-US")
    await session.send(speech(0.3))
    result = await session.finish()
    assert result.text == "Turn on the light. And close the blinds."
    assert result.confidence == pytest.approx(0.75)
    assert result.language is None  # the client named it: nothing was identified
    assert fake.queries[-1]["format"] == ["detailed"]


async def test_asr_identifies_the_language_among_the_configured_locales(fake: FakeAzure) -> None:
    """speech.asr.language: auto and no language from the client: the service picks one of
    providers.azure.asr.languages, and the result says which."""
    fake.spoken_language = "en-US"
    config = azure_config(fake, asr=AzureAsr(languages=("zh-CN", "en-US", "ja-JP")))
    provider = AzureAsrProvider(config, CREDENTIALS, "auto")
    assert provider.languages == ("zh-CN", "en-US", "ja-JP")
    assert provider.locale_for(None) is None
    session = await provider.open(None)
    await session.send(speech(0.3))
    result = await session.finish()
    assert result.text == "Turn on the light. And close the blinds." and result.language == "en-US"
    assert fake.queries[-1]["lidEnabled"] == ["zh-CN,en-US,ja-JP"]
    assert fake.contexts[-1]["languageId"]["mode"] == "DetectContinuous"
    # A language the client sends still wins: no identification.
    assert (
        await transcribe(provider, speech(0.3), "ja") == "Turn on the light. And close the blinds."
    )
    assert "lidEnabled" not in fake.queries[-1] and fake.languages[-1] == "ja-JP"


def test_join_phrases() -> None:
    assert join_phrases([]) == ""
    assert join_phrases(["a.", "b"]) == "a. b"
    assert join_phrases(["你好", "world", "！", "x"]) == "你好world！x"


@pytest.mark.parametrize(
    ("default", "advertised"),
    [
        (None, ("zh-CN", "en-US")),
        ("zh", ("zh-CN", "en-US")),
        ("en", ("en-US", "zh-CN")),
        ("en-US", ("en-US", "zh-CN")),
        ("fr-FR", ("fr-FR", "zh-CN", "en-US")),
        ("fr", ("zh-CN", "en-US")),
    ],
)
def test_advertised_languages(default: str | None, advertised: tuple[str, ...]) -> None:
    assert advertised_languages(("zh-CN", "en-US"), default) == advertised


def test_locale_for_language_from_home_assistant() -> None:
    config = AzureConfig(host="ws://127.0.0.1:1", asr=AzureAsr(languages=("zh-CN", "en-US")))
    provider = AzureAsrProvider(config, CREDENTIALS, "en")
    assert provider.model == "azure-conversation"
    assert provider.languages == ("en-US", "zh-CN")
    assert provider.locale_for(None) == "en-US"
    assert provider.locale_for("zh-CN") == "zh-CN"
    assert provider.locale_for("zh") == "zh-CN"
    assert provider.locale_for("en-GB") == "en-US"
    assert provider.locale_for("de-DE") == "de-DE"
    assert provider.locale_for("de") == "en-US"


@pytest.mark.parametrize("mode", ["interactive", "dictation"])
async def test_asr_mode_and_profanity(fake: FakeAzure, mode: str) -> None:
    config = azure_config(fake, asr=AzureAsr.model_validate({"mode": mode, "profanity": "raw"}))
    provider = AzureAsrProvider(config, CREDENTIALS, None)
    assert await transcribe(provider, speech(0.3)) == "Turn on the light. And close the blinds."
    assert fake.modes == [mode]
    assert provider.model == f"azure-{mode}"


async def test_asr_custom_model_and_silence_timeouts_reach_the_service(fake: FakeAzure) -> None:
    asr = AzureAsr(
        endpoint_id="my-custom-model", initial_silence_timeout_ms=7000,
        segmentation_silence_timeout_ms=900,
    )  # fmt: skip
    provider = AzureAsrProvider(azure_config(fake, asr=asr), CREDENTIALS, None)
    assert await transcribe(provider, speech(0.3)) == "Turn on the light. And close the blinds."
    assert fake.queries[-1]["cid"] == ["my-custom-model"]
    detection = fake.contexts[-1]["phraseDetection"]
    assert detection["initialSilenceTimeout"] == 7000
    assert detection["CONVERSATION"]["segmentation"]["segmentationSilenceTimeoutMs"] == 900
    # Without them, the service's defaults: nothing is sent.
    await transcribe(AzureAsrProvider(azure_config(fake), CREDENTIALS, None), speech(0.3))
    assert "cid" not in fake.queries[-1]
    assert "initialSilenceTimeout" not in fake.contexts[-1]["phraseDetection"]


async def test_tts_custom_voice_deployment_role_and_styledegree(fake: FakeAzure) -> None:
    tts = AzureTts(
        voice="zh-CN-XiaomoNeural", style="cheerful", styledegree=1.5, role="YoungAdultFemale",
        endpoint_id="my-voice-deployment",
    )  # fmt: skip
    async with tts_provider(azure_config(fake, tts=tts)) as provider:
        assert b"".join(await speak(provider, "你好")) == expected_audio(fake)
    assert fake.queries[-1]["deploymentId"] == ["my-voice-deployment"]
    express = ET.fromstring(fake.received_ssml[-1]).find(
        f"{SSML_NS}voice/{{https://www.w3.org/2001/mstts}}express-as"
    )
    assert express is not None
    assert (express.get("style"), express.get("styledegree"), express.get("role")) == (
        "cheerful", "1.5", "YoungAdultFemale",
    )  # fmt: skip


async def test_asr_waits_for_a_slow_result(fake: FakeAzure) -> None:
    fake.delay = 0.3
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, None)
    assert await transcribe(provider, speech(0.3)) == "Turn on the light. And close the blinds."


async def test_asr_key_is_optional_with_a_host(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), Credentials(key="", hint=HINT), None)
    assert await transcribe(provider, speech(0.2)) == "Turn on the light. And close the blinds."


@FAULT_CODES
async def test_asr_faults_then_recovers(fake: FakeAzure, fault: str, code: ErrorCode) -> None:
    # The SDK reconnects a lost recognition for about a second before it reports the error.
    timeouts = TIGHT if fault == "stall" else FAST
    provider = AzureAsrProvider(azure_config(fake, timeouts), CREDENTIALS, None)
    baseline = await resources(0)
    fake.fault = fault
    error, elapsed = await failure(transcribe(provider, speech(0.5)))
    check_error(error, code)
    if fault == "stall":
        assert 0.5 <= elapsed < 1.5  # first_result deadline, after the audio was sent
    else:
        assert elapsed < 2.5
    fake.fault = None
    assert await transcribe(provider, speech(0.2)) == "Turn on the light. And close the blinds."
    await check_settles_to(baseline)


async def test_asr_wrong_key(fake: FakeAzure) -> None:
    credentials = Credentials(key="wrong-secret-key", hint=HINT)
    provider = AzureAsrProvider(azure_config(fake), credentials, None)
    with pytest.raises(ProviderError) as caught:
        await provider.open(None)
    check_error(caught.value, ErrorCode.AUTH_FAILED)


async def test_asr_connect_deadline(fake: FakeAzure) -> None:
    fake.fault = "refuse"
    timeouts = Timeouts(connect=0.3, first_result=1, total=5)
    provider = AzureAsrProvider(azure_config(fake, timeouts), CREDENTIALS, None)
    error, elapsed = await failure(provider.open(None))
    assert elapsed < 0.8
    check_error(error, ErrorCode.CONNECT_FAILED)


async def test_asr_total_deadline(fake: FakeAzure) -> None:
    fake.fault = "stall"
    timeouts = Timeouts(connect=3, first_result=3, total=0.6)
    provider = AzureAsrProvider(azure_config(fake, timeouts), CREDENTIALS, None)
    session = await provider.open(None)
    await session.send(speech(0.2))
    await asyncio.sleep(0.3)
    error, elapsed = await failure(session.finish())
    assert elapsed < 0.6
    check_error(error, ErrorCode.TIMEOUT)
    assert "0.6 s" in error.message


async def test_asr_cancel_never_raises(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, None)
    session = await provider.open(None)
    await session.send(speech(0.2))
    await session.cancel()
    await session.cancel()
    await session.send(b"\0\0")  # ignored once cancelled
    fake.fault = "stall"
    session = await provider.open(None)
    await session.send(speech(0.2))
    await session.cancel()
    fake.fault = None
    assert await transcribe(provider, speech(0.2)) == "Turn on the light. And close the blinds."


@pytest.mark.parametrize("key", [KEY, ""])
def test_missing_region_and_host(key: str) -> None:
    provider = AzureAsrProvider(AzureConfig(), Credentials(key, HINT), None)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.open(None))
    assert caught.value.code == ErrorCode.MISSING_CREDENTIALS
    assert "AZURE_SPEECH_REGION" in caught.value.message
    assert "providers.azure.host" in caught.value.message
    assert (HINT in caught.value.message) == (not key)


def test_cloud_region_endpoints() -> None:
    config = AzureConfig(region="westeurope")
    plain = speech_config(config, CREDENTIALS)
    assert plain.region == "westeurope"
    assert plain.subscription_key == KEY
    interactive = speech_config(config, CREDENTIALS, "/speech/recognition/interactive/x")
    endpoint = interactive.get_property(speechsdk.PropertyId.SpeechServiceConnection_Endpoint)
    assert endpoint == "wss://westeurope.stt.speech.microsoft.com/speech/recognition/interactive/x"


def test_missing_key_with_region() -> None:
    provider = AzureAsrProvider(AzureConfig(region="westeurope"), Credentials("", HINT), None)
    with pytest.raises(ProviderError) as caught:
        asyncio.run(provider.open(None))
    assert caught.value.code == ErrorCode.MISSING_CREDENTIALS
    assert HINT in caught.value.message


async def test_asr_concurrent_sessions(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, None)
    audio = [speech(0.5, seed) for seed in range(10)]
    texts = await asyncio.gather(*(transcribe(provider, pcm) for pcm in audio))
    assert texts == ["Turn on the light. And close the blinds."] * 10
    assert sorted(fake.received_audio) == sorted(audio)


async def test_asr_leaks_no_threads_or_sockets(fake: FakeAzure) -> None:
    provider = AzureAsrProvider(azure_config(fake), CREDENTIALS, None)
    await transcribe(provider, speech(0.1))
    baseline = await resources()
    for _ in range(15):
        await transcribe(provider, speech(0.1))
    await check_settles_to(baseline)


# --- TTS ---------------------------------------------------------------------


async def test_tts_speaks_sentence_by_sentence(fake: FakeAzure) -> None:
    async with tts_provider(azure_config(fake)) as provider:
        chunks = await speak(provider, "Hello there. How", " are you? I am fine", ", thanks.")
    assert spoken_texts(fake) == ["Hello there.", "How are you?", "I am fine, thanks."]
    assert b"".join(chunks) == expected_audio(fake)
    assert len(chunks) > len(fake.received_ssml)  # each sentence came in several chunks
    assert fake.output_formats == ["raw-24khz-16bit-mono-pcm"] * 3
    assert len(fake.first_audio_sent) == 3


async def test_tts_yields_audio_before_the_text_is_complete(fake: FakeAzure) -> None:
    first_audio = asyncio.Event()

    async def text() -> AsyncIterator[str]:
        yield "The first sentence is here. "
        async with asyncio.timeout(5):
            await first_audio.wait()
        yield "The second one."

    async with tts_provider(azure_config(fake)) as provider:
        chunks = []
        async for chunk in provider.synthesize(text(), SynthesisOptions()):
            chunks.append(chunk)
            first_audio.set()
    assert b"".join(chunks) == expected_audio(fake)
    assert len(fake.received_ssml) == 2


def test_sentence_splitter() -> None:
    splitter = SentenceSplitter()
    assert splitter.feed("Pi is 3.") == []
    assert splitter.feed("14. Next") == ["Pi is 3.14."]
    assert splitter.feed(" one!\nline two") == ["Next one!"]
    assert splitter.feed("\n你好。今天；天气") == ["line two", "你好。", "今天；"]
    assert splitter.flush() == ["天气"]
    assert splitter.feed("  \n ") == []
    assert splitter.flush() == []


async def test_tts_ssml_voice_prosody_style_and_escaping(fake: FakeAzure) -> None:
    tts = AzureTts(voice="en-US-JennyNeural", rate="+10%", pitch="high", style="cheerful")
    async with tts_provider(azure_config(fake, tts=tts)) as provider:
        await speak(provider, 'Tom & Jerry say "<hi>"')
        await speak(provider, "Bonjour.", voice="fr-FR-DeniseNeural")
    ssml = fake.received_ssml[0]
    assert 'Tom &amp; Jerry say "&lt;hi&gt;"' in ssml
    voice = ET.fromstring(ssml).find(f"{SSML_NS}voice")
    assert voice is not None and voice.get("name") == "en-US-JennyNeural"
    express = voice.find("{https://www.w3.org/2001/mstts}express-as")
    assert express is not None and express.get("style") == "cheerful"
    prosody = express.find(f"{SSML_NS}prosody")
    assert prosody is not None
    assert (prosody.get("rate"), prosody.get("pitch"), prosody.get("volume")) == (
        "+10%",
        "high",
        None,
    )
    assert prosody.text == 'Tom & Jerry say "<hi>"'
    other = ET.fromstring(fake.received_ssml[1])
    assert other.get("{http://www.w3.org/XML/1998/namespace}lang") == "fr-FR"
    assert [v.get("name") for v in other.iter(f"{SSML_NS}voice")] == ["fr-FR-DeniseNeural"]


async def test_tts_ssml_passthrough(fake: FakeAzure) -> None:
    document = (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="en-US">'
        '<voice name="en-US-JennyNeural">One. Two.<break time="100ms"/>Three.</voice></speak>'
    )
    async with tts_provider(azure_config(fake)) as provider:
        chunks = await speak(provider, document[:50], document[50:90], document[90:], ssml=True)
    assert fake.received_ssml == [document]
    assert b"".join(chunks) == FakeAzure.tts_audio_for(document, 24000)


@pytest.mark.parametrize(
    ("rate", "name"),
    [
        (8000, "raw-8khz-16bit-mono-pcm"),
        (16000, "raw-16khz-16bit-mono-pcm"),
        (22050, "raw-22050hz-16bit-mono-pcm"),
        (44100, "raw-44100hz-16bit-mono-pcm"),
        (48000, "raw-48khz-16bit-mono-pcm"),
    ],
)
async def test_tts_output_format(fake: FakeAzure, rate: int, name: str) -> None:
    async with tts_provider(azure_config(fake, tts=AzureTts(sample_rate=rate))) as provider:
        assert provider.audio_format.rate == rate
        assert (provider.audio_format.width, provider.audio_format.channels) == (2, 1)
        chunks = await speak(provider, "Sample rate test.")
    assert fake.output_formats == [name]
    assert b"".join(chunks) == expected_audio(fake, rate)


async def test_tts_encoded_output_is_one_request_apart_from_the_kept_synthesizers(
    fake: FakeAzure,
) -> None:
    async with tts_provider(azure_config(fake, warm_connections=1)) as provider:
        await provider.prepare()
        assert provider.encoded_formats() == {EncodedAudio.MP3, EncodedAudio.OGG_OPUS}
        text = "Good morning. The lights are on."
        encoded = provider.synthesize_encoded(text, SynthesisOptions(), EncodedAudio.OGG_OPUS)
        opus = b"".join([chunk async for chunk in encoded])
        assert len(fake.received_ssml) == 1  # the whole text: one stream
        assert b"".join(await speak(provider, "Again.")) == FakeAzure.tts_audio_for("Again.", 24000)
    assert fake.output_formats == ["ogg-24khz-16bit-mono-opus", "raw-24khz-16bit-mono-pcm"]
    info = soundfile.info(io.BytesIO(opus))
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 24000)
    spoken = FakeAzure.tts_audio_for(fake.received_ssml[0], 24000)
    assert abs(info.duration - len(spoken) / 48000) < 0.15  # Opus: encoder delay, padding
    rates = AzureConfig(host=fake.host, tts=AzureTts(sample_rate=22050))
    assert AzureTtsProvider(rates, CREDENTIALS, None).encoded_formats() == frozenset()


def test_tts_voices() -> None:
    tts = AzureTts(voice="zh-CN-XiaoxiaoNeural", voices=("en-US-JennyNeural", "zh-CN-YunxiNeural"))
    config = AzureConfig(host="ws://127.0.0.1:1", tts=tts)
    provider = AzureTtsProvider(config, CREDENTIALS, "zh-CN-YunxiNeural")
    assert provider.model == "azure-neural"
    assert [(v.name, v.languages, v.description) for v in provider.voices] == [
        ("zh-CN-YunxiNeural", ("zh-CN",), "Yunxi (zh-CN)"),
        ("en-US-JennyNeural", ("en-US",), "Jenny (en-US)"),
    ]
    assert AzureTtsProvider(config, CREDENTIALS, None).voices[0].name == "zh-CN-XiaoxiaoNeural"


async def test_tts_empty_text_contacts_nothing(fake: FakeAzure) -> None:
    async with tts_provider(azure_config(fake)) as provider:
        assert await speak(provider) == []
        assert await speak(provider, "", "  \n", " ") == []
        assert await speak(provider, " ", ssml=True) == []
    async with tts_provider(AzureConfig(), credentials=Credentials("", HINT)) as provider:
        assert await speak(provider, "") == []
    assert fake.received_ssml == [] and fake.output_formats == []


@FAULT_CODES
async def test_tts_faults_then_recovers(fake: FakeAzure, fault: str, code: ErrorCode) -> None:
    async with tts_provider(azure_config(fake, TIGHT)) as provider:
        await speak(provider, "Warm up the connection.")
        baseline = await resources()
        fake.fault = fault  # "auth" and "refuse" also cut the pooled connection
        error, elapsed = await failure(speak(provider, "This request fails."))
        check_error(error, code)
        if fault == "stall":
            assert 0.5 <= elapsed < 1.2  # first_result deadline
        else:
            assert elapsed < 1.0
        fake.fault = None
        fake.received_ssml.clear()
        chunks = await speak(provider, "Working again.")
        assert b"".join(chunks) == expected_audio(fake)
        await check_settles_to(baseline)


async def test_tts_wrong_key(fake: FakeAzure) -> None:
    credentials = Credentials(key="wrong-secret-key", hint=HINT)
    async with tts_provider(azure_config(fake), credentials=credentials) as provider:
        with pytest.raises(ProviderError) as caught:
            await speak(provider, "Hello.")
    check_error(caught.value, ErrorCode.AUTH_FAILED)


async def test_tts_missing_region_and_host() -> None:
    async with tts_provider(AzureConfig()) as provider:
        with pytest.raises(ProviderError) as caught:
            await speak(provider, "Hello.")
    assert caught.value.code == ErrorCode.MISSING_CREDENTIALS
    assert "AZURE_SPEECH_REGION" in caught.value.message


async def test_tts_total_deadline(fake: FakeAzure) -> None:
    fake.fault = "stall"
    timeouts = Timeouts(connect=3, first_result=3, total=0.4)
    async with tts_provider(azure_config(fake, timeouts)) as provider:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            await speak(provider, "Hello.")
    assert time.monotonic() - started < 0.8
    check_error(caught.value, ErrorCode.TIMEOUT)


async def test_tts_consumer_stopping_early_releases_everything(fake: FakeAzure) -> None:
    async with tts_provider(azure_config(fake)) as provider:
        await speak(provider, "Warm up.")
        baseline = await resources()
        text = pieces("A long sentence that takes a while to say. " * 5)
        stream = provider.synthesize(text, SynthesisOptions())
        async with contextlib.aclosing(stream):
            assert await anext(stream)
        next_audio = b"".join(await speak(provider, "Next one."))
        assert next_audio == FakeAzure.tts_audio_for(fake.received_ssml[-1], 24000)
        await check_settles_to(baseline)


async def test_tts_leaks_nothing_over_50_requests(fake: FakeAzure) -> None:
    async with tts_provider(azure_config(fake)) as provider:
        await speak(provider, "Warm up.")
        baseline = await resources()
        for index in range(50):
            await speak(provider, f"Request {index}.")
        await check_settles_to(baseline)
        assert len(fake.received_ssml) == 51
    # close() released the idle synthesizer; the SDK ends its threads soon after.
    assert await wait_for(lambda: native_threads() < baseline[0], 5.0), native_threads()


async def test_tts_concurrent_requests(fake: FakeAzure) -> None:
    texts = [f"Request number {i} says {'la' * i}." for i in range(10)]
    async with tts_provider(azure_config(fake)) as provider:
        results = await asyncio.gather(*(speak(provider, text) for text in texts))
    for text, chunks in zip(texts, results, strict=True):
        (ssml,) = [s for s in fake.received_ssml if f">{text}<" in s]
        assert b"".join(chunks) == FakeAzure.tts_audio_for(ssml, 24000)


# --- the fake itself -----------------------------------------------------------


def test_fake_lists_voices(fake: FakeAzure) -> None:
    synthesizer = speechsdk.SpeechSynthesizer(
        speech_config=speechsdk.SpeechConfig(host=fake.host, subscription=KEY), audio_config=None
    )
    result = synthesizer.get_voices_async("").get()
    assert result.reason == speechsdk.ResultReason.VoicesListRetrieved, result.error_details
    assert [v.short_name for v in result.voices] == ["zh-CN-XiaoxiaoNeural", "en-US-JennyNeural"]
    del synthesizer, result


def test_fake_runs_as_a_process() -> None:
    line = fake_process_ready_line("tests.fakes.azure", "--fault", "stall")
    assert line.startswith("READY ws://127.0.0.1:")


def test_a_long_error_keeps_host_names_whole_and_never_shows_the_key() -> None:
    host = "wss://westeurope.stt.speech.microsoft.com/speech/recognition/conversation/cognitiveservices/v1"
    details = f"WebSocket upgrade failed: Authentication error (401) for {KEY}. " + "x " * 100
    for padding in range(0, 240, 7):  # the host lands on the length limit at some padding
        cancellation = Cancellation(
            speechsdk.CancellationReason.Error,
            speechsdk.CancellationErrorCode.AuthenticationFailure,
            details[: 60 + padding] + f" {host} USP state: 2.",
        )
        error = cancellation.error("Azure ASR", False, KEY)
        assert error.code == ErrorCode.AUTH_FAILED and KEY not in error.message
        assert host in error.message or "westeurope" not in error.message
