"""What the satellite needs of a microphone and a speaker; ``audio.mic.Mic`` and
``audio.speaker.Speaker`` are the real ones, and tests inject their own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from ..audio.pcm import AudioFormat


class MicSource(Protocol):
    @property
    def description(self) -> str: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """16 kHz mono s16le audio, as it is heard, until ``close()``."""
        ...

    async def close(self) -> None: ...


class SpeakerSink(Protocol):
    @property
    def description(self) -> str: ...

    async def play(self, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> None:
        """Returns when the sound has been heard; raises SpeakerError if it cannot be."""

    async def play_file(self, path: Path) -> None: ...

    async def close(self) -> None: ...
