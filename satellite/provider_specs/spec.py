"""What a provider declares: the row of the provider table (provider_table.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..config_base import Model

if TYPE_CHECKING:
    from ..providers.base import AsrProvider, Credentials, TtsProvider

Role = Literal["asr", "tts"]
# (the provider's config section, its credentials, the role's language or voice)
AsrLoader = Callable[[Any, "Credentials", "str | None"], "AsrProvider"]
TtsLoader = Callable[[Any, "Credentials", "str | None"], "TtsProvider"]
# The provider's config section and a function naming how to set a key path -> problems.
SetupCheck = Callable[[Any, Callable[[str], str]], list[str]]
# The provider's config section and a choice (a voice: speech.tts.voice, say --voice; a
# language: speech.asr.language) -> why this provider cannot serve it, or None (also when it
# cannot tell).
ChoiceCheck = Callable[[Any, str], "str | None"]


def _any_choice(_section: Any, _choice: str) -> str | None:
    return None


@dataclass(frozen=True)
class ProviderSpec:
    """One provider: what the config, the registry and Home Assistant need to know of it."""

    name: str  # its section under ``providers:`` and its name in ``speech.*.provider``
    title: str  # short, in descriptions and messages: "Azure Speech"
    attribution: str  # who provides it, as Home Assistant shows it
    url: str
    section: type[Model]  # its config section, ``providers.<name>``
    key_field: str | None  # the key's field in its section ("api_key"); a file: "<field>_file"
    env: dict[str, str]  # field of its section -> environment variable read when it is omitted
    setup_check: SetupCheck
    asr: AsrLoader | None = None
    tts: TtsLoader | None = None
    voice_check: ChoiceCheck = _any_choice
    # ``speech.asr.language`` (a language or ``auto``) when this provider is in the ASR list.
    language_check: ChoiceCheck = _any_choice
    sdk: bool = True  # a cloud SDK: run in a worker process with ``providers.isolation: process``
    preload: tuple[str, ...] = ()  # its modules, imported once by its workers' launcher

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
