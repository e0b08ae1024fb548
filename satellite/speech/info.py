"""The ``info`` the speech endpoint advertises to Home Assistant.

Home Assistant uses the first installed ASR and TTS program, so a failover chain is one
program: a model per ASR provider, and every provider's voices, each labelled with its
provider.
"""

from __future__ import annotations

from typing import Any

from wyoming.info import AsrModel, AsrProgram, Attribution, Info, TtsProgram, TtsVoice

from .. import __version__
from ..provider_table import PROVIDERS
from ..providers.base import AsrProvider, TtsProvider

ATTRIBUTIONS = {
    name: Attribution(name=spec.attribution, url=spec.url) for name, spec in PROVIDERS.items()
}
_TITLES = {name: spec.title for name, spec in PROVIDERS.items()}


def _program(members: tuple[AsrProvider | TtsProvider, ...], what: str) -> dict[str, Any]:
    """The fields every program of this endpoint shares, named after its first provider."""
    first = members[0].name
    titles = ", then ".join(_TITLES[m.name] for m in members)
    return {
        "name": f"voice-satellite-{first}",
        "description": f"{titles} {what} via voice-satellite",
        "attribution": ATTRIBUTIONS[first],
        "installed": True,
        "version": __version__,
    }


def build_info(asr: AsrProvider | None, tts: TtsProvider | None) -> Info:
    """Info with one ASR program and one TTS program."""
    info = Info()
    if asr is not None:
        members = asr.members
        models = [
            AsrModel(
                name=member.model,
                description=f"{_TITLES[member.name]} {member.model}",
                attribution=ATTRIBUTIONS[member.name],
                installed=True,
                version=None,
                languages=list(member.languages),
            )
            for member in members
        ]
        program = _program(members, "speech-to-text")
        info.asr.append(AsrProgram(**program, models=models, supports_transcript_streaming=True))
    if tts is not None:
        members = tts.members
        chained = len(members) > 1
        voices = []
        for voice in tts.voices:
            provider = voice.provider or tts.name
            description = voice.description or voice.name
            if chained:
                description = f"{description} ({_TITLES[provider]})"
            voices.append(
                TtsVoice(
                    name=voice.name,
                    description=description,
                    attribution=ATTRIBUTIONS[provider],
                    installed=True,
                    version=None,
                    languages=list(voice.languages),
                )
            )
        program = _program(members, f"text-to-speech ({tts.model})")
        info.tts.append(TtsProgram(**program, voices=voices, supports_synthesize_streaming=True))
    return info
