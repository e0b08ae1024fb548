"""Sounds the satellite makes itself when no WAV file is configured."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from .pcm import AudioFormat, numpy_module

if TYPE_CHECKING:
    import numpy as np

TONE_FORMAT = AudioFormat(16000, 2, 1)


def _beep(hz: float, seconds: float, volume: float = 0.3) -> np.ndarray:
    numpy = numpy_module()
    t = numpy.arange(round(seconds * TONE_FORMAT.rate)) / TONE_FORMAT.rate
    fade = numpy.minimum(1.0, numpy.minimum(t, t[-1] - t) / 0.01)  # 10 ms ramps: no clicks
    return volume * fade * numpy.sin(2 * numpy.pi * hz * t)


@functools.cache
def timer_tone() -> bytes:
    """Two short high beeps and a pause (1 s in all), 16 kHz mono s16le; numpy is loaded
    only when a timer rings without a sound file."""
    numpy = numpy_module()
    gap = numpy.zeros(round(0.1 * TONE_FORMAT.rate))
    rest = numpy.zeros(round(0.5 * TONE_FORMAT.rate))
    wave = numpy.concatenate([_beep(880, 0.2), gap, _beep(880, 0.2), rest])
    return (wave * 32767).astype("<i2").tobytes()
