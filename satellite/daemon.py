"""Composes the configured roles into one running daemon and stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from wyoming.server import AsyncServer, HandlerFactory

from .config import LoadedConfig, SatelliteConfig

if TYPE_CHECKING:
    from .assist.satellite import Satellite
from .discovery import Advertisement, Discovery
from .providers.base import AsrProvider, TtsProvider
from .providers.registry import build_asr, build_tts
from .speech.info import build_info
from .speech.server import SpeechHandler, SpeechService

_LOGGER = logging.getLogger(__name__)


def _describe_providers(asr: AsrProvider | None, tts: TtsProvider | None) -> str:
    parts = []
    if asr is not None:
        parts.append(f"ASR {asr.name} {asr.model} ({', '.join(asr.languages)})")
    if tts is not None:
        default_voice = tts.voices[0].name if tts.voices else "-"
        parts.append(f"TTS {tts.name} {tts.model} voice {default_voice}")
    return "; ".join(parts)


async def _serve(uri: str, handler_factory: HandlerFactory) -> AsyncServer:
    server = AsyncServer.from_uri(uri)
    await server.start(handler_factory)
    return server


def _default_name(role: str) -> str:
    return f"{socket.gethostname().split('.')[0]} {role}"


def _build_satellite(config: SatelliteConfig) -> Satellite:
    """The satellite role; its audio libraries are loaded only when it is enabled."""
    from .assist.satellite import Satellite
    from .audio.mic import Mic
    from .audio.speaker import Speaker

    name = config.name or _default_name("satellite")
    speaker = Speaker(config.speaker) if config.speaker is not None else None
    return Satellite(config, name, Mic(config.mic), speaker)


class Daemon:
    """Runs the configured roles until SIGTERM or SIGINT."""

    def __init__(self, loaded: LoadedConfig) -> None:
        self.loaded = loaded
        self._stop = asyncio.Event()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        config = self.loaded.config
        _LOGGER.info("configuration: %s", self.loaded.source)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)

        servers: list[AsyncServer] = []
        adverts: list[Advertisement] = []
        closers: list[Callable[[], Awaitable[None]]] = []
        background: list[asyncio.Task[None]] = []
        try:
            if config.speech.enabled:
                asr, tts = build_asr(self.loaded), build_tts(self.loaded)
                closers += [asr.close, tts.close]
                service = SpeechService(asr=asr, tts=tts, info=build_info(asr, tts).event())
                servers.append(
                    await _serve(config.speech.uri, partial(SpeechHandler, service=service))
                )
                adverts.append(
                    Advertisement(config.speech.name or _default_name("speech"), config.speech.uri)
                )
                _LOGGER.info(
                    "speech endpoint listening on %s: %s",
                    config.speech.uri,
                    _describe_providers(asr, tts),
                )
            if config.satellite.enabled:
                satellite = _build_satellite(config.satellite)
                closers.append(satellite.close)
                handler = satellite.handler
                servers.append(await _serve(config.satellite.uri, handler))
                background.append(asyncio.create_task(satellite.run_mic(), name="mic"))
                adverts.append(Advertisement(satellite.name, config.satellite.uri))
                _LOGGER.info(
                    "satellite %r listening on %s: mic %s, speaker %s",
                    satellite.name,
                    config.satellite.uri,
                    satellite.mic.description,
                    satellite.speaker.description if satellite.speaker else "none",
                )
            if not servers:
                _LOGGER.warning("no role is enabled (speech.enabled and satellite.enabled)")
            if config.zeroconf and adverts:
                discovery = Discovery(adverts)
                closers.insert(0, discovery.close)
                await discovery.start()
            await self._stop.wait()
            _LOGGER.info("stopping")
        finally:
            for task in background:
                task.cancel()
            for server in servers:
                await server.stop()
            for close in closers:
                with contextlib.suppress(Exception):
                    await close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        _LOGGER.info("stopped")
