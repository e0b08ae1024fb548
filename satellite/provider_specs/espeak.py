"""eSpeak NG, the offline voice: its config section and its row of the provider table."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from ..config_base import Model, Timeouts
from .spec import ProviderSpec

if TYPE_CHECKING:
    from ..providers.base import Credentials


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


# --- Its row -----------------------------------------------------------------


def _espeak_tts(config: EspeakConfig, _credentials: Credentials, voice: str | None):
    from ..providers.espeak_tts import EspeakTtsProvider

    return EspeakTtsProvider(config, voice)


def _espeak_setup(config: EspeakConfig, _hint: Callable[[str], str]) -> list[str]:
    if shutil.which(config.program) is not None:
        return []
    return [
        f"the offline voice's program {config.program!r} is not installed: "
        "apt install espeak-ng (or set providers.espeak.program to its path)"
    ]


def _espeak_voice(config: EspeakConfig, voice: str) -> str | None:
    """Asks the program itself, which knows its voices, languages and variants (en-us+f3)."""
    if shutil.which(config.program) is None:
        return None  # the setup check says what to install
    try:
        spoken = subprocess.run(
            [config.program, "-q", "-v", voice, ""], capture_output=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if spoken.returncode == 0:
        return None
    return "is not an espeak-ng voice (espeak-ng --voices lists them, e.g. en-us, cmn, de)"


SPEC = ProviderSpec(
    name="espeak",
    title="eSpeak NG",
    attribution="eSpeak NG",
    url="https://github.com/espeak-ng/espeak-ng",
    section=EspeakConfig,
    key_field=None,
    env={},
    setup_check=_espeak_setup,
    tts=_espeak_tts,
    voice_check=_espeak_voice,
    sdk=False,
)
