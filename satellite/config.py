"""The YAML configuration: loaded and validated once into frozen, typed objects.

Strings may use ``${VAR}`` and ``${VAR:-default}`` to read the environment. A variable
that is unset and has no default becomes an empty string and is remembered, so a
missing API key can name the variable to set instead of stopping the daemon.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .dashscope_models import ASR_MODELS, RECOGNITION_OPTIONS, TTS_MODELS, asr_model, tts_model
from .provider_table import AZURE_VOICE, PROVIDERS, Role, names_for

DEFAULT_CONFIG_PATH = Path("/etc/voice-satellite/config.yaml")
CONFIG_ENV = "VOICE_SATELLITE_CONFIG"

Seconds = Annotated[float, Field(gt=0, le=3600)]


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(Model):
    """Deadlines of every provider call, in seconds."""

    connect: Seconds = 5.0
    first_result: Seconds = 10.0
    total: Seconds = 60.0


def _check_server_uri(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme == "tcp":
        if not parsed.hostname or parsed.port is None:
            raise ValueError("expected tcp://HOST:PORT, e.g. tcp://0.0.0.0:10300")
    elif parsed.scheme != "unix" or not parsed.path:
        raise ValueError("expected tcp://HOST:PORT or unix:///path/to/socket")
    return value


def _check_ws_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
        raise ValueError("expected a websocket URL, ws://HOST[:PORT]/PATH or wss://...")
    return value


def _check_http_url(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError("expected an HTTP URL, https://HOST[:PORT]/PATH or http://...")
    return value


# --- DashScope ---------------------------------------------------------------


def _listed_model(known: Mapping[str, Any], role: str) -> Callable[[Any, Any], Any]:
    """A model validator: ``model`` is one ``known``, unless ``allow_unlisted_model``."""

    def check(section: Any) -> Any:
        if section.model not in known and not section.allow_unlisted_model:
            raise ValueError(
                f"model {section.model!r} is not a DashScope {role} model this version knows; "
                f"choose from: {', '.join(known)}; or, for a model released since, keep it and "
                "set allow_unlisted_model: true"
            )
        return section

    return check


WarmConnections = Annotated[int, Field(ge=0, le=8)]


class DashScopeAsr(Model):
    # paraformer-realtime-v2 / fun-asr-realtime (inference API) or qwen3-asr-flash-realtime;
    # paraformer-realtime-8k-v2 hears telephone-band audio (sent to it at 8 kHz).
    model: str = "paraformer-realtime-v2"
    # A model this version does not list (released since): its API and sample rate are
    # taken from its name (qwen...realtime: the realtime API; -8k-: 8 kHz).
    allow_unlisted_model: bool = False
    languages: tuple[str, ...] = ("zh", "en", "ja", "ko", "yue", "de", "fr", "ru")
    # Recognition options; None leaves the model's default. Punctuation and inverse text
    # normalization ("three" -> "3") are always on with these models.
    disfluency_removal: bool | None = None  # paraformer: drop fillers (um, 嗯); default off
    # paraformer-realtime-v2 / fun-asr: vad (sentences end at pauses: low latency, the
    # default) or semantic (punctuation from meaning: more accurate, for long dictation).
    punctuation: Literal["vad", "semantic"] | None = None
    # paraformer-realtime-v2 / fun-asr, punctuation vad: the pause that ends a sentence.
    max_sentence_silence_ms: Annotated[int, Field(ge=200, le=6000)] | None = None
    # Extra recognition parameters passed to the model as-is; they win over the keys above.
    parameters: dict[str, Any] = Field(default_factory=dict)
    # Qwen realtime models only: let the server end each turn after a pause (its own VAD)
    # instead of committing the audio when the client sends audio-stop.
    turn_detection: bool = False
    turn_detection_silence_ms: Annotated[int, Field(ge=200, le=6000)] = 800

    _model = model_validator(mode="after")(_listed_model(ASR_MODELS, "speech-to-text"))

    @model_validator(mode="after")
    def _options_fit_the_model(self) -> DashScopeAsr:
        model = asr_model(self.model)
        refused = [
            key
            for key in RECOGNITION_OPTIONS
            if getattr(self, key) is not None and model.refuses(key)
        ]
        if refused:
            takes = ", ".join(sorted(model.options)) or "none of them"
            raise ValueError(
                f"model {self.model!r} does not take {', '.join(refused)} (it takes: {takes}); "
                "remove the key or choose another model"
            )
        return self

    @property
    def recognition_parameters(self) -> dict[str, Any]:
        """The options that are set, as the service names them."""
        values = {
            "disfluency_removal": self.disfluency_removal,
            "punctuation": None if self.punctuation is None else self.punctuation == "semantic",
            "max_sentence_silence_ms": self.max_sentence_silence_ms,
        }
        return {
            RECOGNITION_OPTIONS[key]: value for key, value in values.items() if value is not None
        }


class DashScopeTts(Model):
    # cosyvoice-v2 / cosyvoice-v1 (inference API), qwen3-tts-flash-realtime /
    # qwen-tts-realtime (realtime API), or qwen3-tts-flash / qwen-tts (HTTP API, one request
    # per sentence). Each offers its own voices.
    model: str = "cosyvoice-v2"
    allow_unlisted_model: bool = False  # as for asr; such a model needs its voice named
    # None: the model's default (cosyvoice-v2: longxiaochun_v2, cosyvoice-v1: longwan,
    # Qwen: Cherry).
    voice: str | None = None
    # None: the model's. The HTTP models (qwen3-tts-flash, qwen-tts) give 24000 only, and
    # take none of speech_rate, pitch, volume and mode.
    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] | None = None
    speech_rate: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    pitch: Annotated[float, Field(ge=0.5, le=2.0)] = 1.0
    volume: Annotated[int, Field(ge=0, le=100)] = 50
    # Extra voices to advertise, beyond the built-in catalogue: {voice_id: [languages]}.
    voices: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # Qwen realtime models only. server_commit: the server decides when to speak the text
    # streamed so far; commit: each complete sentence is committed as soon as it is known.
    mode: Literal["server_commit", "commit"] = "server_commit"
    # Qwen models: the language of the text, e.g. Chinese, English, Auto (None: the model's
    # default, Auto: read from the text).
    language_type: str | None = None
    instructions: str | None = None  # speaking instructions, for models that take them

    _model = model_validator(mode="after")(_listed_model(TTS_MODELS, "text-to-speech"))

    @model_validator(mode="after")
    def _unlisted_model_names_its_voice(self) -> DashScopeTts:
        if self.voice is None and tts_model(self.model).default_voice is None:
            raise ValueError(
                f"model {self.model!r} is not listed, so it has no default voice: set voice"
            )
        return self

    @model_validator(mode="after")
    def _http_models_give_24_khz(self) -> DashScopeTts:
        model = tts_model(self.model)
        if model.api == "http" and self.sample_rate not in (None, model.sample_rate):
            raise ValueError(
                f"model {self.model!r} gives {model.sample_rate} Hz audio only: "
                "remove sample_rate or set it to that"
            )
        return self

    @property
    def default_voice(self) -> str:
        voice = self.voice or tts_model(self.model).default_voice
        assert voice is not None  # checked above
        return voice

    @property
    def default_sample_rate(self) -> int:
        return self.sample_rate or tts_model(self.model).sample_rate


class DashScopeConfig(Model):
    api_key: SecretStr = SecretStr("")
    api_key_file: Path | None = None
    websocket_url: str = "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
    # Endpoint of the Qwen realtime models (the SDK appends ?model=...).
    realtime_url: str = "wss://dashscope.aliyuncs.com/api-ws/v1/realtime"
    # Base of the HTTP API (qwen3-tts-flash, qwen-tts); the international endpoint is
    # https://dashscope-intl.aliyuncs.com/api/v1.
    http_url: str = "https://dashscope.aliyuncs.com/api/v1"
    timeouts: Timeouts = Timeouts()
    # Connections opened ahead of requests, per role (0: connect on demand).
    warm_connections: WarmConnections = 1
    asr: DashScopeAsr = DashScopeAsr()
    tts: DashScopeTts = DashScopeTts()

    _url = field_validator("websocket_url", "realtime_url")(_check_ws_url)
    _http = field_validator("http_url")(_check_http_url)


# --- Azure -------------------------------------------------------------------

_AZURE_FORMATS = (8000, 16000, 22050, 24000, 44100, 48000)
MAX_IDENTIFIED_LOCALES = 10  # Azure's language identification, phrase by phrase


class AzureAsr(Model):
    languages: tuple[str, ...] = ("zh-CN", "en-US")
    # Recognition mode of the speech endpoint.
    mode: Literal["conversation", "interactive", "dictation"] = "conversation"
    profanity: Literal["masked", "removed", "raw"] = "masked"
    endpoint_id: str | None = None  # a Custom Speech model's endpoint id
    # Silence before speech that ends a recognition with nothing heard (the service's
    # default: 5000 ms in conversation mode), and the pause that ends a phrase (500 ms).
    initial_silence_timeout_ms: Annotated[int, Field(ge=500, le=60000)] | None = None
    segmentation_silence_timeout_ms: Annotated[int, Field(ge=100, le=5000)] | None = None

    @field_validator("languages")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one locale, e.g. [zh-CN, en-US]")
        return value


class AzureTts(Model):
    voice: str = "zh-CN-XiaoxiaoNeural"
    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 24000
    # Prosody, as SSML <prosody> values: rate "+10%" or "1.2", pitch "+5%" or "high", volume "+0%".
    rate: str | None = None
    pitch: str | None = None
    volume: str | None = None
    style: str | None = None  # speaking style of voices that have them, e.g. "cheerful"
    styledegree: Annotated[float, Field(ge=0.01, le=2.0)] | None = None  # the style's strength
    role: str | None = None  # a role the voice plays in its style, e.g. "YoungAdultFemale"
    endpoint_id: str | None = None  # a custom neural voice's deployment id
    # Extra voices to advertise beyond the configured one (their language is read from the name).
    voices: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _style_options_need_a_style(self) -> AzureTts:
        if self.style is None and (self.styledegree is not None or self.role is not None):
            raise ValueError("styledegree and role shape a speaking style: set style too")
        return self

    @field_validator("voice", "voices")
    @classmethod
    def _azure_voice_names(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for name in (value,) if isinstance(value, str) else value:
            if not AZURE_VOICE.match(name):
                raise ValueError(
                    f"{name!r} is not an Azure voice name; expected LOCALE-NameNeural, "
                    "e.g. zh-CN-XiaoxiaoNeural"
                )
        return value


class AzureConfig(Model):
    key: SecretStr = SecretStr("")
    key_file: Path | None = None
    region: str | None = None
    host: str | None = None  # ws://HOST:PORT of a Speech container; used instead of region
    timeouts: Timeouts = Timeouts()
    # Synthesizers connected ahead of requests (0: connect on demand).
    warm_connections: WarmConnections = 1
    asr: AzureAsr = AzureAsr()
    tts: AzureTts = AzureTts()

    @field_validator("host")
    @classmethod
    def _host_url(cls, value: str | None) -> str | None:
        return None if not value else _check_ws_url(value)

    @field_validator("region")
    @classmethod
    def _empty_region(cls, value: str | None) -> str | None:
        return value or None


class EspeakConfig(Model):
    """The offline voice: the espeak-ng program (``apt install espeak-ng``)."""

    program: str = "espeak-ng"
    voice: str = (
        "en-us"  # an espeak-ng voice, e.g. en-us, cmn (Mandarin), de; see espeak-ng --voices
    )
    voices: tuple[str, ...] = ()  # more voices to advertise
    speed: Annotated[int, Field(ge=80, le=450)] = 175  # words per minute
    pitch: Annotated[int, Field(ge=0, le=99)] = 50
    amplitude: Annotated[int, Field(ge=0, le=200)] = 100
    timeouts: Timeouts = Timeouts(connect=2.0, first_result=5.0, total=60.0)


class Providers(Model):
    dashscope: DashScopeConfig = DashScopeConfig()
    azure: AzureConfig = AzureConfig()
    espeak: EspeakConfig = EspeakConfig()
    # Where the cloud SDKs run: "process", each provider in a worker process the
    # daemon supervises (a crash costs the worker, not the daemon), or "inline", in the daemon.
    isolation: Literal["process", "inline"] = "process"
    recycle_after_requests: Annotated[int, Field(ge=0)] = 1000  # a worker's; 0: never
    worker_max_rss_mb: Annotated[int, Field(ge=0)] = 300  # recycled above it; 0: no limit


# --- Roles -------------------------------------------------------------------


_ROLE_WORDS = {"asr": "speech-to-text", "tts": "text-to-speech"}


def _provider_chain(role: Role) -> Callable[[Any], Any]:
    """A validator: one provider name, or a list of them tried in order, each able to serve
    ``role``; kept as a tuple without repeats."""

    def check(value: Any) -> Any:
        chain = (value,) if isinstance(value, str) else value
        if not isinstance(chain, list | tuple):
            return value
        if not chain:
            raise ValueError("name at least one provider")
        if len(set(chain)) != len(chain):
            raise ValueError("a provider is listed twice")
        offered = names_for(role)
        for name in chain:
            if name not in offered:
                raise ValueError(
                    f"{name!r} is not a {_ROLE_WORDS[role]} provider; "
                    f"choose from: {', '.join(offered)}"
                )
        return tuple(chain)

    return check


# speech.asr.language: identify the language among the configured ones.
AUTO_LANGUAGE = "auto"


class AsrRole(Model):
    # One provider, or a failover list tried in order, e.g. [dashscope, azure].
    provider: tuple[str, ...] = ("dashscope",)
    # Language used when the client sends none; advertised first. auto: the service identifies
    # it among the provider's configured languages (HA's language, when sent, still wins).
    language: str | None = "zh"
    # Live partial transcripts (transcript-start/-chunk/-stop). auto: to clients that asked
    # for the endpoint's info on the same connection; always; never (final transcript only).
    transcript_streaming: Literal["auto", "always", "never"] = "auto"

    _chain = field_validator("provider", mode="before")(_provider_chain("asr"))


class TtsRole(Model):
    # One provider, or a failover list tried in order, e.g. [dashscope, azure, espeak].
    provider: tuple[str, ...] = ("dashscope",)
    # Default voice of the first provider; None uses that provider's configured voice.
    voice: str | None = None

    _chain = field_validator("provider", mode="before")(_provider_chain("tts"))


class FailoverConfig(Model):
    """When a provider of a failover list is skipped (its circuit breaker is open)."""

    failures: Annotated[int, Field(ge=1, le=100)] = 3  # consecutive failures that open it
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0  # skipped this long, then probed


def advertised_name(configured: str | None, role: str) -> str:
    """A role's zeroconf instance name: the configured one, else the host name and the role
    ("kitchen-pi speech"); HA derives its unique id from it, so it must be stable."""
    return configured or f"{socket.gethostname().split('.')[0]} {role}"


class SpeechConfig(Model):
    enabled: bool = True
    uri: str = "tcp://0.0.0.0:10300"
    name: str | None = None  # zeroconf name; default: "<host name> speech"
    asr: AsrRole = AsrRole()
    tts: TtsRole = TtsRole()
    failover: FailoverConfig = FailoverConfig()

    _uri = field_validator("uri")(_check_server_uri)


# --- Satellite ---------------------------------------------------------------

SampleWidth = Literal[1, 2, 4]
Volume = Annotated[float, Field(ge=0.0, le=10.0)]


class MicConfig(Model):
    """Where the satellite's audio comes from; converted to 16 kHz mono s16 for VAD and HA."""

    backend: Literal["pyaudio", "command", "file"] = "pyaudio"
    device: str | int | None = None  # pyaudio: name (or part of it) or index; None: default
    command: str | None = None  # e.g. "arecord -q -r 16000 -c 1 -f S16_LE -t raw"
    file: Path | None = None  # WAV or headerless PCM (in rate/width/channels below)
    rate: Annotated[int, Field(ge=8000, le=192000)] = 16000
    width: SampleWidth = 2
    channels: Annotated[int, Field(ge=1, le=32)] = 1
    channel: Annotated[int, Field(ge=0)] | None = None  # use only this channel; None: mix
    volume: Volume = 1.0  # multiplier, clipped
    # WebRTC clean-up on 10 ms frames, before the VAD and the wake word (0: off).
    noise_suppression: Annotated[int, Field(ge=0, le=4)] = 0  # 1 light .. 4 strongest
    # Target level in dB below full scale; webrtc-noise-gain 1.3 treats any 1-31 alike (on).
    auto_gain: Annotated[int, Field(ge=0, le=31)] = 0

    @model_validator(mode="after")
    def _backend_needs(self) -> MicConfig:
        if self.backend == "command" and not self.command:
            raise ValueError("backend 'command' needs 'command', e.g. arecord -q -r 16000 ...")
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs 'file', the path of a WAV or raw file")
        if self.channel is not None and self.channel >= self.channels:
            raise ValueError(f"channel {self.channel} does not exist in {self.channels} channels")
        return self


