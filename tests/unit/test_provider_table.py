"""The provider table: every listed provider of a role is built as that provider, with the
key its table row names."""

from __future__ import annotations

import pytest

from satellite.config import ConfigError, parse_config
from satellite.config_warnings import config_warnings
from satellite.provider_table import PROVIDERS, names_for
from satellite.providers.registry import build_asr, build_tts


@pytest.mark.parametrize("name", names_for("asr"))
def test_each_asr_provider_is_built_from_its_row(name, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-table")
    monkeypatch.setenv("AZURE_SPEECH_KEY", "az-table")
    loaded = parse_config({"speech": {"asr": {"provider": name}}}, "test")
    provider = build_asr(loaded)
    assert provider.name == name
    assert provider.languages


@pytest.mark.parametrize("name", names_for("tts"))
def test_each_tts_provider_is_built_from_its_row(name, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-table")
    monkeypatch.setenv("AZURE_SPEECH_KEY", "az-table")
    loaded = parse_config({"speech": {"tts": {"provider": name}}}, "test")
    provider = build_tts(loaded)
    assert provider.name == name
    assert provider.voices


@pytest.mark.parametrize("name", [name for name, spec in PROVIDERS.items() if spec.key_path])
def test_a_missing_key_names_its_environment_variable(name, monkeypatch):
    variable = PROVIDERS[name].env[PROVIDERS[name].key_field]
    monkeypatch.delenv(variable, raising=False)
    loaded = parse_config({"speech": {"tts": {"provider": name}}}, "test.yaml")
    assert any(
        f"set the environment variable {variable}" in line for line in config_warnings(loaded)
    )


@pytest.mark.parametrize("name", PROVIDERS)
def test_each_row_is_its_own_config_section(name):
    loaded = parse_config({}, "test.yaml")
    assert isinstance(getattr(loaded.config.providers, name), PROVIDERS[name].section)
    with pytest.raises(ConfigError) as error:
        parse_config({"providers": {name: {"no_such_key": 1}}}, "test.yaml")
    assert f"providers.{name}.no_such_key" in str(error.value)
