"""Wake-word engines through the front end: how often they hear the wake word, how often
they fire without one, and what they cost.

For each engine (micro, openwakeword) with all its bundled models, VAD-gated and not:

- detection rate on the wake-word fixtures (tests.audio.wake_fixtures: POSITIVES and
  OWW_POSITIVES, the phrases of the models the engine has), in silence; in pink noise at
  -24 dBFS RMS; and in that noise with clean-up (noise suppression 4, auto gain 31);
- false activations on the negative phrases (130 phrases, about 4 minutes), on 60 s of
  continuous speech and on 60 s of a quiet room (pink noise at -47 dBFS);
- CPU seconds per minute of mic audio (time.process_time around the processing, every
  thread of the process, divided by the minutes fed), over all of the above, for one
  model (okay_nabu) on the continuous speech, and on the quiet room alone;
- peak RSS (ru_maxrss) of a process that ran only that configuration (fixtures included),
  and how much building and starting the front end added to the RSS.

Each configuration runs in its own child process. Run: .venv/bin/python -m bench.wake_rate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

from satellite.config import MicConfig, SatelliteConfig, WakeConfig
from satellite.frontend.build import build_front_end
from tests.audio.speech import BYTES_PER_SECOND, silence
from tests.audio.wake_fixtures import (
    MICRO_MODELS,
    NEGATIVES,
    OWW_MODELS,
    OWW_POSITIVES,
    POSITIVES,
    blocks,
    continuous_speech,
    mixed,
    pink_noise,
    wake_phrase,
)

ENGINE_MODELS = {"micro": MICRO_MODELS, "openwakeword": OWW_MODELS}
NOISE_VOLUME = 0.3  # about -24 dBFS RMS
ROOM_VOLUME = 0.02  # about -47 dBFS RMS
LEAD_S = 2.0  # before the first phrase: time for the noise suppressor to learn the noise
GAP_S = 2.5  # between phrases: more than refractory_s, so each can be detected
CLEANUP = MicConfig(noise_suppression=4, auto_gain=31)


@dataclass
class Fed:
    """What one stream gave: detections (ms, model) and its cost."""

    detections: list[tuple[int, str]]
    cpu_s: float
    audio_s: float


async def feed(engine: str, models: tuple[str, ...], gated: bool, pcm: bytes, mic=None) -> Fed:
    config = SatelliteConfig(
        mic=mic or MicConfig(), wake=WakeConfig(engine=engine, models=models, vad_gated=gated)
    )
    front_end = build_front_end(config)
    found = []
    started = time.process_time()
    for piece in blocks(pcm):
        block = await front_end.chain.process(piece)
        found += [(block.position_ms, name) for name in block.detections]
    cpu_s = time.process_time() - started
    await front_end.chain.close()
    return Fed(found, cpu_s, len(pcm) / BYTES_PER_SECOND)


def stream(phrases: list[tuple[str, str]], lead_s: float, gap_s: float):
    """The phrases in a row, ``lead_s`` before the first, ``gap_s`` after each; and where
    each one starts (ms)."""
    pcm = silence(lead_s)
    starts = []
    for text, voice in phrases:
        starts.append(len(pcm) * 1000 // BYTES_PER_SECOND)
        pcm += wake_phrase(text, voice) + silence(gap_s)
    return pcm, starts


def hits(fed: Fed, expected: list[str], starts: list[int]) -> tuple[int, int]:
    """(phrases whose own model fired between their start and the next phrase's,
    detections of any other model)."""
    right = set()
    wrong = 0
    for at, name in fed.detections:
        turn = max(0, sum(start <= at for start in starts) - 1)
        if expected[turn] == name:
            right.add(turn)
        else:
            wrong += 1
    return len(right), wrong


async def measure(engine: str, gated: bool) -> dict:
    models = ENGINE_MODELS[engine]
    positives = [p for p in dict.fromkeys(POSITIVES + OWW_POSITIVES) if p[0] in models]
    phrases = [(text, voice) for _, text, voice in positives]
    expected = [model for model, _, _ in positives]
    clean, starts = stream(phrases, LEAD_S, GAP_S)
    noisy = mixed(clean, pink_noise(len(clean) / BYTES_PER_SECOND, NOISE_VOLUME))
    negatives, _ = stream(NEGATIVES, 1.0, 1.0)
    speech = continuous_speech(60)
    room = pink_noise(60, ROOM_VOLUME)
    before = rss_mb()
    wake = WakeConfig(engine=engine, models=models, vad_gated=False)  # so the engine hears it
    front_end = build_front_end(SatelliteConfig(wake=wake))
    await front_end.chain.process(silence(0.1))  # the engines allocate on first use
    engine_mb = rss_mb() - before
    await front_end.chain.close()

    runs = {
        "clean": await feed(engine, models, gated, clean),
        "noise": await feed(engine, models, gated, noisy),
        "noise+cleanup": await feed(engine, models, gated, noisy, CLEANUP),
        "negatives": await feed(engine, models, gated, negatives),
        "speech": await feed(engine, models, gated, speech),
        "room": await feed(engine, models, gated, room),
    }
    one_model = await feed(engine, ("okay_nabu",), gated, speech)
    result = {"engine": engine, "gated": gated, "positives": len(positives)}
    for name in ("clean", "noise", "noise+cleanup"):
        result[name] = hits(runs[name], expected, starts)
    for name in ("negatives", "speech", "room"):
        result[name] = len(runs[name].detections)
    cpu = sum(fed.cpu_s for fed in runs.values())
    minutes = sum(fed.audio_s for fed in runs.values()) / 60
    result["cpu_per_min"] = cpu / minutes
    result["cpu_per_min_one_model"] = one_model.cpu_s / (one_model.audio_s / 60)
    result["cpu_per_min_room"] = runs["room"].cpu_s / (runs["room"].audio_s / 60)
    result["audio_min"] = minutes
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["engine_rss_mb"] = engine_mb
    return result


def rss_mb() -> float:
    """The process's resident memory now."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def rate(found: tuple[int, int], total: int) -> str:
    right, wrong = found
    return f"{right}/{total} {right / total:.0%}" + (f" +{wrong}w" if wrong else "")


