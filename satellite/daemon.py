"""Composes the configured roles into one running daemon: start, reload, and stop.

Each role's modules (providers, audio libraries, zeroconf) are imported only when the role
is enabled, so a satellite-only device never loads a cloud SDK.

SIGHUP reloads the config file: a valid one applies to the running roles without closing
any connection (providers, voices, VAD, devices, log level); an invalid one is logged and
the running config stays. SIGTERM (or SIGINT) refuses new requests, gives those in flight
``shutdown_timeout_s`` to finish, ends the rest with an ``error``, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wyoming.server import AsyncServer

from . import logs
from .bridge import run_blocking
from .config import (
    Config,
    ConfigError,
    LimitsConfig,
    LoadedConfig,
    advertised_name,
    load_config,
)
from .config_warnings import config_warnings
from .connections import Connections, MakeHandler
from .memory import return_freed_memory
from .recording import Recorder
from .systemd import Notifier

if TYPE_CHECKING:
    from .speech.requests import SpeechService

_LOGGER = logging.getLogger(__name__)

# Keys whose change needs a restart: the servers' addresses and advertised names, and where
# the SDKs run (with workers the daemon's process starts without ssl: openssl.py).
_RESTART_KEYS = (
    "providers.isolation",
    "zeroconf",
    "speech.enabled",
    "speech.uri",
    "speech.name",
    "satellite.enabled",
    "satellite.uri",
    "satellite.name",
)


STATUS_EVERY_S = 2.0  # how often a changed status is sent to systemd
# Closing a role (its connections, then its providers) after the drain: an SDK that hangs
# while closing must not keep the daemon from exiting (the unit's TimeoutStopSec is 20 s).
ROLE_STOP_S = 5.0


def _value(config: Config, dotted: str) -> object:
    node: object = config
    for key in dotted.split("."):
        node = getattr(node, key)
    return node


class _Role(ABC):
    """One started server: what it serves, and how it reloads and stops."""

    server: AsyncServer
    connections: Connections  # who is connected; admits new clients within the limits
    name: str
    uri: str

    async def _serve(self, uri: str, limits: LimitsConfig, make: MakeHandler) -> None:
        self.uri = uri
        self.connections = Connections(self.name, limits)
        self.server = AsyncServer.from_uri(uri)
        await self.server.start(self.connections.factory(make))

    @abstractmethod
    def status(self) -> str:
        """What the role has done so far, in a few words."""

    @abstractmethod
    async def reload(self, old: Config, new: LoadedConfig) -> None:
        """Apply a new config to the running role."""

    @abstractmethod
    async def drain(self, timeout: float) -> None:
        """Refuse new work and give the work in flight ``timeout`` seconds."""

    async def stop(self) -> None:
        """Close every connection and release what the role holds."""
        await self.server.stop()


class _SpeechRole(_Role):
    async def start(self, loaded: LoadedConfig) -> None:
        from .providers.supervisor import WorkerStats
        from .speech.requests import SpeechEndpoint
        from .speech.server import SpeechHandler

        config = loaded.config.speech
        self.name = advertised_name(config.name, "speech")
        self._background: set[asyncio.Task[None]] = set()  # warm-ups, retiring services
        self._workers = WorkerStats()
        self._isolation = loaded.config.providers.isolation
        recorder = Recorder(loaded.config.recordings)
        # A worker that cannot start at boot leaves its provider failing (a failover list
        # moves on) while it is tried again; the satellite and the other providers serve.
        service = await self._build_service(loaded, on_late_start=self._worker_started_late)
        self.endpoint = SpeechEndpoint(service, recorder)
        await self._serve(
            config.uri,
            loaded.config.limits,
            lambda r, w: SpeechHandler(r, w, endpoint=self.endpoint),
        )
        _LOGGER.info("speech endpoint listening on %s: %s", config.uri, self._describe())

    async def _build_service(
        self, loaded: LoadedConfig, on_late_start: Callable[[], None] | None = None
    ) -> SpeechService:
        from .providers.registry import start_providers
        from .speech.info import build_info
        from .speech.requests import SpeechService

        asr, tts = await start_providers(loaded, self._isolation, self._workers, on_late_start)
        service = SpeechService(
            asr=asr,
            tts=tts,
            info=build_info(asr, tts).event(),
            transcript_streaming=loaded.config.speech.asr.transcript_streaming,
        )
        # Connections are opened ahead of the first request, without delaying readiness.
        self._in_background(asr.prepare())
        self._in_background(tts.prepare())
        return service

    def _worker_started_late(self) -> None:
        from .speech.info import build_info

        service = self.endpoint.service
        self.endpoint.describe(build_info(service.asr, service.tts).event())
        _LOGGER.info("speech endpoint: %s", self._describe())

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _describe(self) -> str:
        service = self.endpoint.service
        asr, tts = service.asr, service.tts
        voice = tts.voices[0].name if tts.voices else "-"
        return (
            f"ASR {asr.name} {asr.model} ({', '.join(asr.languages)}); "
            f"TTS {tts.name} {tts.model} voice {voice}"
        )

    def status(self) -> str:
        status = self.endpoint.status()
        if self._isolation == "process":
            status += f", {self._workers.describe()}"
        return status

    async def reload(self, old: Config, new: LoadedConfig) -> None:
        config = new.config
        if config.recordings != old.recordings:
            self.endpoint.recorder = Recorder(config.recordings)
        if self._isolation == "process" and (config.log_level, config.log_format) != (
            old.log_level,
            old.log_format,
        ):
            from .providers.isolated import follow_logs

            service = self.endpoint.service
            follow_logs([p for p in (service.asr, service.tts) if p is not None])
        if (config.speech, config.providers) == (old.speech, old.providers):
            return
        from .providers.supervisor import WorkerStartError

        try:
            service = await self._build_service(new)
        except WorkerStartError as exc:
            _LOGGER.error("reload: %s; the speech endpoint keeps its providers", exc)
            return
        self._in_background(self.endpoint.replace(service))
        _LOGGER.info(
            "speech endpoint: %s (requests in progress finish on the previous providers)",
            self._describe(),
        )

    async def drain(self, timeout: float) -> None:
        in_flight = self.endpoint.in_flight
        if in_flight:
            _LOGGER.info(
                "speech endpoint: waiting up to %g s for %d request(s)", timeout, in_flight
            )
        ended = await self.endpoint.drain(timeout)
        if ended:
            _LOGGER.warning("speech endpoint: ended %d unfinished request(s)", ended)

    async def stop(self) -> None:
        await super().stop()
        for task in self._background:  # warm-ups, and retirements whose requests ended
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.endpoint.service.close()
        if self.endpoint.recorder is not None:
            await self.endpoint.recorder.wait_saved()


class _SatelliteRole(_Role):
    async def start(self, loaded: LoadedConfig) -> None:
        from .assist.satellite import Satellite
        from .audio.mic import Mic
        from .audio.speaker import Speaker

        config = loaded.config.satellite
        self.name = advertised_name(config.name, "satellite")
        speaker = Speaker(config.speaker) if config.speaker is not None else None
        recorder = Recorder(loaded.config.recordings)
        self.satellite = Satellite(config, self.name, Mic(config.mic), speaker, recorder)
        await self._serve(config.uri, loaded.config.limits, self.satellite.handler)
        wake = self.satellite.front.wake
        _LOGGER.info(
            "satellite %r listening on %s: mic %s, speaker %s, wake word %s",
            self.name,
            config.uri,
            self.satellite.mic.description,
            speaker.description if speaker is not None else "none",
            f"{wake.engine.program} ({', '.join(m.name for m in wake.engine.models)})"
            if wake is not None
            else "none (the VAD opens runs)",
        )
        self._mic_loop = asyncio.create_task(self.satellite.run_mic(), name="mic")

    def status(self) -> str:
        return self.satellite.status()

    async def reload(self, old: Config, new: LoadedConfig) -> None:
        if new.config.recordings != old.recordings:
            self.satellite.recorder = Recorder(new.config.recordings)
        if new.config.satellite != old.satellite:
            await self.satellite.reconfigure(new.config.satellite)
            _LOGGER.info("satellite: new settings applied")

    async def drain(self, timeout: float) -> None:
        await self.satellite.drain(timeout)

    async def stop(self) -> None:
        self._mic_loop.cancel()
        await super().stop()
        await self.satellite.close()
        if self.satellite.recorder is not None:
            await self.satellite.recorder.wait_saved()


async def _stop_role(role: _Role) -> None:
    """Stop a role within ROLE_STOP_S; a failure or a hang is logged, not waited for."""
    try:
        async with asyncio.timeout(ROLE_STOP_S):
            await role.stop()
    except TimeoutError:
        _LOGGER.warning("%s: still closing after %g s; exiting anyway", role.name, ROLE_STOP_S)
    except Exception:
        _LOGGER.exception("%s: closing failed", role.name)


class Daemon:
    """Runs the configured roles until SIGTERM or SIGINT; SIGHUP reloads the config."""

    def __init__(self, loaded: LoadedConfig, config_path: Path | None = None) -> None:
        self.loaded = loaded
        self.config_path = config_path  # what to read again on SIGHUP (None: the default)
        self.started_config = loaded.config  # what the servers were started with
        self._stop = asyncio.Event()
        self._systemd = Notifier()
        self._roles: list[_Role] = []
        self._reload_lock = asyncio.Lock()
        self._reloads: set[asyncio.Task[None]] = set()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        task = asyncio.create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def run(self) -> None:
        config = self.loaded.config
        _LOGGER.info("configuration: %s", self.loaded.source)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        discovery = None
        try:
            if config.speech.enabled:
                speech = _SpeechRole()
                await speech.start(self.loaded)
                self._roles.append(speech)
            if config.satellite.enabled:
                satellite = _SatelliteRole()
                await satellite.start(self.loaded)
                self._roles.append(satellite)
            if not self._roles:
                _LOGGER.warning("no role is enabled (speech.enabled and satellite.enabled)")
            if config.zeroconf and self._roles:
                from .discovery import Advertisement, Discovery

                discovery = Discovery([Advertisement(r.name, r.uri) for r in self._roles])
                await discovery.start()
            # What start-up built (modules, config models, providers) lives as long as the
            # process: out of the cycle collector's counts, the cycles that ended connections
            # and requests leave behind are collected sooner, and each collection costs less.
            gc.freeze()
            self._systemd.ready(self._status())
            watchdog = asyncio.create_task(self._systemd.feed_watchdog(), name="watchdog")
            reports = asyncio.create_task(self._report_status(), name="status")
            trims = asyncio.create_task(return_freed_memory(), name="memory")
            await self._stop.wait()
            for task in (watchdog, reports, trims):
                task.cancel()
            _LOGGER.info("stopping")
            self._systemd.stopping()
            await self._drain()
        finally:
            for task in self._reloads:
                task.cancel()
            await asyncio.gather(*(_stop_role(role) for role in self._roles))
            if discovery is not None:
                with contextlib.suppress(Exception):
                    await discovery.close()
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        _LOGGER.info("stopped")

    def _status(self) -> str:
        serving = "; ".join(f"{r.name} on {r.uri}: {r.status()}" for r in self._roles)
        return f"serving: {serving or 'no role'}"

    async def _report_status(self) -> None:
        """Keep ``systemctl status`` current: a new STATUS= line when something changed."""
        reported = self._status()
        while True:
            await asyncio.sleep(STATUS_EVERY_S)
            if self._reload_lock.locked():
                continue  # the reload reports when it ends
            status = self._status()
            if status != reported:
                self._systemd.status(status)
                reported = status

    async def _drain(self) -> None:
        timeout = self.loaded.config.shutdown_timeout_s
        for role in self._roles:
            role.connections.close_doors()
        await asyncio.gather(*(role.drain(timeout) for role in self._roles))

    async def reload(self) -> None:
        """Read the config file again and apply it; an invalid one changes nothing."""
        async with self._reload_lock:
            self._systemd.reloading()
            try:
                await self._reload()
            finally:
                self._systemd.ready(self._status())

    async def _reload(self) -> None:
        try:
            new = await run_blocking(load_config, self.config_path)
        except ConfigError as exc:
            _LOGGER.error(
                "reload: %s is invalid, keeping the running configuration:\n  %s",
                exc.source,
                "\n  ".join(exc.problems),
            )
            return
        old = self.loaded.config
        pending = [
            key
            for key in _RESTART_KEYS
            if _value(new.config, key) != _value(self.started_config, key)
        ]
        if pending:
            _LOGGER.warning(
                "reload: %s changed; restart the service to apply (the rest applies now)",
                ", ".join(pending),
            )
        # Only what changed in the file, so a --log-level given to `run` stays otherwise.
        if new.config.log_level != old.log_level:
            logs.set_level(new.config.log_level)
        if new.config.log_format != old.log_format:
            logs.set_format(new.config.log_format)
        for warning in config_warnings(new):
            _LOGGER.warning("reload: %s", warning)
        for role in self._roles:
            role.connections.limits = new.config.limits  # for connections opened from now on
            await role.reload(old, new)
        self.loaded = new
        _LOGGER.info("reload: configuration from %s applied", new.source)
