"""The wake-word engines through the satellite's front end, with the real libraries.

Speech is espeak-ng's (tests.audio.wake_fixtures), fed in the mic's 100 ms blocks. The
microWakeWord models are cheap, so every positive is tried alone; openWakeWord costs about
30 times more CPU, so its fixtures run as one stream each.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from satellite.config import ConfigError, SatelliteConfig, WakeConfig, parse_config
from satellite.frontend.build import build_front_end
from satellite.wake.catalogue import bundled_models
from tests.audio.speech import silence
from tests.audio.wake_fixtures import (
    MICRO_MODELS,
    NEGATIVES,
    OWW_MODELS,
    OWW_NEGATIVES,
    OWW_POSITIVES,
    POSITIVES,
    blocks,
    continuous_speech,
    in_silence,
    wake_phrase,
)

GATING = pytest.mark.parametrize("gated", [True, False], ids=["vad-gated", "ungated"])


async def detections(wake: WakeConfig, pcm: bytes) -> list[tuple[int, str]]:
    """(ms into ``pcm``, model) for each detection of a front end with ``wake``."""
    front_end = build_front_end(SatelliteConfig(wake=wake))
    found = []
    try:
        for piece in blocks(pcm):
            block = await front_end.chain.process(piece)
            found += [(block.position_ms, name) for name in block.detections]
    finally:
        await front_end.chain.close()
    return found


def spoken(phrases: list[tuple[str, str]], gap_s: float) -> tuple[bytes, list[float]]:
    """The phrases one after the other, ``gap_s`` of silence before each and after the last;
    and where each ends, in ms."""
    pcm = b""
    ends = []
    for text, voice in phrases:
        pcm += silence(gap_s) + wake_phrase(text, voice)
        ends.append(len(pcm) / 32)
    return pcm + silence(gap_s), ends


def culprits(found: list[tuple[int, str]], phrases: list, ends: list[float]) -> list:
    """The phrase each detection followed (the last one that ended before it)."""
    return [(phrases[max(0, sum(end < at for end in ends) - 1)], name) for at, name in found]


@GATING
@pytest.mark.parametrize(
    ("model", "text", "voice"), POSITIVES, ids=[f"{m}-{v}" for m, _, v in POSITIVES]
)
async def test_micro_detects_its_wake_word(model: str, text: str, voice: str, gated: bool):
    phrase = wake_phrase(text, voice)
    found = await detections(
        WakeConfig(engine="micro", models=(model,), vad_gated=gated),
        in_silence(phrase, before_s=1.0, after_s=1.5),
    )
    assert [name for _, name in found] == [model]
    assert found[0][0] >= 1000  # not before the phrase starts


@GATING
async def test_micro_ignores_other_phrases(gated: bool):
    pcm, ends = spoken(NEGATIVES, gap_s=1.0)
    found = await detections(WakeConfig(engine="micro", models=MICRO_MODELS, vad_gated=gated), pcm)
    assert found == [], f"fired on {culprits(found, NEGATIVES, ends)}"


@GATING
async def test_micro_ignores_a_minute_of_speech(gated: bool):
    found = await detections(
        WakeConfig(engine="micro", models=MICRO_MODELS, vad_gated=gated), continuous_speech(60)
    )
    assert found == []


@GATING
async def test_openwakeword_detects_its_wake_words(gated: bool):
    phrases = [(text, voice) for _, text, voice in OWW_POSITIVES]
    pcm, ends = spoken(phrases, gap_s=2.5)  # more than refractory_s apart
    found = await detections(
        WakeConfig(engine="openwakeword", models=OWW_MODELS, vad_gated=gated), pcm
    )
    assert [name for _, name in found] == [model for model, _, _ in OWW_POSITIVES]
    for (at, _), end in zip(found, ends, strict=True):
        assert end - 1500 < at < end + 1500  # each one around its own phrase


async def test_openwakeword_ignores_other_phrases():
    pcm, ends = spoken(OWW_NEGATIVES, gap_s=0.6)
    found = await detections(WakeConfig(engine="openwakeword", models=OWW_MODELS), pcm)
    assert found == [], f"fired on {culprits(found, OWW_NEGATIVES, ends)}"


async def test_a_higher_threshold_misses_a_wake_word_the_model_hears():
    pcm = in_silence(wake_phrase("okay nabu", "en-us"), after_s=1.5)
    assert await detections(WakeConfig(models=("okay_nabu",)), pcm)
    assert await detections(WakeConfig(models=("okay_nabu",), threshold=0.999), pcm) == []


async def test_a_lower_threshold_hears_a_wake_word_the_model_misses():
    pcm = in_silence(wake_phrase("okay nabu", "en-us+f2"), after_s=1.5)
    assert await detections(WakeConfig(models=("okay_nabu",)), pcm) == []
    found = await detections(WakeConfig(models=("okay_nabu",), threshold=0.4), pcm)
    assert [name for _, name in found] == ["okay_nabu"]


@pytest.mark.parametrize(
    ("gap_s", "refractory_s", "expected"),
    [(1.0, 2, 1), (1.0, 0, 2), (3.0, 2, 2)],
    ids=["1s-apart-refractory-2s", "1s-apart-no-refractory", "3s-apart-refractory-2s"],
)
async def test_one_detection_per_refractory_period(gap_s: float, refractory_s: float, expected):
    phrase = wake_phrase("alexa", "en-gb")
    pcm = silence(1.0) + phrase + silence(gap_s) + phrase + silence(1.5)
    found = await detections(WakeConfig(models=("alexa",), refractory_s=refractory_s), pcm)
    assert [name for _, name in found] == ["alexa"] * expected


def wake_problems(wake: dict) -> list[str]:
    with pytest.raises(ConfigError) as failure:
        parse_config({"satellite": {"wake": wake}}, "test.yaml")
    return failure.value.problems


def assert_lists_bundled(problems: list[str], engine: str) -> None:
    assert len(problems) == 1
    assert problems[0].startswith("satellite.wake")
    for name in bundled_models(engine):
        assert name in problems[0], problems[0]


@pytest.mark.parametrize("engine", ["micro", "openwakeword"])
def test_an_unknown_model_name_is_refused_with_the_bundled_names(engine: str):
    problems = wake_problems({"engine": engine, "models": ["okay_nabu", "hey_computer"]})
    assert "hey_computer" in problems[0]
    assert_lists_bundled(problems, engine)


@pytest.mark.parametrize(("engine", "suffix"), [("micro", ".json"), ("openwakeword", ".tflite")])
def test_a_missing_model_file_is_refused_with_the_bundled_names(
    engine: str, suffix: str, tmp_path: Path
):
    missing = tmp_path / f"kitchen{suffix}"
    problems = wake_problems({"engine": engine, "models": [str(missing)]})
    assert str(missing) in problems[0]
    assert_lists_bundled(problems, engine)


def corrupt_model(engine: str, folder: Path) -> Path:
    """Random bytes saved as a .tflite (and, for micro, a valid .json naming it)."""
    (folder / "broken.tflite").write_bytes(os.urandom(4096))
    if engine == "openwakeword":
        return folder / "broken.tflite"
    config = json.loads(bundled_models("micro")["okay_nabu"].read_text(encoding="utf-8"))
    config["model"] = "broken.tflite"
    (folder / "broken.json").write_text(json.dumps(config), encoding="utf-8")
    return folder / "broken.json"


@pytest.mark.parametrize("engine", ["micro", "openwakeword"])
def test_a_corrupt_model_file_is_refused_with_the_bundled_names(engine: str, tmp_path: Path):
    path = corrupt_model(engine, tmp_path)
    problems = wake_problems({"engine": engine, "models": [str(path)]})
    assert str(path) in problems[0]
    assert "corrupt" in problems[0]
    assert_lists_bundled(problems, engine)


@pytest.mark.parametrize("engine", ["micro", "openwakeword"])
def test_a_file_of_the_wrong_kind_is_refused_with_the_bundled_names(engine: str, tmp_path: Path):
    other = {"micro": ".tflite", "openwakeword": ".json"}[engine]
    path = tmp_path / f"kitchen{other}"
    path.write_bytes(b"{}")
    problems = wake_problems({"engine": engine, "models": [str(path)]})
    assert str(path) in problems[0]
    assert_lists_bundled(problems, engine)


async def test_a_users_own_micro_model_file_loads_and_detects(tmp_path: Path):
    bundled = bundled_models("micro")["okay_nabu"]
    config = json.loads(bundled.read_text(encoding="utf-8"))
    shutil.copy(bundled.parent / config["model"], tmp_path / "kitchen.tflite")
    config["model"] = "kitchen.tflite"
    (tmp_path / "kitchen.json").write_text(json.dumps(config), encoding="utf-8")

    loaded = parse_config(
        {"satellite": {"wake": {"models": [str(tmp_path / "kitchen.json")]}}}, "test.yaml"
    )
    wake = loaded.config.satellite.wake
    pcm = in_silence(wake_phrase("okay nabu", "en-gb"), after_s=1.5)
    assert [name for _, name in await detections(wake, pcm)] == ["kitchen"]