class SpeakerConfig(Model):
    """Where HA's TTS audio and the satellite's sounds are played."""

    backend: Literal["pyaudio", "command", "file"] = "pyaudio"
    device: str | int | None = None
    # Placeholders {rate}, {width}, {channels} are filled from each sound's format,
    # e.g. "aplay -q -r {rate} -c {channels} -f S16_LE -t raw".
    command: str | None = None
    file: Path | None = None  # a sink that receives every sound (raw PCM appended)
    volume: Volume = 1.0

    @model_validator(mode="after")
    def _backend_needs(self) -> SpeakerConfig:
        if self.backend == "command" and not self.command:
            raise ValueError("backend 'command' needs 'command', e.g. aplay -q -r {rate} ...")
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs 'file', the path the audio is written to")
        return self


class VadConfig(Model):
    """When voiced audio opens a pipeline run, and when silence ends it."""

    aggressiveness: Annotated[int, Field(ge=0, le=3)] = 2  # 3 filters out the most non-speech
    frame_ms: Literal[10, 20, 30] = 30
    preroll_ms: Annotated[int, Field(ge=0, le=5000)] = 300  # audio kept from before speech
    hangover_ms: Annotated[int, Field(ge=0, le=10000)] = 800  # silence that ends speech
    min_speech_ms: Annotated[int, Field(ge=0, le=5000)] = 150  # voiced audio that opens a run
    max_speech_s: Annotated[float, Field(gt=0, le=300)] = 15.0  # a run never streams longer


