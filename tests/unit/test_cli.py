"""The command line without a provider on the other end: help, usage errors, ``voices``,
and the warnings of ``check-config`` about keys other users can read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_cli, write_config

COMMANDS = ["run", "check-config", "devices", "mic-test", "say", "transcribe", "voices"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_a_useful_help(command: str):
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    usage, description = result.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: voice-satellite {command}")
    assert len(description.split()) >= 8  # a sentence, not just the command's name
    if command in ("say", "transcribe", "voices"):
        assert "3 the provider failed" in result.stdout and "130 interrupted" in result.stdout


def test_usage_errors_exit_2_and_unusable_input_exits_1(tmp_path: Path):
    assert run_cli("say").returncode == 2  # argparse: the text is missing
    assert run_cli("transcribe", "a.wav", "--bogus").returncode == 2

    empty = run_cli("say", "-", stdin="  \n")
    assert (empty.returncode, empty.stderr) == (1, "error: nothing to say (the text is empty)\n")

    missing = run_cli("transcribe", tmp_path / "nowhere.wav")
    assert missing.returncode == 1
    assert (
        missing.stderr
        == f"error: cannot read {tmp_path / 'nowhere.wav'}: No such file or directory\n"
    )

    (tmp_path / "text.wav").write_text("not audio")
    garbage = run_cli("transcribe", tmp_path / "text.wav")
    assert garbage.returncode == 1
    assert garbage.stderr == (
        f"error: {tmp_path / 'text.wav'} is not WAV, MP3, FLAC or OGG (Vorbis, Opus) audio: "
        "Format not recognised\n"
    )

    nowhere = tmp_path / "missing" / "out.wav"
    unwritable = run_cli("say", "hello", "--output", nowhere)
    assert unwritable.returncode == 1
    assert unwritable.stderr.splitlines()[-1] == (
        f"error: cannot write {nowhere}: there is no directory {nowhere.parent}"
    )

    invalid = write_config(tmp_path / "bad.yaml", "speech: {asr: {langauge: en}}\n")
    for command in (["say", "hi"], ["transcribe", "x.wav"], ["voices"]):
        result = run_cli(*command, "--config", invalid)
        assert result.returncode == 1
        assert "speech.asr.langauge: unknown key" in result.stderr


def test_say_without_a_speaker_points_to_output(tmp_path: Path):
    config = write_config(tmp_path / "config.yaml", "satellite: {speaker: null}\n")
    result = run_cli("say", "hello", "--config", config)
    assert result.returncode == 1
    assert "satellite.speaker is null" in result.stderr and "--output FILE.wav" in result.stderr


def test_voices_lists_the_default_first_and_marks_it(tmp_path: Path):
    config = write_config(
        tmp_path / "config.yaml",
        """
speech: {tts: {provider: [azure, espeak], voice: en-US-GuyNeural}}
providers:
  azure: {region: eastasia, tts: {voices: [zh-CN-YunxiNeural]}}
  espeak: {voice: cmn}
