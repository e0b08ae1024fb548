"""Sounds the satellite makes itself when no WAV file is configured."""

from __future__ import annotations

import functools

import numpy as np

from .pcm import AudioFormat

TONE_FORMAT = AudioFormat(16000, 2, 1)


def _beep(hz: float, seconds: float, volume: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * TONE_FORMAT.rate)) / TONE_FORMAT.rate
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms ramps: no clicks
    return volume * fade * np.sin(2 * np.pi * hz * t)


@functools.cache
def timer_tone() -> bytes:
    """Two short high beeps and a pause (1 s in all), 16 kHz mono s16le."""
    gap = np.zeros(round(0.1 * TONE_FORMAT.rate))
    rest = np.zeros(round(0.5 * TONE_FORMAT.rate))
    wave = np.concatenate([_beep(880, 0.2), gap, _beep(880, 0.2), rest])
    return (wave * 32767).astype("<i2").tobytes()
