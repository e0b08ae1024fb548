"""The DashScope models this version knows: which API serves each, the audio it takes or
gives, and, for voices, its system voices and default voice.

A model released after this version can still be named, with ``allow_unlisted_model: true``
in its role's section: it is then served by the API its name suggests (``qwen...realtime``:
the realtime API; another ``qwen...tts``: the HTTP API) at the sample rate its name suggests
(``-8k-``: 8 kHz).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Api = Literal["inference", "realtime", "http"]

_ZH_EN = ("zh", "en")
_QWEN3_LANGUAGES = ("zh", "en", "es", "ru", "it", "fr", "ko", "ja", "de", "pt")


@dataclass(frozen=True)
class DashScopeModel:
    name: str
    # inference: /api-ws/v1/inference (paraformer, fun-asr, CosyVoice); realtime: the Qwen
    # realtime websocket; http: Qwen TTS over HTTP, streamed as server-sent events
    api: Api
    sample_rate: int  # ASR: the audio it takes; TTS: the audio it gives unless configured
    languages: tuple[str, ...] = ()  # TTS: what its system voices speak
    voices: tuple[tuple[str, str], ...] = ()  # TTS: (voice, description), the default first
    options: frozenset[str] = frozenset()  # ASR: the recognition options it takes

    def refuses(self, option: str) -> bool:
        return option not in self.options

    @property
    def default_voice(self) -> str | None:
        return self.voices[0][0] if self.voices else None


_COSYVOICE_V1_VOICES = (
    ("longwan", "Longwan: warm, positive female voice"),
    ("longxiaochun", "Longxiaochun: bright, articulate female voice"),
    ("longxiaoxia", "Longxiaoxia: calm, authoritative female voice"),
    ("longhua", "Longhua: lively, sweet female voice"),
    ("loongbella", "Bella: crisp, capable female voice"),
    ("loongstella", "Stella: lively, clear female voice"),
    ("longcheng", "Longcheng: thoughtful young male voice"),
    ("longshu", "Longshu: steady young male voice"),
    ("longxiaocheng", "Longxiaocheng: deep, magnetic male voice"),
)
_COSYVOICE_V2_VOICES = (
    ("longxiaochun_v2", "Longxiaochun: bright, articulate female voice"),
    ("longxiaoxia_v2", "Longxiaoxia: calm, authoritative female voice"),
    ("longwan_v2", "Longwan: warm, positive female voice"),
    ("longhua_v2", "Longhua: lively, sweet female voice"),
    ("loongbella_v2", "Bella: crisp, capable female voice"),
    ("longcheng_v2", "Longcheng: thoughtful young male voice"),
    ("longshu_v2", "Longshu: steady young male voice"),
    ("longxiaocheng_v2", "Longxiaocheng: deep, magnetic male voice"),
)
_QWEN_TTS_VOICES = (
    ("Cherry", "Cherry: sunny, friendly female voice"),
    ("Serena", "Serena: gentle female voice"),
    ("Ethan", "Ethan: sunny, warm male voice"),
    ("Chelsie", "Chelsie: soft, anime-style female voice"),
)
_QWEN3_TTS_VOICES = (
    *_QWEN_TTS_VOICES,
    ("Nofish", ""),
    ("Jennifer", ""),
    ("Ryan", ""),
    ("Katerina", ""),
    ("Elias", ""),
)

# Recognition options (config key -> the service's parameter), and which models take them.
RECOGNITION_OPTIONS = {
    "disfluency_removal": "disfluency_removal_enabled",
    "punctuation": "semantic_punctuation_enabled",
    "max_sentence_silence_ms": "max_sentence_silence",
}
_PARAFORMER_V2 = frozenset(RECOGNITION_OPTIONS)
_PARAFORMER_V1 = frozenset({"disfluency_removal"})
_FUN_ASR = frozenset({"punctuation", "max_sentence_silence_ms"})

ASR_MODELS = {
    model.name: model
    for model in (
        DashScopeModel("paraformer-realtime-v2", "inference", 16000, options=_PARAFORMER_V2),
        DashScopeModel("paraformer-realtime-v1", "inference", 16000, options=_PARAFORMER_V1),
        DashScopeModel("paraformer-realtime-8k-v2", "inference", 8000, options=_PARAFORMER_V2),
        DashScopeModel("paraformer-realtime-8k-v1", "inference", 8000, options=_PARAFORMER_V1),
        DashScopeModel("fun-asr-realtime", "inference", 16000, options=_FUN_ASR),
        DashScopeModel("qwen3-asr-flash-realtime", "realtime", 16000),
    )
}
TTS_MODELS = {
    model.name: model
    for model in (
        DashScopeModel("cosyvoice-v1", "inference", 22050, _ZH_EN, _COSYVOICE_V1_VOICES),
        DashScopeModel("cosyvoice-v2", "inference", 22050, _ZH_EN, _COSYVOICE_V2_VOICES),
        DashScopeModel("qwen3-tts-flash-realtime", "realtime", 24000, _QWEN3_LANGUAGES,
                       _QWEN3_TTS_VOICES),
        DashScopeModel("qwen-tts-realtime", "realtime", 24000, _ZH_EN, _QWEN_TTS_VOICES),
        DashScopeModel("qwen3-tts-flash", "http", 24000, _QWEN3_LANGUAGES, _QWEN3_TTS_VOICES),
        DashScopeModel("qwen-tts", "http", 24000, _ZH_EN, _QWEN_TTS_VOICES),
    )
}  # fmt: skip


def _unlisted(name: str, role: Literal["asr", "tts"]) -> DashScopeModel:
    """What a model this version does not list is taken to be, from its name."""
    api: Api = "inference"
    if name.startswith("qwen") and "realtime" in name:
        api = "realtime"
    elif name.startswith("qwen") and "tts" in name and role == "tts":
        api = "http"
    if role == "asr":
        options = frozenset(RECOGNITION_OPTIONS) if api == "inference" else frozenset()
        return DashScopeModel(name, api, 8000 if "-8k-" in name else 16000, options=options)
    family = TTS_MODELS[
        {"realtime": "qwen3-tts-flash-realtime", "http": "qwen3-tts-flash"}.get(api, "cosyvoice-v2")
    ]
    return DashScopeModel(name, api, family.sample_rate, family.languages)


def asr_model(name: str) -> DashScopeModel:
    return ASR_MODELS.get(name) or _unlisted(name, "asr")


def tts_model(name: str) -> DashScopeModel:
    return TTS_MODELS.get(name) or _unlisted(name, "tts")
