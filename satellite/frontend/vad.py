"""The VAD stage: where the speech is, as the VAD gate's start / audio / end events."""

from __future__ import annotations

from ..audio.vad import VadGate
from ..config import VadConfig
from .stage import Block


class VadStage:
    def __init__(self, config: VadConfig) -> None:
        self.gate = VadGate(config)

    async def process(self, block: Block) -> None:
        was_open = self.gate.active
        block.voice = self.gate.process(block.audio)
        block.speech = was_open or self.gate.active or bool(block.voice)
        block.voiced_frames, block.frames = self.gate.voiced_frames, self.gate.frames

    def reset(self) -> None:
        self.gate.reset()

    async def close(self) -> None:
        pass
