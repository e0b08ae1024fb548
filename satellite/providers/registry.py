"""Builds the configured providers from the provider table (each SDK is imported only when
its provider is used), and reads their credentials."""

from __future__ import annotations

from typing import Any

from ..config import LoadedConfig, read_secret
from ..provider_table import PROVIDERS, Role
from .base import AsrProvider, Credentials, TtsProvider


def credentials_for(loaded: LoadedConfig, provider: str) -> Credentials:
    """The provider's key (possibly empty) and how a user would supply a missing one."""
    spec = PROVIDERS[provider]
    if spec.key_path is None:
        return Credentials(key="", hint="")
    secret, file = spec.key_and_file(getattr(loaded.config.providers, provider))
    hint = loaded.secret_hint(spec.key_path)
    try:
        key = read_secret(secret, file)
    except OSError as exc:
        key, hint = "", f"cannot read the key file {file}: {exc.strerror or exc}"
    return Credentials(key=key, hint=hint)


def _one(loaded: LoadedConfig, provider: str, role: Role, choice: str | None) -> Any:
    """The provider of ``role`` named ``provider``; ``choice``: the role's language or voice."""
    loader = getattr(PROVIDERS[provider], role)
    section = getattr(loaded.config.providers, provider)
    return loader(section, credentials_for(loaded, provider), choice)


def build_asr(loaded: LoadedConfig) -> AsrProvider:
    """The ASR provider, or a failover chain of them when several are listed."""
    role = loaded.config.speech.asr
    chain: list[AsrProvider] = [_one(loaded, name, "asr", role.language) for name in role.provider]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverAsr

    return FailoverAsr(chain, loaded.config.speech.failover)


def build_tts(loaded: LoadedConfig) -> TtsProvider:
    """The TTS provider, or a failover chain of them; ``speech.tts.voice`` is the first's."""
    role = loaded.config.speech.tts
    chain: list[TtsProvider] = [
        _one(loaded, name, "tts", role.voice if index == 0 else None)
        for index, name in enumerate(role.provider)
    ]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverTts

    return FailoverTts(chain, loaded.config.speech.failover)
