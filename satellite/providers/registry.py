"""Builds the configured providers from the provider table (each SDK is imported only when
its provider is used), and reads their credentials."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from .. import logs
from ..config import Isolation, LoadedConfig, read_secret
from ..provider_table import PROVIDERS, Role
from .base import AsrProvider, Credentials, Deadlines, TtsProvider
from .supervisor import Limits, WorkerStats
from .worker_ipc import WorkerSpec

# provider name -> role -> the stand-in for it whose SDK runs in a worker process
StandIns = Mapping[str, Mapping[str, Any]]


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


def _member(
    loaded: LoadedConfig, provider: str, role: Role, choice: str | None, stand_ins: StandIns
) -> Any:
    if provider in stand_ins:
        return stand_ins[provider][role]
    return _one(loaded, provider, role, choice)


def build_asr(loaded: LoadedConfig, stand_ins: StandIns | None = None) -> AsrProvider:
    """The ASR provider, or a failover chain of them when several are listed."""
    role, stand_ins = loaded.config.speech.asr, stand_ins or {}
    chain: list[AsrProvider] = [
        _member(loaded, name, "asr", role.language, stand_ins) for name in role.provider
    ]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverAsr

    return FailoverAsr(chain, loaded.config.speech.failover)


def build_tts(loaded: LoadedConfig, stand_ins: StandIns | None = None) -> TtsProvider:
    """The TTS provider, or a failover chain of them; ``speech.tts.voice`` is the first's."""
    role, stand_ins = loaded.config.speech.tts, stand_ins or {}
    chain: list[TtsProvider] = [
        _member(loaded, name, "tts", role.voice if index == 0 else None, stand_ins)
        for index, name in enumerate(role.provider)
    ]
    if len(chain) == 1:
        return chain[0]
    from .failover import FailoverTts

    return FailoverTts(chain, loaded.config.speech.failover)


async def start_providers(
    loaded: LoadedConfig,
    isolation: Isolation,
    stats: WorkerStats,
    on_late_start: Callable[[], None] | None = None,
) -> tuple[AsrProvider, TtsProvider]:
    """Both roles' providers for the speech endpoint. With ``isolation`` process (the
    daemon's ``providers.isolation`` as it started) each provider with an SDK runs in a
    worker process of its own (one for its ASR and TTS), started here; espeak-ng stays in
    the daemon. A worker that cannot start raises WorkerStartError, or, given
    ``on_late_start``, is tried again until it runs, when ``on_late_start`` is called (see
    ``start_isolated``)."""
    settings = loaded.config.providers
    if isolation == "inline":
        return build_asr(loaded), build_tts(loaded)
    from .isolated import start_isolated

    speech = loaded.config.speech
    roles: dict[str, dict[str, str | None]] = {}  # provider -> its roles, each with its choice
    for name in speech.asr.provider:
        roles.setdefault(name, {})["asr"] = speech.asr.language
    for index, name in enumerate(speech.tts.provider):
        roles.setdefault(name, {})["tts"] = speech.tts.voice if index == 0 else None
    names = [name for name in roles if PROVIDERS[name].sdk]
    limits = Limits(settings.recycle_after_requests, settings.worker_max_rss_mb)
    level, fmt = logs.current()

    async def start(name: str) -> dict[str, Any]:
        section = getattr(settings, name)
        spec = WorkerSpec(name, section, credentials_for(loaded, name), roles[name], level, fmt)
        deadlines = Deadlines.from_timeouts(section.timeouts)
        return await start_isolated(spec, limits, stats, deadlines, on_late_start)

    started = await asyncio.gather(*(start(name) for name in names), return_exceptions=True)
    failure = next((s for s in started if isinstance(s, BaseException)), None)
    if failure is not None:  # close the workers that did start
        await asyncio.gather(
            *(next(iter(s.values())).close() for s in started if not isinstance(s, BaseException)),
            return_exceptions=True,
        )
        raise failure
    stand_ins = dict(zip(names, started, strict=True))
    return build_asr(loaded, stand_ins), build_tts(loaded, stand_ins)
