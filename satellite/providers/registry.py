"""Builds the configured providers; each SDK is imported only when its provider is used."""

from __future__ import annotations

from ..config import LoadedConfig, read_secret
from .base import AsrProvider, Credentials, TtsProvider

_KEY_PATHS = {"dashscope": "providers.dashscope.api_key", "azure": "providers.azure.key"}


def credentials_for(loaded: LoadedConfig, provider: str) -> Credentials:
    """The provider's key (possibly empty) and how a user would supply a missing one."""
    providers = loaded.config.providers
    if provider == "dashscope":
        secret, file = providers.dashscope.api_key, providers.dashscope.api_key_file
    else:
        secret, file = providers.azure.key, providers.azure.key_file
    hint = loaded.secret_hint(_KEY_PATHS[provider])
    try:
        key = read_secret(secret, file)
    except OSError as exc:
        key, hint = "", f"cannot read the key file {file}: {exc.strerror or exc}"
    return Credentials(key=key, hint=hint)


def build_asr(loaded: LoadedConfig) -> AsrProvider:
    role = loaded.config.speech.asr
    credentials = credentials_for(loaded, role.provider)
    if role.provider == "dashscope":
        from .dashscope_asr import DashScopeAsrProvider

        return DashScopeAsrProvider(loaded.config.providers.dashscope, credentials, role.language)
    from .azure_asr import AzureAsrProvider

    return AzureAsrProvider(loaded.config.providers.azure, credentials, role.language)


def build_tts(loaded: LoadedConfig) -> TtsProvider:
    role = loaded.config.speech.tts
    credentials = credentials_for(loaded, role.provider)
    if role.provider == "dashscope":
        from .dashscope_tts import DashScopeTtsProvider

        return DashScopeTtsProvider(loaded.config.providers.dashscope, credentials, role.voice)
    from .azure_tts import AzureTtsProvider

    return AzureTtsProvider(loaded.config.providers.azure, credentials, role.voice)
