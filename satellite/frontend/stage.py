"""One interface for every front-end stage, and the chain that runs them in order.

Mic audio moves through the chain as ``Block``s (16 kHz mono s16le, 100 ms from the mic).
Each stage reads what the stages before it wrote into the block and adds its own part:
clean-up replaces the audio, the VAD says where speech is, the wake word which models
fired. A new stage (echo cancellation, say) is one class with ``process``, ``reset`` and
``close``, placed in the list ``build_front_end`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..audio.pcm import SPEECH_BYTES_PER_MS
from ..audio.vad import GateEvent


@dataclass
class Block:
    """A piece of mic audio and what the stages found in it."""

    audio: bytes
    position_ms: int  # where the block starts in the mic's stream
    voice: list[GateEvent] = field(default_factory=list)  # the VAD gate's events
    speech: bool = False  # the VAD gate was open during the block
    voiced_frames: int = 0  # VAD frames of the block classified as voice
    frames: int = 0
    detections: list[str] = field(default_factory=list)  # wake models that fired
    probabilities: dict[str, float] = field(default_factory=dict)  # wake models' highest


class Stage(Protocol):
    async def process(self, block: Block) -> None:
        """Read and add to ``block``."""

    def reset(self) -> None:
        """Forget the audio so far: the next block does not follow the last one."""

    async def close(self) -> None: ...


class FrontEnd:
    """The stages in order; blocks are numbered by the audio they hold."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)
        self._position_bytes = 0

    async def process(self, pcm: bytes) -> Block:
        block = Block(audio=pcm, position_ms=self._position_bytes // SPEECH_BYTES_PER_MS)
        self._position_bytes += len(pcm)
        for stage in self.stages:
            await stage.process(block)
        return block

    def reset(self) -> None:
        for stage in self.stages:
            stage.reset()

    async def close(self) -> None:
        for stage in self.stages:
            await stage.close()
