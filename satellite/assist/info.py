"""What the satellite tells HA about itself (``info``): the satellite, and its wake word."""

from __future__ import annotations

from wyoming.info import Attribution, Info, WakeModel, WakeProgram
from wyoming.info import Satellite as SatelliteInfo

from .. import __version__
from ..config import SatelliteConfig
from ..frontend.build import SatelliteFrontEnd

_ATTRIBUTION = Attribution(name="voice-satellite", url="https://github.com/voice-satellite")


def satellite_info(config: SatelliteConfig, name: str, front: SatelliteFrontEnd) -> Info:
    """The satellite, and its active wake models with their phrases (HA lets only one
    satellite answer when several hear the same phrase)."""
    wake = []
    if front.wake is not None:
        engine = front.wake.engine
        models = [
            WakeModel(
                name=model.name,
                description=model.phrase,
                phrase=model.phrase,
                languages=list(model.languages),
                attribution=_ATTRIBUTION,
                installed=True,
                version=None,
            )
            for model in engine.models
        ]
        wake.append(
            WakeProgram(
                name=engine.program,
                description=f"{engine.program} wake word on the device",
                attribution=_ATTRIBUTION,
                installed=True,
                version=__version__,
                models=models,
            )
        )
    return Info(
        satellite=SatelliteInfo(
            name=name,
            description=f"voice-satellite {name}",
            attribution=_ATTRIBUTION,
            installed=True,
            version=__version__,
            area=config.area,
            has_vad=True,
        ),
        wake=wake,
    )
