"""Config loading: defaults, interpolation, and errors that name file, key path and fix."""

from pathlib import Path

import pytest

from satellite.cli import main
from satellite.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.source == str(path)
    return caught.value.problems


def test_public_contract_keys_load(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-contract")
    monkeypatch.setenv("AZURE_SPEECH_KEY", "az-contract")
    monkeypatch.setenv("AZURE_SPEECH_REGION", "eastasia")
    path = write(
        tmp_path,
        """
speech:
  uri: tcp://0.0.0.0:10300
  asr: {provider: dashscope, language: zh}
  tts: {provider: dashscope, voice: longxiaochun_v2}
providers:
  dashscope:
    api_key: ${DASHSCOPE_API_KEY}
    websocket_url: wss://dashscope.aliyuncs.com/api-ws/v1/inference
    asr: {model: paraformer-realtime-v2}
    tts: {model: cosyvoice-v2, voice: longxiaochun_v2, sample_rate: 22050}
  azure:
    key: ${AZURE_SPEECH_KEY}
    region: ${AZURE_SPEECH_REGION}
    host: null
    asr: {languages: [zh-CN, en-US]}
    tts: {voice: zh-CN-XiaoxiaoNeural, sample_rate: 24000}
""",
    )
    config = load_config(path).config
    assert config.providers.dashscope.api_key.get_secret_value() == "sk-contract"
    assert config.providers.azure.region == "eastasia"
    assert config.providers.azure.asr.languages == ("zh-CN", "en-US")
    assert config.speech.tts.voice == "longxiaochun_v2"
    assert "sk-contract" not in repr(config)


def test_shipped_configs_are_valid():
    for path in [
        REPO / "config/satellite.yaml",
        *sorted((REPO / "config/examples").glob("*.yaml")),
    ]:
        load_config(path)


def test_env_default_and_unset_variable_is_remembered(monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("VS_TEST_URI", raising=False)
    loaded = parse_config({"speech": {"uri": "${VS_TEST_URI:-tcp://127.0.0.1:10400}"}}, "test.yaml")
    assert loaded.config.speech.uri == "tcp://127.0.0.1:10400"
    assert loaded.config.providers.dashscope.api_key.get_secret_value() == ""
    hint = loaded.secret_hint("providers.dashscope.api_key")
    assert "DASHSCOPE_API_KEY" in hint and "test.yaml" in hint


def test_omitted_keys_still_read_the_environment(monkeypatch):
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-from-env")
    loaded = parse_config({}, "built-in defaults")
    assert loaded.config.providers.dashscope.api_key.get_secret_value() == "sk-from-env"
    assert loaded.config.speech.asr.provider == ("dashscope",)
    assert loaded.config.speech.tts.provider == ("dashscope",)


def test_unknown_key_names_the_path(tmp_path):
    path = write(tmp_path, "speech:\n  asr: {provider: dashscope, langauge: zh}\n")
    [problem] = problems_of(path)
    assert problem.startswith("speech.asr.langauge: unknown key")


def test_bad_values_name_path_and_expectation(tmp_path):
    path = write(
        tmp_path,
        """
speech:
  uri: http://0.0.0.0:10300
  asr: {provider: google}
providers:
  dashscope:
    tts: {sample_rate: 22051}
    timeouts: {connect: -1}
""",
    )
    problems = problems_of(path)
    assert any(p.startswith("speech.uri: expected tcp://HOST:PORT") for p in problems)
    assert any(
        p.startswith("speech.asr.provider") and "'google'" in p and "dashscope, azure" in p
        for p in problems
    )
    assert any(
        p.startswith("providers.dashscope.tts.sample_rate:") and "22050" in p for p in problems
    )
    assert any(p.startswith("providers.dashscope.timeouts.connect:") for p in problems)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("providers:\n  azure:\n    asr: {languages: zh-CN}\n",
         "providers.azure.asr.languages: expected a list, e.g. [a, b] (got 'zh-CN')"),
        ("speech:\n  asr: dashscope\n",
         "speech.asr: expected a section: keys indented below it (got 'dashscope')"),
        ("providers:\n  dashscope:\n    asr: {languages: [zh, 1]}\n",
         "providers.dashscope.asr.languages[1]: expected text (in quotes if YAML reads it as a "
         "number or true/false) (got 1)"),
        ("satellite:\n  vad: {aggressiveness: 7}\n",
         "satellite.vad.aggressiveness: expected a number of at most 3 (got 7)"),
        ("log_level: loud\n",
         "log_level: expected one of: debug, info, warning or error (got 'loud')"),
        ("satellite:\n  enabled: maybe\n",
         "satellite.enabled: expected true or false (got 'maybe')"),
    ],
)  # fmt: skip
def test_problems_speak_of_yaml_not_of_python(tmp_path, text: str, problem: str):
    """No "tuple", no class names: what to write, at which key."""
    assert problems_of(write(tmp_path, text)) == [problem]


