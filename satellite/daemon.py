"""Composes the configured roles into one running daemon and stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial

from wyoming.server import AsyncServer

from .config import LoadedConfig
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


class Daemon:
    """Runs the speech endpoint until SIGTERM or SIGINT."""

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
        providers: list[AsrProvider | TtsProvider] = []
        try:
            if config.speech.enabled:
                asr, tts = build_asr(self.loaded), build_tts(self.loaded)
                providers += [asr, tts]
                service = SpeechService(asr=asr, tts=tts, info=build_info(asr, tts).event())
                server = AsyncServer.from_uri(config.speech.uri)
                await server.start(partial(SpeechHandler, service=service))
                servers.append(server)
                _LOGGER.info(
                    "speech endpoint listening on %s: %s",
                    config.speech.uri,
                    _describe_providers(asr, tts),
                )
            if not servers:
                _LOGGER.warning("no role is enabled (speech.enabled is false); nothing to serve")
            await self._stop.wait()
            _LOGGER.info("stopping")
        finally:
            for server in servers:
                await server.stop()
            for provider in providers:
                with contextlib.suppress(Exception):
                    await provider.close()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
        _LOGGER.info("stopped")
