"""Every speech provider in one table: its name, roles, credentials, setup checks and loaders.

The config's validation and warnings, the endpoint's info, the registry and the credentials
read this table; nothing else names a provider. Importing it loads no SDK: each loader
imports its provider's module when that provider is used.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .dashscope_models import asr_model, tts_model

if TYPE_CHECKING:
    from .config import AzureConfig, DashScopeConfig, EspeakConfig
    from .providers.base import AsrProvider, Credentials, TtsProvider

Role = Literal["asr", "tts"]
# (the provider's config section, its credentials, the role's language or voice)
AsrLoader = Callable[[Any, "Credentials", "str | None"], "AsrProvider"]
TtsLoader = Callable[[Any, "Credentials", "str | None"], "TtsProvider"]
# The provider's config section and a function naming how to set a key path -> problems.
SetupCheck = Callable[[Any, Callable[[str], str]], list[str]]
# The provider's config section and a voice (speech.tts.voice, say --voice) -> why this
# provider cannot speak it ("is not an Azure voice ..."), or None (also when it cannot tell).
VoiceCheck = Callable[[Any, str], "str | None"]

AZURE_VOICE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]+)+$")  # LOCALE-NameNeural


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: what the config, the registry and Home Assistant need to know of it."""

    name: str  # its section under ``providers:`` and its name in ``speech.*.provider``
    title: str  # short, in descriptions and messages: "Azure Speech"
    attribution: str  # who provides it, as Home Assistant shows it
    url: str
    key_field: str | None  # the key's field in its section ("api_key"); a file: "<field>_file"
    env: dict[str, str]  # field of its section -> environment variable read when it is omitted
    setup_check: SetupCheck
    asr: AsrLoader | None = None
    tts: TtsLoader | None = None
    voice_check: VoiceCheck = lambda _section, _voice: None
    sdk: bool = True  # a cloud SDK: run in a worker process with ``providers.isolation: process``

    @property
    def key_path(self) -> str | None:
        """The key's dotted config path, e.g. ``providers.azure.key``."""
        return f"providers.{self.name}.{self.key_field}" if self.key_field else None

    def key_and_file(self, section: Any) -> tuple[Any, Any]:
        """The key as configured (a SecretStr, possibly empty) and the key file's path (or
        None); (None, None) for a provider that needs no key."""
        if not self.key_field:
            return None, None
        return getattr(section, self.key_field), getattr(section, f"{self.key_field}_file")


# --- DashScope ---------------------------------------------------------------


def _dashscope_asr(config: DashScopeConfig, credentials: Credentials, language: str | None):
    if asr_model(config.asr.model).api == "realtime":
        from .providers.dashscope_realtime_asr import QwenRealtimeAsrProvider

        return QwenRealtimeAsrProvider(config, credentials, language)
    from .providers.dashscope_asr import DashScopeAsrProvider

    return DashScopeAsrProvider(config, credentials, language)


def _dashscope_tts(config: DashScopeConfig, credentials: Credentials, voice: str | None):
    api = tts_model(config.tts.model).api
    if api == "realtime":
        from .providers.dashscope_realtime_tts import QwenRealtimeTtsProvider

        return QwenRealtimeTtsProvider(config, credentials, voice)
    if api == "http":
        from .providers.dashscope_http_tts import QwenHttpTtsProvider

        return QwenHttpTtsProvider(config, credentials, voice)
    from .providers.dashscope_tts import DashScopeTtsProvider

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


# --- Azure -------------------------------------------------------------------


def _azure_asr(config: AzureConfig, credentials: Credentials, language: str | None):
    from .providers.azure_asr import AzureAsrProvider

    return AzureAsrProvider(config, credentials, language)


def _azure_tts(config: AzureConfig, credentials: Credentials, voice: str | None):
    from .providers.azure_tts import AzureTtsProvider

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


# --- espeak-ng ---------------------------------------------------------------


def _espeak_tts(config: EspeakConfig, _credentials: Credentials, voice: str | None):
    from .providers.espeak_tts import EspeakTtsProvider

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


PROVIDERS: dict[str, ProviderSpec] = {
    spec.name: spec
    for spec in (
        ProviderSpec(
            "dashscope", "DashScope", "Alibaba Cloud Model Studio (DashScope)",
            "https://help.aliyun.com/zh/model-studio/", "api_key",
            {"api_key": "DASHSCOPE_API_KEY"}, _dashscope_setup, _dashscope_asr, _dashscope_tts,
            _dashscope_voice,
        ),
        ProviderSpec(
            "azure", "Azure Speech", "Microsoft Azure AI Speech",
            "https://learn.microsoft.com/azure/ai-services/speech-service/",
            "key", {"key": "AZURE_SPEECH_KEY", "region": "AZURE_SPEECH_REGION"},
            _azure_setup, _azure_asr, _azure_tts, _azure_voice,
        ),
        ProviderSpec(
            "espeak", "eSpeak NG", "eSpeak NG", "https://github.com/espeak-ng/espeak-ng",
            None, {}, _espeak_setup, tts=_espeak_tts, voice_check=_espeak_voice, sdk=False,
        ),
    )
}  # fmt: skip


def names_for(role: Role) -> tuple[str, ...]:
    """The providers that can serve ``role``."""
    return tuple(name for name, spec in PROVIDERS.items() if getattr(spec, role) is not None)