class SoundsConfig(Model):
    """Optional WAV files played by the satellite."""

    awake: Path | None = None  # when a pipeline run opens (or HA detects the wake word)
    done: Path | None = None  # when HA has the transcript
    timer_finished: Path | None = None  # repeated while a finished timer rings
    announce: Path | None = None  # before an announcement (HA's audio outside a run)


WakeEngineName = Literal["micro", "openwakeword", "remote", "none"]


class WakeConfig(Model):
    """The wake word heard on the device; nothing reaches HA before it (engine none: the
    VAD alone opens runs, and ``start_stage`` says whether HA's engine listens first)."""

    engine: WakeEngineName = "micro"
    models: tuple[str, ...] = ("okay_nabu",)  # bundled names or paths to model files
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None  # None: each model's own
    refractory_s: Annotated[float, Field(ge=0, le=60)] = 2.0  # one detection per this long
    uri: str = "tcp://127.0.0.1:10400"  # engine remote: the Wyoming wake service
    # Only audio the VAD lets through reaches the model, with this much audio before it.
    vad_gated: bool = True
    preroll_ms: Annotated[int, Field(ge=0, le=3000)] = 1000
    command_wait_s: Annotated[float, Field(gt=0, le=60)] = 5.0  # for the command to begin

    @field_validator("uri")
    @classmethod
    def _client_uri(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
            raise ValueError("expected tcp://HOST:PORT of a Wyoming wake service")
        return value

    @model_validator(mode="after")
    def _models_exist(self) -> WakeConfig:
        from .wake.catalogue import model_problem

        if self.engine in ("micro", "openwakeword"):
            if not self.models:
                raise ValueError(f"engine {self.engine!r} needs at least one model")
            for index, model in enumerate(self.models):
                problem = model_problem(self.engine, model)
                if problem:
                    raise ValueError(f"models.{index}: {problem}")
        return self


class SatelliteConfig(Model):
    enabled: bool = False
    uri: str = "tcp://0.0.0.0:10700"
    name: str | None = None  # shown in HA and zeroconf name; default: "<host name> satellite"
    area: str | None = None  # suggested area in HA, e.g. "Kitchen"
    start_stage: Literal["wake", "asr"] = "wake"  # wake: HA's wake-word engine listens first
    mic: MicConfig = MicConfig()
    speaker: SpeakerConfig | None = SpeakerConfig()  # null: no speaker (pipeline ends at handle)
    vad: VadConfig = VadConfig()
    sounds: SoundsConfig = SoundsConfig()
    wake: WakeConfig = WakeConfig()
    timer_ring_s: Annotated[float, Field(gt=0, le=3600)] = 300.0  # a finished timer rings
    mute_tail_ms: Annotated[int, Field(ge=0, le=5000)] = 300  # mic stays gated after playback
    # Commands run on HA events, by event type: {"transcript": "logger -t satellite heard"}.
    # The event's data is passed as JSON on stdin.
    events: dict[str, str] = Field(default_factory=dict)

    _uri = field_validator("uri")(_check_server_uri)


# --- Daemon ------------------------------------------------------------------


class LimitsConfig(Model):
    """What one client may cost the daemon, on both servers."""

    max_connections: Annotated[int, Field(ge=1, le=1024)] = 32  # per server; more get an error
    idle_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 120.0  # silent connections close
    # Header, data and payload of one Wyoming event; a larger one is refused unread.
    max_event_bytes: Annotated[int, Field(ge=65536, le=64 * 1024 * 1024)] = 1024 * 1024
    # Audio and text one connection may have waiting (ASR audio ahead of the provider,
    # streamed TTS text, HA's audio ahead of the speaker); beyond it the request fails.
    max_buffer_bytes: Annotated[int, Field(ge=65536, le=1024 * 1024 * 1024)] = 16 * 1024 * 1024
    # Client networks allowed to connect, e.g. [192.168.1.0/24, 127.0.0.1/32]; empty: any.
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()


class RecordingsConfig(Model):
    """The newest utterances kept as WAV files, for tuning the VAD and recognition."""

    dir: Path | None = None  # None: off; e.g. /var/lib/voice-satellite/recordings
    keep: Annotated[int, Field(ge=1, le=10000)] = 20  # older files are deleted


class Config(Model):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (journald, loki)
    zeroconf: bool = True  # advertise both servers as _wyoming._tcp.local.
    # On SIGTERM, requests in progress get this long to finish before they are ended.
    shutdown_timeout_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    limits: LimitsConfig = LimitsConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    speech: SpeechConfig = SpeechConfig()
    satellite: SatelliteConfig = SatelliteConfig()
    providers: Providers = Providers()

    @model_validator(mode="after")
    def _voice_fits_provider(self) -> Config:
        voice, provider = self.speech.tts.voice, self.speech.tts.provider[0]
        if voice is not None:
            problem = PROVIDERS[provider].voice_check(getattr(self.providers, provider), voice)
            if problem:
                raise ValueError(
                    f"speech.tts.voice {voice!r} {problem}, and speech.tts.provider starts with "
                    f"{provider}: name one of its voices, or remove speech.tts.voice to use "
                    f"{provider}'s own"
                )
        return self

    @model_validator(mode="after")
    def _azure_can_identify(self) -> Config:
        """Azure identifies a language among at most 10 locales, and not with a Custom
        Speech model (trained for one language)."""
        if self.speech.asr.language != AUTO_LANGUAGE or "azure" not in self.speech.asr.provider:
            return self
        azure = self.providers.azure.asr
        if azure.endpoint_id:
            raise ValueError(
                "speech.asr.language: auto cannot be used with providers.azure.asr.endpoint_id "
                "(a Custom Speech model knows one language): name the language instead"
            )
        if len(azure.languages) > MAX_IDENTIFIED_LOCALES:
            raise ValueError(
                f"speech.asr.language: auto identifies among at most {MAX_IDENTIFIED_LOCALES} "
                f"locales; providers.azure.asr.languages lists {len(azure.languages)}"
            )
        return self


# --- Loading -----------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` are one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    source: str  # file path, or "built-in defaults"
    # Dotted key path -> environment variables it referenced that were unset.
    unset_env: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Key paths of keys written in the file itself rather than read through ${VAR}.
    written_secrets: tuple[str, ...] = ()

    def secret_hint(self, key_path: str) -> str:
        """How a user provides the secret at ``key_path`` (never its value)."""
        names = self.unset_env.get(key_path)
        if names:
            return f"set the environment variable {', '.join(names)} ({key_path} in {self.source})"
        return f"set {key_path} in {self.source}"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, path: str, unset: dict[str, tuple[str, ...]]) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), unset) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}.{i}", unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        missing.append(name)
        return ""

    result = _ENV_REF.sub(substitute, value)
    if missing:
        unset[path] = tuple(missing)
    return result


