"""The audio commands a user runs while wiring a device: ``devices`` and ``mic-test``."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.audio.alsa import use_file_alsa
from tests.audio.speech import silence, speech_pcm, write_wav
from tests.audio.wake_fixtures import in_silence, wake_phrase
from tests.e2e.daemon import REPO


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satellite", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ),
    )


def test_devices_lists_indexes_and_names(tmp_path, monkeypatch):
    use_file_alsa(tmp_path, monkeypatch)
    result = run_cli("devices")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["index", "in", "out", "rate", "name"]
    default = next(line for line in lines[1:] if line.rstrip().endswith("default"))
    index, inputs, outputs = default.split()[:3]
    assert index.isdigit() and int(inputs) > 0 and int(outputs) > 0


def test_mic_test_shows_level_and_voice(tmp_path):
    mic = tmp_path / "mic.wav"
    write_wav(mic, silence(1.0) + speech_pcm("turn on the kitchen light") + silence(1.0))
    config = tmp_path / "config.yaml"
    config.write_text(f'satellite: {{mic: {{backend: file, file: "{mic}"}}}}\n')
    result = run_cli("mic-test", "--config", str(config), "--seconds", "2.5")
    assert result.returncode == 0, result.stderr
    meters = [line for line in result.stdout.splitlines() if "dBFS" in line]
    assert 20 <= len(meters) <= 30  # one line per 100 ms
    assert "VOICE" not in meters[0] and meters[0].strip().startswith("-60.0")
    assert any("VOICE" in line for line in meters[10:20])  # the speech, about 1 s in


def test_mic_test_shows_each_wake_models_probability(tmp_path):
    mic = tmp_path / "mic.wav"
    write_wav(mic, in_silence(wake_phrase("okay nabu"), 1.0, 1.5))
    config = tmp_path / "config.yaml"
    config.write_text(
        f'satellite: {{mic: {{backend: file, file: "{mic}"}}, '
        "wake: {engine: micro, models: [okay_nabu, alexa]}}\n"
    )
    result = run_cli("mic-test", "--config", str(config), "--seconds", "3")
    assert result.returncode == 0, result.stderr
    assert "wake word: micro, okay_nabu, alexa" in result.stdout
    meters = [line for line in result.stdout.splitlines() if "dBFS" in line]
    silent = meters[0].split("|", 2)[2]
    assert "okay_nabu   -  " in silent and "alexa   -  " in silent  # no speech: no inference
    probabilities = [
        float(m.group(1)) for line in meters for m in [re.search(r"okay_nabu (0\.\d+)", line)] if m
    ]
    assert max(probabilities) > 0.85  # the model's own cutoff
    assert sum("DETECTED okay_nabu" in line for line in meters) == 1
    assert not any("DETECTED alexa" in line for line in meters)


def test_mic_test_refuses_a_threshold_out_of_range(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("satellite: {mic: {backend: file, file: /dev/null}}\n")
    result = run_cli("mic-test", "--config", str(config), "--threshold", "1.5", "--seconds", "1")
    assert result.returncode != 0 and "threshold" in result.stderr


def test_audio_library_probing_never_reaches_the_terminal(tmp_path):
    """PortAudio probes every ALSA PCM and the JACK server; on a device without a sound
    card or JACK that is about 70 lines of C-library chatter before the answer."""
    env = {name: value for name, value in os.environ.items() if name != "ALSA_CONFIG_PATH"}
    result = subprocess.run(
        [sys.executable, "-m", "satellite", "devices"],
        cwd=REPO, capture_output=True, text=True, timeout=30, env=env,
    )  # fmt: skip
    assert result.stdout.splitlines()[0].split() == ["index", "in", "out", "rate", "name"]
    # Only the command's own answer: no devices at all on a machine without a sound card.
    assert result.stderr.strip() in ("", "no audio devices found"), result.stderr


def test_mic_test_without_a_mic_ends_at_once_naming_the_input_device(tmp_path, monkeypatch):
    use_file_alsa(tmp_path, monkeypatch, source=None)  # the capture device cannot open
    config = tmp_path / "config.yaml"
    config.write_text("satellite: {mic: {backend: pyaudio}}\n")
    result = run_cli("mic-test", "--config", str(config), "--seconds", "60", timeout=20)
    assert result.returncode == 1
    assert "error: microphone default pyaudio device" in result.stderr
    assert "output" not in result.stderr.split("error:", 1)[1]
    config.write_text("satellite: {mic: {backend: pyaudio, device: usb-mic}}\n")
    result = run_cli("mic-test", "--config", str(config), "--seconds", "60", timeout=20)
    assert result.returncode == 1
    assert "no input device 'usb-mic' (input devices here: none)" in result.stderr
    assert "'voice-satellite devices'" in result.stderr


def test_check_config_warns_of_a_named_mic_this_device_lacks(tmp_path, monkeypatch):
    use_file_alsa(tmp_path, monkeypatch)
    config = tmp_path / "config.yaml"
    config.write_text(
        "speech: {enabled: false}\n"
        "satellite: {enabled: true, mic: {backend: pyaudio, device: usb-mic},"
        " speaker: {backend: pyaudio}}\n"
    )
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr  # valid: the mic may be plugged in later
    warnings = [line.strip() for line in result.stdout.splitlines() if "warning:" in line]
    assert warnings == [
        "warning: satellite.mic: no input device 'usb-mic' (input devices here: 'default'); "
        "check that it is plugged in and listed by 'voice-satellite devices'"
    ]  # the default speaker is there: nothing said of it
