"""What the satellite plays: sounds one after another, and the mic deaf while they play.

Sounds (HA's answers and announcements, the satellite's own WAV files) play in the order
they came. While a sound that deafens plays, and ``mute_tail_ms`` after it, the mic is deaf
so the satellite never hears itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..audio.pcm import AudioFormat
from ..audio.speaker import SpeakerError
from ..buffers import BoundedQueue
from .devices import SpeakerSink

_LOGGER = logging.getLogger(__name__)


@dataclass
class Sound:
    """A sound streamed by HA (TTS answer or announcement)."""

    format: AudioFormat
    audio: BoundedQueue[bytes]  # what waits for the speaker

    def chunks(self) -> AsyncIterator[bytes]:
        return self.audio.pieces()


class Playback:
    def __init__(self, speaker: SpeakerSink | None, mute_tail_ms: int) -> None:
        self.speaker = speaker
        self.mute_tail_ms = mute_tail_ms
        self._deafening = 0  # sounds in progress that deafen the mic
        self._deaf_until = 0.0  # monotonic time the mic stays deaf until
        self._tail: asyncio.Future[None] | None = None  # the last sound queued

    @property
    def deaf(self) -> bool:
        """The mic must not be listened to: a sound plays, or has only just ended."""
        return self._deafening > 0 or time.monotonic() < self._deaf_until

    def play_stream(
        self, sound: Sound, finished: Callable[[], Awaitable[None]]
    ) -> asyncio.Future[None]:
        """Queue HA's sound; ``finished`` runs once it has been heard (or could not be)."""

        async def play() -> None:
            if self.speaker is None:
                async for _ in sound.chunks():  # nothing to play it on: just let it pass
                    pass
            else:
                await self._play(self.speaker.play(sound.format, sound.chunks()))
            await finished()

        return self.queue(play())

    def play_file(self, path: Path | None, deafen: bool = True) -> asyncio.Future[None]:
        """Queue a WAV file (nothing without a file)."""
        if path is None:
            return self.queue(_nothing())
        return self._play_on_speaker(lambda speaker: speaker.play_file(path), deafen)

    def play_pcm(self, fmt: AudioFormat, pcm: bytes, deafen: bool = True) -> asyncio.Future[None]:
        """Queue a sound held in memory."""
        return self._play_on_speaker(lambda speaker: speaker.play(fmt, _single(pcm)), deafen)

    def _play_on_speaker(
        self, playing: Callable[[SpeakerSink], Awaitable[None]], deafen: bool
    ) -> asyncio.Future[None]:
        """Queue a sound of the satellite's own (nothing without a speaker)."""
        if self.speaker is None:
            return self.queue(_nothing())
        return self.queue(self._play(playing(self.speaker), deafen))

    def queue(self, work: Coroutine[Any, Any, None]) -> asyncio.Future[None]:
        """Run ``work`` after what is already queued; cancel the result to skip or stop it."""
        previous = self._tail

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await work

        self._tail = asyncio.ensure_future(after_previous())
        return self._tail

    async def wait_idle(self, timeout: float) -> None:
        """Give what is queued up to ``timeout`` seconds to be heard."""
        if self._tail is not None and timeout > 0:
            await asyncio.wait({self._tail}, timeout=timeout)

    def switch_speaker(self, speaker: SpeakerSink | None) -> None:
        """Later sounds play on ``speaker``; the old one closes after those queued on it."""
        old, self.speaker = self.speaker, speaker
        if old is not None:
            self.queue(old.close())

    async def close(self) -> None:
        if self._tail is not None:
            self._tail.cancel()
        if self.speaker is not None:
            await self.speaker.close()

    async def _play(self, playing: Awaitable[None], deafen: bool = True) -> None:
        """Play with the mic deaf (plus the tail); a failure is only logged."""
        self._deafening += deafen
        try:
            await playing
        except SpeakerError as exc:
            _LOGGER.warning("speaker failed: %s", exc)
        finally:
            self._deafening -= deafen
            if deafen:
                tail = self.mute_tail_ms / 1000
                self._deaf_until = max(self._deaf_until, time.monotonic() + tail)


async def _nothing() -> None:
    pass


async def _single(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm
