"""The wake-word stage: feeds a wake engine and reports what it detected, one detection
per ``refractory_s``.

VAD-gated (the default), the engine hears only blocks where the VAD found speech, each
stretch preceded by ``preroll_ms`` of the audio before it (the model needs the start of
the word and some context), so a silent room costs no inference.
"""

from __future__ import annotations

from collections import deque

from ..audio.pcm import SPEECH_BYTES_PER_MS
from ..config import WakeConfig
from ..wake.engine import WakeEngine
from .stage import Block


class WakeStage:
    def __init__(self, engine: WakeEngine, config: WakeConfig) -> None:
        self.engine = engine
        self.listening = True  # off while a run streams: the command is not a wake word
        self._gated = config.vad_gated
        self._preroll_bytes = config.preroll_ms * SPEECH_BYTES_PER_MS
        self._refractory_ms = config.refractory_s * 1000
        self._held: deque[bytes] = deque()  # recent audio the engine has not heard
        self._held_bytes = 0
        self._feeding = False  # the engine heard the block before this one
        self._last_detection_ms: float | None = None

    async def process(self, block: Block) -> None:
        if not self.listening:
            self._forget_held()
            self._feeding = False
            return
        if self._gated and not block.speech:
            self._hold(block.audio)
            self._feeding = False
            return
        audio = block.audio
        if not audio:  # the clean-up stage is still gathering a 10 ms frame
            return
        if not self._feeding and self._held:
            audio = b"".join(self._held) + audio
        self._forget_held()
        self._feeding = True
        result = await self.engine.process(audio)
        block.probabilities = result.probabilities
        for name in result.detected:
            last = self._last_detection_ms
            if last is None or block.position_ms - last >= self._refractory_ms:
                block.detections.append(name)
                self._last_detection_ms = block.position_ms
        if result.detected:
            self.engine.reset()

    def reset(self) -> None:
        self._forget_held()
        self._feeding = False

    async def close(self) -> None:
        await self.engine.close()

    def _hold(self, audio: bytes) -> None:
        self._held.append(audio)
        self._held_bytes += len(audio)
        while self._held and self._held_bytes - len(self._held[0]) >= self._preroll_bytes:
            self._held_bytes -= len(self._held.popleft())

    def _forget_held(self) -> None:
        self._held.clear()
        self._held_bytes = 0