def test_an_unset_variable_is_named_where_its_value_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SPEECH_URI", raising=False)
    [problem] = problems_of(write(tmp_path, "speech:\n  uri: ${SPEECH_URI}\n"))
    assert problem == (
        "speech.uri: expected tcp://HOST:PORT or unix:///path/to/socket "
        "(the environment variable SPEECH_URI is not set)"
    )


def test_voice_of_the_other_provider_is_rejected(tmp_path):
    path = write(tmp_path, "speech:\n  tts: {provider: azure, voice: longxiaochun_v2}\n")
    [problem] = problems_of(path)
    assert "speech" in problem and "not an Azure voice" in problem


def test_yaml_syntax_error_gives_line(tmp_path):
    path = write(tmp_path, "speech:\n  uri: [unclosed\n")
    [problem] = problems_of(path)
    assert "line" in problem and "invalid YAML" in problem


def test_missing_file(tmp_path):
    [problem] = problems_of(tmp_path / "nope.yaml")
    assert "cannot read" in problem


def test_check_config_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    good = write(tmp_path, "speech: {asr: {provider: dashscope}}\n")
    assert main(["check-config", "--config", str(good)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "DASHSCOPE_API_KEY" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text("speech: {port: 1}\n", encoding="utf-8")
    assert main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "speech.port: unknown key" in err


def test_check_config_shows_failover_lists_and_a_missing_offline_voice(tmp_path, capsys):
    chain = write(
        tmp_path,
        "speech: {asr: {provider: [dashscope, azure]}, tts: {provider: [azure, espeak]}}\n"
        "providers: {espeak: {program: /nonexistent/espeak-ng}}\n",
    )
    assert main(["check-config", "--config", str(chain)]) == 0
    out = capsys.readouterr().out
    assert "ASR dashscope -> azure, TTS azure -> espeak" in out
    assert "apt install espeak-ng" in out


def test_provider_lists_must_not_repeat_a_provider(tmp_path):
    path = write(tmp_path, "speech: {tts: {provider: [azure, azure]}}\n")
    assert any("listed twice" in p for p in problems_of(path))


def test_no_config_file_means_built_in_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("VOICE_SATELLITE_CONFIG", raising=False)
    monkeypatch.setattr("satellite.config.DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    loaded = load_config(None)
    assert loaded.source == "built-in defaults"
    assert loaded.config.speech.uri == "tcp://0.0.0.0:10300"

    chosen = write(tmp_path, "speech: {uri: 'tcp://127.0.0.1:10999'}\n")
    monkeypatch.setenv("VOICE_SATELLITE_CONFIG", str(chosen))
    assert load_config(None).config.speech.uri == "tcp://127.0.0.1:10999"


def test_dashscope_models_are_checked_with_a_way_past_the_list(tmp_path):
    path = write(tmp_path, "providers:\n  dashscope:\n    asr: {model: paraformer-realtime-v9}\n")
    [problem] = problems_of(path)
    assert problem.startswith("providers.dashscope.asr:")
    assert "'paraformer-realtime-v9'" in problem and "paraformer-realtime-8k-v2" in problem
    assert "allow_unlisted_model: true" in problem
    unlisted = parse_config(
        {
            "providers": {
                "dashscope": {
                    "asr": {"model": "paraformer-realtime-v9", "allow_unlisted_model": True},
                    "tts": {"model": "cosyvoice-v9", "allow_unlisted_model": True, "voice": "v"},
                }
            }
        },
        "test",
    ).config.providers.dashscope
    assert (unlisted.asr.model, unlisted.tts.default_voice) == ("paraformer-realtime-v9", "v")


def test_an_unlisted_voice_model_must_name_its_voice(tmp_path):
    text = "providers:\n  dashscope:\n    tts: {model: cosyvoice-v9, allow_unlisted_model: true}\n"
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("providers.dashscope.tts:") and "set voice" in problem


def test_each_cosyvoice_model_has_its_own_default_voice():
    def default_voice(model: str) -> str:
        raw = {"providers": {"dashscope": {"tts": {"model": model}}}}
        return parse_config(raw, "test").config.providers.dashscope.tts.default_voice

    assert default_voice("cosyvoice-v1") == "longwan"
    assert default_voice("cosyvoice-v2") == "longxiaochun_v2"
    assert default_voice("qwen3-tts-flash-realtime") == "Cherry"


def test_a_recognition_option_the_model_does_not_take_is_refused(tmp_path):
    text = (
        "providers:\n  dashscope:\n    asr: {model: fun-asr-realtime, disfluency_removal: true}\n"
    )
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("providers.dashscope.asr:")
    assert "does not take disfluency_removal" in problem and "punctuation" in problem
    text = (
        "providers:\n  dashscope:\n    asr: {model: qwen3-asr-flash-realtime, punctuation: vad}\n"
    )
    [problem] = problems_of(write(tmp_path, text))
    assert "does not take punctuation (it takes: none of them)" in problem


def test_azure_style_options_need_a_style(tmp_path):
    text = "providers:\n  azure:\n    tts: {styledegree: 1.5}\n"
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("providers.azure.tts:") and "set style too" in problem


def test_auto_language_with_azure_needs_an_identifiable_set_of_locales(tmp_path):
    speech = "speech:\n  asr: {provider: azure, language: auto}\n"
    assert load_config(write(tmp_path, speech)).config.speech.asr.language == "auto"
    custom = speech + "providers:\n  azure:\n    asr: {endpoint_id: my-model}\n"
    [problem] = problems_of(write(tmp_path, custom))
    assert "providers.azure.asr.endpoint_id" in problem and "name the language" in problem
    many = [f"l{index}-XX" for index in range(11)]
    wide = speech + f"providers:\n  azure:\n    asr: {{languages: [{', '.join(many)}]}}\n"
    [problem] = problems_of(write(tmp_path, wide))
    assert "at most 10 locales" in problem and "lists 11" in problem
    # A DashScope-only ASR role is not concerned by Azure's limits.
    dashscope = custom.replace("provider: azure", "provider: dashscope")
    assert load_config(write(tmp_path, dashscope)).config.speech.asr.language == "auto"


def test_qwen_http_voice_models(tmp_path):
    def section(tts: dict) -> object:
        raw = {"providers": {"dashscope": {"tts": tts}}}
        return parse_config(raw, "test").config.providers.dashscope

    qwen3 = section({"model": "qwen3-tts-flash", "language_type": "English"})
    assert (qwen3.tts.default_voice, qwen3.tts.default_sample_rate) == ("Cherry", 24000)
    assert qwen3.tts.language_type == "English"
    assert qwen3.http_url == "https://dashscope.aliyuncs.com/api/v1"
    assert section({"model": "qwen-tts", "sample_rate": 24000}).tts.default_voice == "Cherry"
    text = "providers:\n  dashscope:\n    tts: {model: qwen-tts, sample_rate: 16000}\n"
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("providers.dashscope.tts:") and "24000 Hz audio only" in problem
    text = "providers:\n  dashscope:\n    http_url: wss://dashscope.aliyuncs.com/api/v1\n"
    [problem] = problems_of(write(tmp_path, text))
    assert problem.startswith("providers.dashscope.http_url:") and "HTTP URL" in problem