def row(result: dict) -> str:
    rates = [
        rate(result[name], result["positives"]) for name in ("clean", "noise", "noise+cleanup")
    ]
    gating = "gated" if result["gated"] else "ungated"
    return (
        f"{result['engine']:<13}{gating:<9}"
        + "".join(f"{rate:<16}" for rate in rates)
        + f"{result['negatives']:>5}{result['speech']:>8}{result['room']:>6}"
        + f"{result['cpu_per_min']:>9.2f}{result['cpu_per_min_one_model']:>9.2f}"
        + f"{result['cpu_per_min_room']:>7.2f}"
        + f"{result['peak_rss_mb']:>9.0f}{result['engine_rss_mb']:>8.0f}"
    )


HEADER = (
    f"{'engine':<13}{'vad':<9}{'in silence':<16}{'in noise':<16}{'noise+cleanup':<16}"
    f"{'neg':>5}{'speech':>8}{'room':>6}{'cpu/min':>9}{'1 model':>9}{'room':>7}"
    f"{'rss MB':>9}{'+eng':>8}"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "GATED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, gated = args.one
        print(json.dumps(asyncio.run(measure(engine, gated == "1"))))
        return
    results = []
    for engine in ENGINE_MODELS:
        for gated in (True, False):
            child = subprocess.run(
                [sys.executable, "-m", "bench.wake_rate", "--one", engine, str(int(gated))],
                capture_output=True,
                text=True,
                check=True,
            )
            results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(
        f"Detection: phrases whose model fired ('+Nw': detections of another model).\n"
        f"False activations: {len(NEGATIVES)} negative phrases (neg), 60 s of speech,"
        f" 60 s of a quiet room.\n"
        "CPU: seconds per minute of mic audio over all the streams, with okay_nabu alone on"
        " the speech, and on the quiet room.\n"
        "RSS: the child process's peak (fixtures included), and what building the front end"
        " with all the engine's models added (+eng).\n"
    )
    print(HEADER)
    for result in results:
        print(row(result))


if __name__ == "__main__":
    main()
