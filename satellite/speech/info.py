"""The ``info`` the speech endpoint advertises to Home Assistant."""

from __future__ import annotations

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


def build_info(asr: AsrProvider | None, tts: TtsProvider | None) -> Info:
    """Info with one ASR program and one TTS program, each named after its provider."""
    info = Info()
    if asr is not None:
        attribution = ATTRIBUTIONS[asr.name]
        info.asr.append(
            AsrProgram(
                name=f"voice-satellite-{asr.name}",
                description=f"{_TITLES[asr.name]} speech-to-text via voice-satellite",
                attribution=attribution,
                installed=True,
                version=__version__,
                models=[
                    AsrModel(
                        name=asr.model,
                        description=f"{_TITLES[asr.name]} {asr.model}",
                        attribution=attribution,
                        installed=True,
                        version=None,
                        languages=list(asr.languages),
                    )
                ],
            )
        )
    if tts is not None:
        attribution = ATTRIBUTIONS[tts.name]
        info.tts.append(
            TtsProgram(
                name=f"voice-satellite-{tts.name}",
                description=f"{_TITLES[tts.name]} text-to-speech ({tts.model}) via voice-satellite",
                attribution=attribution,
                installed=True,
                version=__version__,
                supports_synthesize_streaming=True,
                voices=[
                    TtsVoice(
                        name=voice.name,
                        description=voice.description or voice.name,
                        attribution=attribution,
                        installed=True,
                        version=None,
                        languages=list(voice.languages),
                    )
                    for voice in tts.voices
                ],
            )
        )
    return info
