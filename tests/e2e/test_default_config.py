"""The documented default file: switching a role's provider is one word."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli import run_cli, write_config
from tests.e2e.daemon import REPO
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope

DEFAULT_FILE = REPO / "config" / "satellite.yaml"


@pytest.fixture
def clouds() -> Iterator[tuple[FakeDashScope, FakeAzure]]:
    with FakeDashScope() as dashscope, FakeAzure() as azure:
        yield dashscope, azure


def default_file_with(tmp_path: Path, clouds: tuple[FakeDashScope, FakeAzure], **tts: str) -> Path:
    """config/satellite.yaml with ``tts`` set in speech.tts; the clouds' addresses point at
    the fakes (where a device would reach the real services)."""
    dashscope, azure = clouds
    config = yaml.safe_load(DEFAULT_FILE.read_text(encoding="utf-8"))
    config["speech"]["tts"].update(tts)
    config["providers"]["dashscope"]["websocket_url"] = dashscope.url
    config["providers"]["azure"]["host"] = azure.host
    return write_config(tmp_path / "config.yaml", yaml.safe_dump(config, allow_unicode=True))


@pytest.mark.parametrize("provider", ["dashscope", "azure", "espeak"])
def test_one_word_switches_the_voice_provider(tmp_path: Path, clouds, provider: str) -> None:
    config = default_file_with(tmp_path, clouds, provider=provider)
    checked = run_cli("check-config", "--config", config)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"TTS {provider}" in checked.stdout
    output = tmp_path / "said.wav"
    said = run_cli("say", "你好。", "--config", config, "--output", output)
    assert said.returncode == 0, said.stderr
    with wave.open(str(output), "rb") as wav:
        assert wav.getnframes() > wav.getframerate() * 0.05  # some speech was written
    dashscope, azure = clouds
    assert bool(dashscope.received_text) == (provider == "dashscope")
    assert bool(azure.received_ssml) == (provider == "azure")


def test_a_voice_the_offline_provider_lacks_is_refused_by_check_config(tmp_path: Path, clouds):
    config = default_file_with(tmp_path, clouds, provider="espeak", voice="longxiaochun_v2")
    checked = run_cli("check-config", "--config", config)
    assert checked.returncode == 1
    assert "speech.tts.voice 'longxiaochun_v2' is not an espeak-ng voice" in checked.stderr
