"""Composes the configured roles into one running daemon and stops it cleanly.

Each role's modules (providers, audio libraries, zeroconf) are imported only when the role
is enabled, so a satellite-only device never loads a cloud SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from wyoming.server import AsyncServer, HandlerFactory

from .config import LoadedConfig, SatelliteConfig
from .systemd import Notifier

_LOGGER = logging.getLogger(__name__)


@dataclass
class _Role:
    """A started role: its server, its zeroconf name, and what to release on stop."""

    server: AsyncServer
    name: str
    uri: str
    closers: list[Callable[[], Awaitable[None]]]
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _serve(uri: str, handler_factory: HandlerFactory) -> AsyncServer:
    server = AsyncServer.from_uri(uri)
    await server.start(handler_factory)
    return server


def _default_name(role: str) -> str:
    return f"{socket.gethostname().split('.')[0]} {role}"


async def _start_speech(loaded: LoadedConfig) -> _Role:
    from .providers.registry import build_asr, build_tts
    from .speech.info import build_info
    from .speech.server import SpeechHandler, SpeechService

    config = loaded.config.speech
    asr, tts = build_asr(loaded), build_tts(loaded)
    service = SpeechService(
        asr=asr,
        tts=tts,
        info=build_info(asr, tts).event(),
        transcript_streaming=config.asr.transcript_streaming,
    )
    server = await _serve(config.uri, lambda r, w: SpeechHandler(r, w, service=service))
    # Connections are opened ahead of the first request, without delaying readiness.
    warm_up = [asyncio.create_task(asr.prepare()), asyncio.create_task(tts.prepare())]
    voice = tts.voices[0].name if tts.voices else "-"
    _LOGGER.info(
        "speech endpoint listening on %s: ASR %s %s (%s); TTS %s %s voice %s",
        config.uri,
        asr.name,
        asr.model,
        ", ".join(asr.languages),
        tts.name,
        tts.model,
        voice,
    )
    name = config.name or _default_name("speech")
    return _Role(server, name, config.uri, [asr.close, tts.close], warm_up)


async def _start_satellite(config: SatelliteConfig) -> _Role:
    from .assist.satellite import Satellite
    from .audio.mic import Mic
    from .audio.speaker import Speaker

    name = config.name or _default_name("satellite")
    speaker = Speaker(config.speaker) if config.speaker is not None else None
    satellite = Satellite(config, name, Mic(config.mic), speaker)
    server = await _serve(config.uri, satellite.handler)
    _LOGGER.info(
        "satellite %r listening on %s: mic %s, speaker %s",
        name,
        config.uri,
        satellite.mic.description,
        speaker.description if speaker is not None else "none",
    )
    mic = asyncio.create_task(satellite.run_mic(), name="mic")
    return _Role(server, name, config.uri, [satellite.close], [mic])


class Daemon:
    """Runs the configured roles until SIGTERM or SIGINT."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self._stop = asyncio.Event()
        self._systemd = Notifier()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.loaded.config
        _LOGGER.info("configuration: %s", self.loaded.source)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)

        roles: list[_Role] = []
        closers: list[Callable[[], Awaitable[None]]] = []
        try:
            if config.speech.enabled:
                roles.append(await _start_speech(self.loaded))
            if config.satellite.enabled:
                roles.append(await _start_satellite(config.satellite))
            if not roles:
                _LOGGER.warning("no role is enabled (speech.enabled and satellite.enabled)")
            if config.zeroconf and roles:
                from .discovery import Advertisement, Discovery

                discovery = Discovery([Advertisement(role.name, role.uri) for role in roles])
                closers.append(discovery.close)
                await discovery.start()
            serving = ", ".join(f"{role.name} on {role.uri}" for role in roles) or "no role"
            self._systemd.ready(f"serving: {serving}")
            watchdog = asyncio.create_task(self._systemd.feed_watchdog(), name="watchdog")
            await self._stop.wait()
            watchdog.cancel()
            _LOGGER.info("stopping")
        finally:
            self._systemd.stopping()
            for role in roles:
                for task in role.tasks:
                    task.cancel()
                await role.server.stop()
                closers += role.closers
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        _LOGGER.info("stopped")