_DEFAULT_SECRETS = {
    f"providers.{spec.name}.{field}": f"${{{variable}}}"
    for spec in PROVIDERS.values()
    for field, variable in spec.env.items()
}


def _apply_default_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """Give omitted secret keys their ``${VAR}`` default so they are interpolated too."""
    for dotted, template in _DEFAULT_SECRETS.items():
        *parents, leaf = dotted.split(".")
        node: Any = raw
        for key in parents:
            child = node.get(key) if isinstance(node, dict) else None
            if child is None:
                child = {}
                if isinstance(node, dict):
                    node[key] = child
            node = child
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = template
    return raw


# pydantic's error types -> what the key expects, in the words of someone editing YAML.
_EXPECTED = {
    **dict.fromkeys(("tuple_type", "list_type", "set_type"), "a list, e.g. [a, b]"),
    **dict.fromkeys(
        ("dict_type", "model_type", "model_attributes_type"), "a section: keys indented below it"
    ),
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "a whole number"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "text (in quotes if YAML reads it as a number or true/false)",
    "greater_than_equal": "a number of at least {ge}",
    "greater_than": "a number above {gt}",
    "less_than_equal": "a number of at most {le}",
    "less_than": "a number below {lt}",
    "literal_error": "one of: {expected}",
    "enum": "one of: {expected}",
    "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)",
}


