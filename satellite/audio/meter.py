"""``mic-test``: a live level and VAD meter for tuning the satellite's microphone."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np
import webrtcvad

from ..config import MicConfig, VadConfig
from .mic import Mic
from .pcm import SPEECH_FORMAT

BAR_WIDTH = 30
FLOOR_DBFS = -60.0


def level_dbfs(pcm: bytes) -> float:
    """RMS level of 16-bit audio in dB relative to full scale (FLOOR_DBFS for silence)."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    if samples.size == 0:
        return FLOOR_DBFS
    rms = math.sqrt(float(np.mean(samples * samples))) / 32768.0
    return max(FLOOR_DBFS, 20 * math.log10(rms)) if rms > 0 else FLOOR_DBFS


def meter_line(dbfs: float, voiced_frames: int, frames: int) -> str:
    filled = round(BAR_WIDTH * (dbfs - FLOOR_DBFS) / -FLOOR_DBFS)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    voice = "VOICE" if voiced_frames * 2 > frames else "  -  "
    return f"{dbfs:6.1f} dBFS |{bar}| {voice} ({voiced_frames}/{frames} frames voiced)"


async def run_meter(
    mic_config: MicConfig,
    vad_config: VadConfig,
    seconds: float | None,
    write: Callable[[str], None] = sys.stdout.write,
) -> int:
    """Print one meter line per 100 ms of mic audio; returns the number of lines."""
    vad = webrtcvad.Vad(vad_config.aggressiveness)
    frame_bytes = SPEECH_FORMAT.rate * vad_config.frame_ms // 1000 * SPEECH_FORMAT.width
    mic = Mic(mic_config, chunk_ms=100)
    end = None if seconds is None else time.monotonic() + seconds
    ending = "\r" if sys.stdout.isatty() else "\n"
    lines = 0
    try:
        async for chunk in mic.chunks():
            frames = [chunk[i : i + frame_bytes] for i in range(0, len(chunk), frame_bytes)]
            voiced = sum(vad.is_speech(f, SPEECH_FORMAT.rate) for f in frames)
            write(meter_line(level_dbfs(chunk), voiced, len(frames)) + ending)
            lines += 1
            if end is not None and time.monotonic() >= end:
                break
    finally:
        await mic.close()
    write("\n")
    return lines
