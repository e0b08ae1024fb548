"""DashScope (Alibaba Cloud Model Studio): its config section and its row of the provider table.

paraformer / fun-asr and CosyVoice speak the inference websocket, the Qwen realtime models
the realtime websocket, and qwen3-tts-flash / qwen-tts HTTP (dashscope_models.py says which).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..config_base import Model, Timeouts, WarmConnections, check_http_url, check_ws_url
from .azure import AZURE_VOICE
from .dashscope_models import ASR_MODELS, RECOGNITION_OPTIONS, TTS_MODELS, asr_model, tts_model
from .spec import ProviderSpec

if TYPE_CHECKING:
    from ..providers.base import Credentials


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

    _url = field_validator("websocket_url", "realtime_url")(check_ws_url)
    _http = field_validator("http_url")(check_http_url)


# --- Its row -----------------------------------------------------------------


def _dashscope_asr(config: DashScopeConfig, credentials: Credentials, language: str | None):
    if asr_model(config.asr.model).api == "realtime":
        from ..providers.dashscope_realtime_asr import QwenRealtimeAsrProvider

        return QwenRealtimeAsrProvider(config, credentials, language)
    from ..providers.dashscope_asr import DashScopeAsrProvider

    return DashScopeAsrProvider(config, credentials, language)


def _dashscope_tts(config: DashScopeConfig, credentials: Credentials, voice: str | None):
    api = tts_model(config.tts.model).api
    if api == "realtime":
        from ..providers.dashscope_realtime_tts import QwenRealtimeTtsProvider

        return QwenRealtimeTtsProvider(config, credentials, voice)
    if api == "http":
        from ..providers.dashscope_http_tts import QwenHttpTtsProvider

        return QwenHttpTtsProvider(config, credentials, voice)
    from ..providers.dashscope_tts import DashScopeTtsProvider

    return DashScopeTtsProvider(config, credentials, voice)


def _dashscope_setup(config: DashScopeConfig, hint: Callable[[str], str]) -> list[str]:
    if config.api_key.get_secret_value() or config.api_key_file:
        return []
    return [
        "DashScope has no API key; requests will fail until you "
        + hint("providers.dashscope.api_key")
    ]


def _dashscope_voice(_config: DashScopeConfig, voice: str) -> str | None:
    if not AZURE_VOICE.match(voice):
        return None
    return "is an Azure voice, not a DashScope one"


SPEC = ProviderSpec(
    name="dashscope",
    title="DashScope",
    attribution="Alibaba Cloud Model Studio (DashScope)",
    url="https://help.aliyun.com/zh/model-studio/",
    section=DashScopeConfig,
    key_field="api_key",
    env={"api_key": "DASHSCOPE_API_KEY"},
    setup_check=_dashscope_setup,
    asr=_dashscope_asr,
    tts=_dashscope_tts,
    voice_check=_dashscope_voice,
    preload=tuple(
        f"satellite.providers.{module}"
        for module in (
            "dashscope_asr",
            "dashscope_realtime_asr",
            "dashscope_tts",
            "dashscope_realtime_tts",
            "dashscope_http_tts",
        )
    ),
)
