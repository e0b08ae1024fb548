"""Azure AI Speech: its config section and its row of the provider table."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from ..config_base import AUTO_LANGUAGE, Model, Timeouts, WarmConnections, check_ws_url
from .spec import ProviderSpec

if TYPE_CHECKING:
    from ..providers.base import Credentials

AZURE_VOICE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)+$")  # LOCALE-NameNeural
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
        return None if not value else check_ws_url(value)

    @field_validator("region")
    @classmethod
    def _empty_region(cls, value: str | None) -> str | None:
        return value or None


# --- Its row -----------------------------------------------------------------


def _azure_asr(config: AzureConfig, credentials: Credentials, language: str | None):
    from ..providers.azure_asr import AzureAsrProvider

    return AzureAsrProvider(config, credentials, language)


def _azure_tts(config: AzureConfig, credentials: Credentials, voice: str | None):
    from ..providers.azure_tts import AzureTtsProvider

    return AzureTtsProvider(config, credentials, voice)


def _azure_setup(config: AzureConfig, hint: Callable[[str], str]) -> list[str]:
    if config.host:  # a Speech container: neither key nor region needed
        return []
    problems = []
    if not (config.key.get_secret_value() or config.key_file):
        problems.append(
            "Azure Speech has no key; requests will fail until you " + hint("providers.azure.key")
        )
    if not config.region:
        problems.append(
            "Azure Speech has no region; "
            f"{hint('providers.azure.region')} or set providers.azure.host"
        )
    return problems


def _azure_voice(_config: AzureConfig, voice: str) -> str | None:
    if AZURE_VOICE.match(voice):
        return None
    return "is not an Azure voice (LOCALE-NameNeural)"


def _azure_language(config: AzureConfig, language: str) -> str | None:
    """Azure identifies a language among at most 10 locales, and not with a Custom Speech
    model (trained for one language)."""
    if language != AUTO_LANGUAGE:
        return None
    if config.asr.endpoint_id:
        return (
            "cannot be used with providers.azure.asr.endpoint_id (a Custom Speech model knows "
            "one language): name the language instead"
        )
    if len(config.asr.languages) > MAX_IDENTIFIED_LOCALES:
        return (
            f"identifies among at most {MAX_IDENTIFIED_LOCALES} locales; "
            f"providers.azure.asr.languages lists {len(config.asr.languages)}"
        )
    return None


SPEC = ProviderSpec(
    name="azure",
    title="Azure Speech",
    attribution="Microsoft Azure AI Speech",
    url="https://learn.microsoft.com/azure/ai-services/speech-service/",
    section=AzureConfig,
    key_field="key",
    env={"key": "AZURE_SPEECH_KEY", "region": "AZURE_SPEECH_REGION"},
    setup_check=_azure_setup,
    asr=_azure_asr,
    tts=_azure_tts,
    voice_check=_azure_voice,
    language_check=_azure_language,
    preload=("satellite.providers.azure_asr", "satellite.providers.azure_tts"),
)
