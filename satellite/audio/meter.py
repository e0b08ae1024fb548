"""``mic-test``: what the satellite hears, live: the level, the VAD and each wake model's
probability, for tuning the microphone, ``vad.aggressiveness`` and ``wake.threshold``."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable

import numpy as np

from ..config import SatelliteConfig
from ..frontend.build import build_front_end
from ..frontend.stage import Block
from .mic import Mic

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


def wake_column(block: Block, models: list[str]) -> str:
    """Each model's highest probability in the block ("-": the model did not run, the VAD
    heard no speech), and DETECTED when one fired."""
    shown = []
    for name in models:
        probability = block.probabilities.get(name)
        shown.append(f"{name} {'  -  ' if probability is None else f'{probability:.3f}'}")
    for name in block.detections:
        shown.append(f"DETECTED {name}")
    return " | " + "  ".join(shown) if shown else ""


async def run_meter(
    config: SatelliteConfig,
    seconds: float | None,
    write: Callable[[str], None] = sys.stdout.write,
) -> int:
    """Print one meter line per 100 ms of mic audio; returns the number of lines.

    Raises MicError at once when the mic cannot be opened or stops delivering: a person is
    waiting on this command, so it does not retry the way the daemon does."""
    front = build_front_end(config)
    models = [model.name for model in front.wake.engine.models] if front.wake else []
    mic = Mic(config.mic, chunk_ms=100, retry=False)
    end = None if seconds is None else time.monotonic() + seconds
    ending = "\r" if sys.stdout.isatty() else "\n"
    lines = 0
    try:
        async for chunk in mic.chunks():
            block = await front.chain.process(chunk)
            line = meter_line(level_dbfs(block.audio), block.voiced_frames, block.frames)
            write(line + wake_column(block, models) + ending)
            lines += 1
            if end is not None and time.monotonic() >= end:
                break
    finally:
        await mic.close()
        await front.chain.close()
    write("\n")
    return lines
