"""WebRTC clean-up (noise suppression, auto gain) ahead of the VAD and the wake word.

Noise is sox's pink noise; ``vol`` 0.1 is about -33 dBFS RMS, 0.3 about -24 dBFS (a loud
fan or a running tap near the mic). The VAD keeps its default settings, so its runs last
at most max_speech_s (15 s).
"""

from __future__ import annotations

import pytest

from satellite.config import MicConfig, SatelliteConfig, WakeConfig
from satellite.frontend.build import build_front_end
from satellite.frontend.stage import Block
from tests.audio.wake_fixtures import (
    POSITIVES,
    blocks,
    in_silence,
    mixed,
    pink_noise,
    rms,
    scaled,
    wake_phrase,
)

OFF = MicConfig()
FULL = MicConfig(noise_suppression=4, auto_gain=31)


async def run(config: SatelliteConfig, pcm: bytes) -> list[Block]:
    front_end = build_front_end(config)
    try:
        return [await front_end.chain.process(piece) for piece in blocks(pcm)]
    finally:
        await front_end.chain.close()


async def vad_on(mic: MicConfig, pcm: bytes) -> tuple[int, float]:
    """How often the VAD gate opened, and the share of the blocks it was open in."""
    heard = await run(SatelliteConfig(mic=mic, wake=WakeConfig(engine="none")), pcm)
    starts = sum(event.kind == "start" for block in heard for event in block.voice)
    return starts, sum(block.speech for block in heard) / len(heard)


@pytest.mark.parametrize("volume", [0.15, 0.3, 0.4])
async def test_clean_up_keeps_loud_noise_from_opening_the_vad(volume: float):
    noise = pink_noise(30, volume)
    starts_off, open_off = await vad_on(OFF, noise)
    starts_on, open_on = await vad_on(FULL, noise)
    said = (
        f"off: {starts_off} runs, open {open_off:.0%} of the time; "
        f"on: {starts_on} runs, open {open_on:.0%}"
    )
    # Plain, the noise passes for speech: back-to-back runs of max_speech_s each.
    assert open_off > 0.9, said
    # Suppressed, at most a short run while the suppressor learns the noise.
    assert starts_on < starts_off, said
    assert open_on < 0.1, said


async def test_auto_gain_alone_lifts_moderate_noise_into_the_vad():
    """The gain applies to whatever the mic hears (about +12 dB once settled): a noise the
    VAD ignores ends above its threshold; noise suppression ahead of the gain keeps it out."""
    noise = pink_noise(30, 0.07)  # about -36 dBFS
    _, plain = await vad_on(OFF, noise)
    _, gained = await vad_on(MicConfig(auto_gain=31), noise)
    _, both = await vad_on(FULL, noise)
    assert plain == 0
    assert gained > 0.9
    assert both == 0


async def test_auto_gain_raises_a_quiet_voice():
    quiet = scaled(wake_phrase("okay nabu", "en-us"), 0.03)  # about -50 dBFS
    start, end = 32000, 32000 + len(quiet)  # the voice's bytes, after 1 s of silence
    pcm = in_silence(quiet, before_s=1.0, after_s=1.0)
    for mic in (OFF, MicConfig(auto_gain=31)):
        heard = await run(SatelliteConfig(mic=mic, wake=WakeConfig(engine="none")), pcm)
        out = b"".join(block.audio for block in heard)
        level = rms(out[start:end]) / rms(quiet)
        if mic.auto_gain:
            assert level > 1.5, f"auto gain: {level:.2f} x the voice's level"
        else:
            assert level == 1


@pytest.mark.parametrize("gated", [True, False], ids=["vad-gated", "ungated"])
@pytest.mark.parametrize("volume", [0.3, 0.4])
async def test_clean_up_finds_more_wake_words_in_loud_noise(volume: float, gated: bool):
    """Each positive after 2 s of the noise (time for the suppressor to learn it), all of it
    in pink noise at -24 or -21 dBFS RMS: the noise masks some of the words, and the
    suppressor brings back more of them than it spoils."""
    found = {}
    for mic in (OFF, FULL):
        heard = []
        for model, text, voice in POSITIVES:
            speech = in_silence(wake_phrase(text, voice), before_s=2.0, after_s=1.5)
            pcm = mixed(speech, pink_noise(len(speech) / 32000, volume))
            wake = WakeConfig(models=(model,), vad_gated=gated)
            blocks_heard = await run(SatelliteConfig(mic=mic, wake=wake), pcm)
            if any(block.detections for block in blocks_heard):
                heard.append(f"{model}/{voice}")
        found[mic.noise_suppression > 0] = heard
    off, on = found[False], found[True]
    said = (
        f"of {len(POSITIVES)}: clean-up off detects {len(off)}, on {len(on)}; "
        f"lost {sorted(set(off) - set(on))}, gained {sorted(set(on) - set(off))}"
    )
    assert len(on) > len(off), said
