"""The satellite's front end from its config: clean-up, VAD, wake word, in that order."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import SatelliteConfig
from ..wake.engine import build_engine
from .stage import FrontEnd, Stage
from .vad import VadStage
from .wake import WakeStage


@dataclass
class SatelliteFrontEnd:
    """The chain, and the stages the satellite steers."""

    chain: FrontEnd
    vad: VadStage
    wake: WakeStage | None  # None: engine none, the VAD alone opens runs


def build_front_end(config: SatelliteConfig) -> SatelliteFrontEnd:
    """Raises WakeModelError when a wake model cannot be loaded. Only the libraries of the
    stages in use are loaded."""
    stages: list[Stage] = []
    if config.mic.noise_suppression or config.mic.auto_gain:
        from .cleanup import CleanupStage

        stages.append(CleanupStage(config.mic.noise_suppression, config.mic.auto_gain))
    vad = VadStage(config.vad)
    stages.append(vad)
    engine = build_engine(config.wake)
    wake = WakeStage(engine, config.wake) if engine is not None else None
    if wake is not None:
        stages.append(wake)
    return SatelliteFrontEnd(FrontEnd(stages), vad, wake)
