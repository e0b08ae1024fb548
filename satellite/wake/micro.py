"""microWakeWord (pymicro-wakeword), the engine of HA Voice PE: about 0.16 CPU-seconds per
minute of audio for one model. One feature front end feeds every model."""

from __future__ import annotations

from pymicro_wakeword import MicroWakeWord, MicroWakeWordFeatures

from ..config import WakeConfig
from .catalogue import model_file
from .engine import WakeModelError, WakeModelInfo, WakeResult


class MicroEngine:
    program = "micro"

    def __init__(self, config: WakeConfig) -> None:
        self._features = MicroWakeWordFeatures()
        self._detectors: list[tuple[MicroWakeWord, float]] = []
        infos = []
        for model in config.models:
            path = model_file("micro", model)
            try:
                detector = MicroWakeWord.from_config(path)
            except Exception as exc:  # the library raises whatever its loader met
                raise WakeModelError(f"cannot load micro model {model!r}: {exc}") from exc
            cutoff = config.threshold or detector.probability_cutoff
            self._detectors.append((detector, cutoff))
            languages = tuple(detector.trained_languages) or ("en",)
            infos.append(WakeModelInfo(detector.id, detector.wake_word, languages))
        self._models = tuple(infos)

    @property
    def models(self) -> tuple[WakeModelInfo, ...]:
        return self._models

    async def process(self, pcm: bytes) -> WakeResult:
        result = WakeResult()
        for features in self._features.process_streaming(pcm):
            for detector, cutoff in self._detectors:
                probability = detector.process_streaming_prob(features)
                if probability is not None:
                    result.add(detector.id, probability, cutoff)
        return result

    def reset(self) -> None:
        self._features.reset()
        for detector, _ in self._detectors:
            detector.reset()

    async def close(self) -> None:
        for detector, _ in self._detectors:
            detector.close()
