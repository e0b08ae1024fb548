"""Builds the configured providers; each SDK is imported only when its provider is used."""

from __future__ import annotations

from ..config import LoadedConfig, is_qwen_realtime, read_secret
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


def _one_asr(loaded: LoadedConfig, provider: str, language: str | None) -> AsrProvider:
    providers = loaded.config.providers
    credentials = credentials_for(loaded, provider)
    if provider == "dashscope":
        if is_qwen_realtime(providers.dashscope.asr.model):
            from .dashscope_realtime_asr import QwenRealtimeAsrProvider

            return QwenRealtimeAsrProvider(providers.dashscope, credentials, language)
        from .dashscope_asr import DashScopeAsrProvider

        return DashScopeAsrProvider(providers.dashscope, credentials, language)
    from .azure_asr import AzureAsrProvider

    return AzureAsrProvider(providers.azure, credentials, language)


def _one_tts(loaded: LoadedConfig, provider: str, voice: str | None) -> TtsProvider:
    providers = loaded.config.providers
    if provider == "espeak":
        from .espeak_tts import EspeakTtsProvider

        return EspeakTtsProvider(providers.espeak, voice)
    credentials = credentials_for(loaded, provider)
    if provider == "dashscope":
        if is_qwen_realtime(providers.dashscope.tts.model):
            from .dashscope_realtime_tts import QwenRealtimeTtsProvider

            return QwenRealtimeTtsProvider(providers.dashscope, credentials, voice)
        from .dashscope_tts import DashScopeTtsProvider

        return DashScopeTtsProvider(providers.dashscope, credentials, voice)
    from .azure_tts import AzureTtsProvider

    return AzureTtsProvider(providers.azure, credentials, voice)


def build_asr(loaded: LoadedConfig) -> AsrProvider:
    """The ASR provider, or a failover chain of them when several are listed."""
    role = loaded.config.speech.asr
    chain = [_one_asr(loaded, name, role.language) for name in role.provider]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverAsr

    return FailoverAsr(chain, loaded.config.speech.failover)


def build_tts(loaded: LoadedConfig) -> TtsProvider:
    """The TTS provider, or a failover chain of them; ``speech.tts.voice`` is the first's."""
    role = loaded.config.speech.tts
    chain = [
        _one_tts(loaded, name, role.voice if index == 0 else None)
        for index, name in enumerate(role.provider)
    ]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverTts

    return FailoverTts(chain, loaded.config.speech.failover)
