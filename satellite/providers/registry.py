"""Builds the configured providers from the provider table (each SDK is imported only when
its provider is used), and reads their credentials."""

from __future__ import annotations

import asyncio
from typing import Any

from .. import logs
from ..config import LoadedConfig, read_secret
from ..provider_table import PROVIDERS, Role
from .base import AsrProvider, Credentials, Deadlines, TtsProvider
from .supervisor import Limits, WorkerStats
from .worker_ipc import WorkerSpec


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


def _one(loaded: LoadedConfig, provider: str, choice: str | None, role: Role) -> Any:
    """The provider of ``role`` named ``provider``; ``choice``: the role's language or voice."""
    loader = getattr(PROVIDERS[provider], role)
    section = getattr(loaded.config.providers, provider)
    return loader(section, credentials_for(loaded, provider), choice)


def _choices(loaded: LoadedConfig, role: Role) -> list[tuple[str, str | None]]:
    """Each provider of ``role`` in order, with its language (ASR) or voice (TTS):
    ``speech.tts.voice`` is the first provider's."""
    if role == "asr":
        asr = loaded.config.speech.asr
        return [(name, asr.language) for name in asr.provider]
    tts = loaded.config.speech.tts
    return [(name, tts.voice if i == 0 else None) for i, name in enumerate(tts.provider)]


def _asr_chain(loaded: LoadedConfig, chain: list[AsrProvider]) -> AsrProvider:
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverAsr

    return FailoverAsr(chain, loaded.config.speech.failover)


def _tts_chain(loaded: LoadedConfig, chain: list[TtsProvider]) -> TtsProvider:
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverTts

    return FailoverTts(chain, loaded.config.speech.failover)


def build_asr(loaded: LoadedConfig) -> AsrProvider:
    """The ASR provider, or a failover chain of them when several are listed."""
    return _asr_chain(loaded, [_one(loaded, *choice, "asr") for choice in _choices(loaded, "asr")])


def build_tts(loaded: LoadedConfig) -> TtsProvider:
    """The TTS provider, or a failover chain of them."""
    return _tts_chain(loaded, [_one(loaded, *choice, "tts") for choice in _choices(loaded, "tts")])


async def start_providers(
    loaded: LoadedConfig, stats: WorkerStats
) -> tuple[AsrProvider, TtsProvider]:
    """Both roles' providers for the speech endpoint. With ``providers.isolation: process``
    each provider with an SDK runs in a worker process of its own (one for its ASR and TTS),
    started here (WorkerStartError when one cannot start); espeak-ng stays in the daemon."""
    if loaded.config.providers.isolation == "inline":
        return build_asr(loaded), build_tts(loaded)
    from .isolated import start_isolated

    settings = loaded.config.providers
    limits = Limits(settings.recycle_after_requests, settings.worker_max_rss_mb)
    level, fmt = logs.current()
    chains = {role: _choices(loaded, role) for role in ("asr", "tts")}
    isolated: dict[str, dict[str, str | None]] = {}  # provider -> its roles and their choices
    for role, chain in chains.items():
        for name, choice in chain:
            if PROVIDERS[name].sdk:
                isolated.setdefault(name, {})[role] = choice

    async def start(name: str, roles: dict[str, str | None]) -> dict[str, Any]:
        section = getattr(settings, name)
        spec = WorkerSpec(name, section, credentials_for(loaded, name), roles, level, fmt)
        return await start_isolated(spec, limits, stats, Deadlines.from_timeouts(section.timeouts))

    started = await asyncio.gather(
        *(start(name, roles) for name, roles in isolated.items()), return_exceptions=True
    )
    failure = next((s for s in started if isinstance(s, BaseException)), None)
    if failure is not None:
        await asyncio.gather(
            *(next(iter(s.values())).close() for s in started if not isinstance(s, BaseException)),
            return_exceptions=True,
        )
        raise failure
    stand_ins = dict(zip(isolated, started, strict=True))

    def member(role: Role, name: str, choice: str | None) -> Any:
        if name in stand_ins:
            return stand_ins[name][role]
        return _one(loaded, name, choice, role)

    return (
        _asr_chain(loaded, [member("asr", *choice) for choice in chains["asr"]]),
        _tts_chain(loaded, [member("tts", *choice) for choice in chains["tts"]]),
    )
