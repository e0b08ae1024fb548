"""The ``info`` the speech endpoint advertises to Home Assistant."""

from __future__ import annotations

from typing import Any

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from .. import __version__
from ..providers.base import AsrProvider, TtsProvider

ATTRIBUTIONS = {
    "dashscope": Attribution(
        name="Alibaba Cloud Model Studio (DashScope)",
        url="https://help.aliyun.com/zh/model-studio/",
    ),
    "azure": Attribution(
        name="Microsoft Azure AI Speech",
        url="https://learn.microsoft.com/azure/ai-services/speech-service/",
    ),
}
_TITLES = {"dashscope": "DashScope", "azure": "Azure Speech"}


def _program(provider: str, what: str) -> dict[str, Any]:
    """The fields every program of this endpoint shares."""
    return {
        "name": f"voice-satellite-{provider}",
        "description": f"{_TITLES[provider]} {what} via voice-satellite",
        "attribution": ATTRIBUTIONS[provider],
        "installed": True,
        "version": __version__,
    }


def build_info(asr: AsrProvider | None, tts: TtsProvider | None) -> Info:
    """Info with one ASR program and one TTS program, each named after its provider."""
    info = Info()
    if asr is not None:
        model = AsrModel(
            name=asr.model,
            description=f"{_TITLES[asr.name]} {asr.model}",
            attribution=ATTRIBUTIONS[asr.name],
            installed=True,
            version=None,
            languages=list(asr.languages),
        )
        info.asr.append(AsrProgram(**_program(asr.name, "speech-to-text"), models=[model]))
    if tts is not None:
        voices = [
            TtsVoice(
                name=voice.name,
                description=voice.description or voice.name,
                attribution=ATTRIBUTIONS[tts.name],
                installed=True,
                version=None,
                languages=list(voice.languages),
            )
            for voice in tts.voices
        ]
        program = _program(tts.name, f"text-to-speech ({tts.model})")
        info.tts.append(TtsProgram(**program, voices=voices, supports_synthesize_streaming=True))
    return info
