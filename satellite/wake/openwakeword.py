"""openWakeWord (pyopen-wakeword): about 4.9 CPU-seconds per minute of audio, 30 times
microWakeWord, so its inference runs off the event loop. One feature and embedding front
end feeds every model; 0.5 is the library's usual threshold."""

from __future__ import annotations

from pyopen_wakeword import OpenWakeWord, OpenWakeWordFeatures

from ..bridge import run_blocking
from ..config import WakeConfig
from .catalogue import model_file, phrase_from_name
from .engine import WakeModelError, WakeModelInfo, WakeResult

DEFAULT_THRESHOLD = 0.5


class OpenWakeWordEngine:
    program = "openwakeword"

    def __init__(self, config: WakeConfig) -> None:
        self._threshold = config.threshold or DEFAULT_THRESHOLD
        self._features = OpenWakeWordFeatures.from_builtin()
        self._detectors: list[OpenWakeWord] = []
        infos = []
        for model in config.models:
            try:
                detector = OpenWakeWord.from_model(model_file("openwakeword", model))
            except Exception as exc:  # the library raises whatever its loader met
                raise WakeModelError(f"cannot load openwakeword model {model!r}: {exc}") from exc
            self._detectors.append(detector)
            infos.append(WakeModelInfo(detector.id, phrase_from_name(detector.id)))
        self._models = tuple(infos)

    @property
    def models(self) -> tuple[WakeModelInfo, ...]:
        return self._models

    async def process(self, pcm: bytes) -> WakeResult:
        return await run_blocking(self._process, pcm)

    def _process(self, pcm: bytes) -> WakeResult:
        result = WakeResult()
        for embeddings in self._features.process_streaming(pcm):
            for detector in self._detectors:
                for probability in detector.process_streaming(embeddings):
                    result.add(detector.id, probability, self._threshold)
        return result

    def reset(self) -> None:
        """The detectors forget; the features go on (resetting them makes the library
        process seconds of made-up silence on the next call: a stall after every wake word)."""
        for detector in self._detectors:
            detector.reset()

    async def close(self) -> None:
        for detector in self._detectors:
            detector.close()
        self._features.close()