def _key_path(location: tuple[Any, ...]) -> str:
    """``providers.azure.asr.languages[0]`` for pydantic's location of a value."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _describe(error: dict[str, Any], unset: Mapping[str, tuple[str, ...]]) -> str:
    location = error["loc"]
    path = _key_path(location)
    kind = error["type"]
    if kind == "extra_forbidden":
        return (
            f"{path}: unknown key; check its spelling and indentation (see config/satellite.yaml)"
        )
    if kind == "missing":
        return f"{path}: required key is missing"
    if not location:  # a check across sections: its message names the keys
        return error["msg"].removeprefix("Value error, ")
    expected = _EXPECTED.get(kind)
    if expected is None:
        message = error["msg"].removeprefix("Value error, ")
    else:
        context = {
            name: str(value).replace("'", "") for name, value in error.get("ctx", {}).items()
        }
        message = "expected " + expected.format_map(context)
    given = error.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    variables = unset.get(".".join(map(str, location)))
    if variables:
        shown = f" (the environment variable {', '.join(variables)} is not set)"
    return f"{path}: {message}{shown}"


def _written_secrets(raw: dict[str, Any]) -> tuple[str, ...]:
    """The keys whose value holds more than ``${VAR}`` references (a default counts)."""
    written = []
    for dotted in (spec.key_path for spec in PROVIDERS.values() if spec.key_path):
        node: Any = raw
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and _ENV_REF.sub(lambda m: m.group(2) or "", node).strip():
            written.append(dotted)
    return tuple(written)


def parse_config(raw: Any, source: str) -> LoadedConfig:
    """Validate a parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must hold a mapping of keys (e.g. 'speech:')"])
    unset: dict[str, tuple[str, ...]] = {}
    data = _interpolate(_apply_default_secrets(raw), "", unset)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, unset) for e in exc.errors(include_url=False)]
        raise ConfigError(source, problems) from None
    return LoadedConfig(
        config=config, source=source, unset_env=unset, written_secrets=_written_secrets(raw)
    )


def load_config(path: Path | None) -> LoadedConfig:
    """Load ``path``; with None, the file named by $VOICE_SATELLITE_CONFIG, then
    /etc/voice-satellite/config.yaml, then built-in defaults."""
    if path is None:
        env_path = os.environ.get(CONFIG_ENV)
        if env_path:
            path = Path(env_path)
        elif DEFAULT_CONFIG_PATH.exists():
            path = DEFAULT_CONFIG_PATH
        else:
            return parse_config({}, "built-in defaults")
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    return parse_config(raw, source)


def read_secret(value: SecretStr, file: Path | None) -> str:
    """The secret's value: from ``file`` when one is configured, else the (interpolated) value."""
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return value.get_secret_value().strip()