""",
    )
    result = run_cli("voices", "--config", config)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["name", "languages", "provider", "description"]
    assert [row.split()[:4] for row in rows[:1]] == [["*", "en-US-GuyNeural", "en-US", "azure"]]
    assert [row.split()[:3] for row in rows[1:]] == [
        ["zh-CN-YunxiNeural", "zh-CN", "azure"],
        ["cmn", "zh", "espeak"],
    ]
    assert not any(row.startswith("*") for row in rows[1:])

    chinese = run_cli("voices", "--config", config, "--language", "zh")
    assert [row.split()[0] for row in chinese.stdout.splitlines()[1:]] == [
        "zh-CN-YunxiNeural",
        "cmn",
    ]

    none = run_cli("voices", "--config", config, "--language", "fr")
    assert none.returncode == 1 and "no voice of azure -> espeak speaks fr" in none.stderr


def test_voices_of_the_default_config(tmp_path: Path):
    result = run_cli("voices", env={"VOICE_SATELLITE_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[1].split()
    assert first[:4] == ["*", "longxiaochun_v2", "zh,", "en"]
    assert len(result.stdout.splitlines()) > 5


def test_check_config_refuses_a_corrupt_wake_model_and_names_the_bundled_ones(tmp_path: Path):
    model = tmp_path / "my_wake.tflite"
    model.write_bytes(bytes(range(256)) * 40)  # not a TFLite model: the loader would crash
    text = f"satellite: {{enabled: true, wake: {{engine: openwakeword, models: [{model}]}}}}\n"
    config = write_config(tmp_path / "config.yaml", text)
    result = run_cli("check-config", "--config", config)
    assert result.returncode == 1
    assert f"satellite.wake: models.0: model file '{model}' is corrupt" in result.stderr
    assert "hey_rhasspy" in result.stderr  # what is available instead
    for engine, name in (("micro", "hey_rhasspy"), ("openwakeword", "okay_nabu")):
        text = f"satellite: {{wake: {{engine: {engine}, models: [{name}]}}}}\n"
        config = write_config(tmp_path / "config.yaml", text)
        result = run_cli("check-config", "--config", config)
        assert (result.returncode == 0) is (engine == "openwakeword"), result.stderr


# --- keys other users can read -------------------------------------------------------


def test_check_config_warns_of_a_key_written_in_a_readable_file(tmp_path: Path):
    text = "providers: {dashscope: {api_key: sk-in-the-file}, azure: {key: az-in-the-file}}\n"
    config = write_config(tmp_path / "config.yaml", text, mode=0o644)
    result = run_cli("check-config", "--config", config)
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stdout.splitlines() if "plain text" in line]
    assert warning == (
        f"  warning: {config} holds providers.dashscope.api_key and providers.azure.key in "
        f"plain text and other users can read it: chmod 600 {config} (and chown it to the "
        "user the daemon runs as), or read the key from the environment (${VAR})"
    )
    assert "in-the-file" not in result.stdout + result.stderr

    config.chmod(0o640)  # readable by the daemon's group only: fine
    assert "plain text" not in run_cli("check-config", "--config", config).stdout


@pytest.mark.parametrize(
    "value",
    ["${DASHSCOPE_API_KEY}", "${UNSET_VARIABLE_FOR_THE_TEST}", "${DASHSCOPE_API_KEY:-}"],
)
def test_a_key_read_from_the_environment_is_not_reported(tmp_path: Path, value: str):
    config = write_config(
        tmp_path / "config.yaml", f"providers: {{dashscope: {{api_key: '{value}'}}}}\n", mode=0o644
    )
    result = run_cli("check-config", "--config", config)
    assert result.returncode == 0 and "plain text" not in result.stdout


def test_a_default_after_the_variable_counts_as_written(tmp_path: Path):
    text = "providers: {dashscope: {api_key: '${UNSET_VARIABLE_FOR_THE_TEST:-sk-fallback}'}}\n"
    config = write_config(tmp_path / "config.yaml", text, mode=0o604)
    result = run_cli("check-config", "--config", config)
    assert "holds providers.dashscope.api_key in plain text" in result.stdout
    assert "sk-fallback" not in result.stdout


def test_check_config_warns_of_a_readable_key_file(tmp_path: Path):
    key_file = tmp_path / "dashscope.key"
    key_file.write_text("sk-in-a-file\n")
    key_file.chmod(0o644)
    config = write_config(
        tmp_path / "config.yaml",
        f'providers: {{dashscope: {{api_key_file: "{key_file}"}}}}\n',
        mode=0o644,  # the config itself holds no key: readable is fine
    )
    result = run_cli("check-config", "--config", config)
    warnings = [line for line in result.stdout.splitlines() if "warning" in line]
    assert warnings == [
        f"  warning: the key file {key_file} (providers.dashscope.api_key_file) can be read by "
        f"other users: chmod 600 {key_file} (and chown it to the user the daemon runs as)"
    ]
    assert "sk-in-a-file" not in result.stdout

    key_file.chmod(0o600)
    assert "warning" not in run_cli("check-config", "--config", config).stdout


def test_check_config_warns_of_auto_gain_without_noise_suppression(tmp_path: Path):
    mic = "{backend: file, file: /dev/null, auto_gain: 31}"
    config = write_config(tmp_path / "c.yaml", f"satellite: {{enabled: true, mic: {mic}}}\n")
    result = run_cli("check-config", "--config", config)
    assert result.returncode == 0, result.stderr
    assert "warning: satellite.mic.auto_gain without noise_suppression" in result.stdout
    fixed = mic.replace("auto_gain: 31", "auto_gain: 31, noise_suppression: 2")
    config = write_config(tmp_path / "c.yaml", f"satellite: {{enabled: true, mic: {fixed}}}\n")
    assert "auto_gain" not in run_cli("check-config", "--config", config).stdout


def test_voices_of_a_qwen_http_model(tmp_path: Path):
    config = write_config(
        tmp_path / "config.yaml",
        """
speech: {tts: {provider: dashscope}}
providers:
  dashscope: {tts: {model: qwen-tts, voice: Ethan}}
""",
    )
    result = run_cli("voices", "--config", config)
    assert result.returncode == 0, result.stderr
    rows = [row.split() for row in result.stdout.splitlines()[1:]]
    assert rows[0][:2] == ["*", "Ethan"]
    assert [row[0] for row in rows[1:]] == ["Cherry", "Serena", "Chelsie"]
