"""What every wake-word engine offers the satellite, and the table that builds them.

An engine takes 16 kHz mono s16le audio in pieces of any size and says which of its models
fired in it. Engines do not rate-limit detections (the front end's wake stage does), and
they are built only when the config asks for them, so an unused engine's library is never
imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from ..config import WakeConfig


@dataclass(frozen=True)
class WakeModelInfo:
    """An active model: the name HA receives in ``detection`` and the phrase people say."""

    name: str
    phrase: str
    languages: tuple[str, ...] = ("en",)


@dataclass
class WakeResult:
    """What one piece of audio held: the models that fired, and (local engines) each
    model's highest probability in it, for ``mic-test``."""

    detected: list[str] = field(default_factory=list)
    probabilities: dict[str, float] = field(default_factory=dict)

    def add(self, model: str, probability: float, threshold: float) -> None:
        """One of the model's probabilities: kept if the highest, a detection above
        ``threshold``."""
        self.probabilities[model] = max(probability, self.probabilities.get(model, 0.0))
        if probability > threshold and model not in self.detected:
            self.detected.append(model)


class WakeEngine(Protocol):
    program: str  # the engine's name in the satellite's info

    @property
    def models(self) -> tuple[WakeModelInfo, ...]: ...

    async def process(self, pcm: bytes) -> WakeResult: ...

    def reset(self) -> None:
        """Forget the audio heard so far (after a detection, or a gap in what it is fed)."""

    async def close(self) -> None: ...


class WakeModelError(Exception):
    """A model file that cannot be loaded (corrupt, or not a model of the engine)."""


def _micro(config: WakeConfig) -> WakeEngine:
    from .micro import MicroEngine

    return MicroEngine(config)


def _openwakeword(config: WakeConfig) -> WakeEngine:
    from .openwakeword import OpenWakeWordEngine

    return OpenWakeWordEngine(config)


def _remote(config: WakeConfig) -> WakeEngine:
    from .remote import RemoteEngine

    return RemoteEngine(config)


ENGINES: dict[str, Callable[[WakeConfig], WakeEngine]] = {
    "micro": _micro,
    "openwakeword": _openwakeword,
    "remote": _remote,
}


def build_engine(config: WakeConfig) -> WakeEngine | None:
    """The configured engine (None for ``engine: none``); raises WakeModelError."""
    factory = ENGINES.get(config.engine)
    return factory(config) if factory is not None else None
