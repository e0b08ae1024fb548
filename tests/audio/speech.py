"""Deterministic audio fixtures, all 16 kHz mono s16le: speech, silence, noise, WAV files.

Speech is synthesised by espeak-ng and converted by sox without dither (``-D``), so the
same text gives the same bytes on every run and machine with the same packages.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

RATE = 16000
BYTES_PER_SECOND = RATE * 2


def silence(seconds: float) -> bytes:
    return bytes(round(seconds * RATE) * 2)


def noise(seconds: float, rms: float = 0.003, seed: int = 0) -> bytes:
    """White noise with the given RMS level (fraction of full scale; 0.003 is about -50 dBFS)."""
    samples = np.random.default_rng(seed).normal(0.0, rms * 32768, round(seconds * RATE))
    return np.clip(np.round(samples), -32768, 32767).astype("<i2").tobytes()


def mix(*tracks: bytes) -> bytes:
    """Sum the tracks sample by sample (clipped); the result is as long as the longest."""
    arrays = [np.frombuffer(track, dtype="<i2").astype(np.int32) for track in tracks]
    total = np.zeros(max(len(a) for a in arrays), dtype=np.int32)
    for array in arrays:
        total[: len(array)] += array
    return np.clip(total, -32768, 32767).astype("<i2").tobytes()


def speech_pcm(text: str, pad_before_s: float = 0.0, pad_after_s: float = 0.0) -> bytes:
    """``text`` spoken by espeak-ng (en-us, 160 wpm), padded with exact silence.

    espeak-ng's own leading and trailing silence is cut, so the speech starts exactly
    ``pad_before_s`` into the result and ends ``pad_after_s`` before its end.
    """
    return silence(pad_before_s) + _spoken(text) + silence(pad_after_s)


@functools.cache
def _spoken(text: str) -> bytes:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        raise RuntimeError("speech fixtures need espeak-ng and sox (apt install espeak-ng sox)")
    wav = subprocess.run(
        ["espeak-ng", "-v", "en-us", "-s", "160", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    sox = ["sox", "-D", "-t", "wav", "-", "-r", str(RATE), "-c", "1", "-b", "16"]
    raw = subprocess.run(
        [*sox, "-e", "signed-integer", "-t", "raw", "-"],
        input=wav,
        check=True,
        capture_output=True,
    ).stdout
    voiced = np.flatnonzero(np.frombuffer(raw, dtype="<i2"))
    if not len(voiced):
        raise RuntimeError(f"espeak-ng produced no sound for {text!r}")
    return raw[voiced[0] * 2 : (voiced[-1] + 1) * 2]


def write_wav(path: Path, pcm: bytes, rate: int = RATE) -> Path:
    """Write mono s16le ``pcm`` as a WAV file; returns ``path``."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return path
