"""The operations commands (``say``, ``transcribe``, ``run --log-format``) as a user runs
them, with the real SDKs talking to the fake DashScope and Azure servers."""

from __future__ import annotations

import itertools
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.cli import cli_env, run_cli, write_config
from tests.e2e.daemon import REPO, TEST_KEYS, free_port, port_open
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope

DEADLINES = "{connect: 2, first_result: 2, total: 8}"
DASHSCOPE_TRANSCRIPT = "你好。打开客厅的灯。"
AZURE_TRANSCRIPT = "Turn on the light. And close the blinds."


@pytest.fixture
def dashscope() -> Iterator[FakeDashScope]:
    with FakeDashScope() as fake:
        yield fake


@pytest.fixture
def azure() -> Iterator[FakeAzure]:
    with FakeAzure() as fake:
        yield fake


def dashscope_yaml(fake: FakeDashScope, deadlines: str = DEADLINES) -> str:
    return f"""
providers:
  dashscope:
    websocket_url: {fake.url}
    timeouts: {deadlines}
    tts: {{sample_rate: 24000}}
"""


def azure_yaml(fake: FakeAzure) -> str:
    return f"""
speech:
  asr: {{provider: azure}}
  tts: {{provider: azure}}
providers:
  azure:
    host: {fake.host}
    timeouts: {DEADLINES}
    asr: {{languages: [en-US]}}
    tts: {{voice: en-US-JennyNeural, sample_rate: 24000}}
"""


def read_wav(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        fmt = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
        return fmt, wav.readframes(wav.getnframes())


def stereo_44k_wav(path: Path, seconds: float) -> Path:
    """A 44.1 kHz stereo recording, as a phone or a PC might produce."""
    t = np.arange(int(44100 * seconds)) / 44100
    left = np.sin(2 * np.pi * 220 * t) * 6000
    right = np.sin(2 * np.pi * 330 * t) * 6000
    frames = np.stack([left, right], axis=1).astype("<i2").tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setframerate(44100)
        wav.setsampwidth(2)
        wav.setnchannels(2)
        wav.writeframes(frames)
    return path


def tone_file(path: Path, seconds: float = 1.0, rate: int = 44100, **codec: str) -> Path:
    """A stereo tone in the format soundfile picks from the extension (or ``codec``)."""
    t = np.arange(int(rate * seconds)) / rate
    tone = 0.2 * np.sin(2 * np.pi * 220 * t)
    soundfile.write(path, np.stack([tone, tone], axis=1), rate, **codec)
    return path


def assert_no_key(*outputs: str) -> None:
    for key in TEST_KEYS.values():
        assert all(key not in output for output in outputs)


# --- say -------------------------------------------------------------------------------


def test_say_writes_cosyvoice_audio_to_a_wav_file(tmp_path: Path, dashscope: FakeDashScope):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    output = tmp_path / "out.wav"
    result = run_cli("say", "你好，世界。", "--config", config, "--output", output)
    assert result.returncode == 0, result.stderr
    assert dashscope.received_text == [["你好，世界。"]]
    assert read_wav(output) == ((24000, 2, 1), dashscope.tts_audio_for("你好，世界。", 24000))
    lines = result.stderr.splitlines()
    assert lines[0] == "synthesizing with dashscope cosyvoice-v2 voice longxiaochun_v2..."
    assert lines[1].startswith(
        f"0.2 s of audio from dashscope voice longxiaochun_v2 written to {output} "
        "(WAV encoded here); the command took "
    )
    assert_no_key(result.stdout, result.stderr)


def test_say_reads_stdin_and_plays_on_the_configured_speaker(tmp_path: Path, azure: FakeAzure):
    sink = tmp_path / "speaker.raw"
    config = write_config(
        tmp_path / "config.yaml",
        azure_yaml(azure) + f'satellite: {{speaker: {{backend: file, file: "{sink}"}}}}\n',
    )
    result = run_cli(
        "say", "-", "--config", config, "--voice", "en-US-GuyNeural", stdin="Good morning."
    )
    assert result.returncode == 0, result.stderr
    [ssml] = azure.received_ssml
    assert "en-US-GuyNeural" in ssml and "Good morning." in ssml
    assert sink.read_bytes() == azure.tts_audio_for(ssml, 24000)
    assert "voice en-US-GuyNeural" in result.stderr
    assert f"of audio from azure voice en-US-GuyNeural played on file {sink}; " in result.stderr


def test_say_through_a_failover_list_when_the_first_provider_is_down(
    tmp_path: Path, dashscope: FakeDashScope, azure: FakeAzure
):
    dashscope.fault = "refuse"
    config = write_config(
        tmp_path / "config.yaml",
        f"""
speech:
  tts: {{provider: [dashscope, azure]}}
providers:
  dashscope:
    websocket_url: {dashscope.url}
    timeouts: {DEADLINES}
    tts: {{sample_rate: 24000}}
  azure:
    host: {azure.host}
    timeouts: {DEADLINES}
    tts: {{voice: en-US-JennyNeural, sample_rate: 24000}}
""",
    )
    output = tmp_path / "out.wav"
    result = run_cli("say", "Hello there.", "--config", config, "--output", output)
    assert result.returncode == 0, result.stderr
    assert "synthesizing with dashscope -> azure cosyvoice-v2" in result.stderr
    # What it says at the end is who really spoke: the second provider, in its own voice.
    assert "of audio from azure voice en-US-JennyNeural written to" in result.stderr
    [ssml] = azure.received_ssml
    assert read_wav(output) == ((24000, 2, 1), azure.tts_audio_for(ssml, 24000))


def test_a_voice_the_provider_cannot_have_exits_1_before_any_request(
    tmp_path: Path, azure: FakeAzure
):
    config = write_config(tmp_path / "config.yaml", azure_yaml(azure))
    output = tmp_path / "out.wav"
    result = run_cli("say", "Hi.", "--config", config, "--voice", "longwan", "--output", output)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "error: --voice 'longwan' is not an Azure voice (LOCALE-NameNeural); "
        "'voice-satellite voices' lists the voices"
    )
    assert azure.received_ssml == [] and not output.exists()


def test_a_provider_failure_exits_3_with_its_error_code(tmp_path: Path, dashscope: FakeDashScope):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    output = tmp_path / "out.wav"
    result = run_cli(
        "say", "你好", "--config", config, "--output", output, env={"DASHSCOPE_API_KEY": "wrong"}
    )
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1].startswith("error [auth-failed]: ")
    assert "wrong" not in result.stderr
    assert not output.exists()


def test_a_stalled_provider_ends_at_its_deadline(tmp_path: Path, dashscope: FakeDashScope):
    dashscope.fault = "stall"
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    output = tmp_path / "out.wav"
    started = time.monotonic()
    result = run_cli("say", "你好", "--config", config, "--output", output)
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1] == "error [timeout]: synthesis: no answer within 2 s"
    assert time.monotonic() - started < 8  # first_result 2 s, then the providers are closed
    assert not output.exists()

    started = time.monotonic()
    wav = stereo_44k_wav(tmp_path / "in.wav", 1.0)
    result = run_cli("transcribe", wav, "--config", config)
    assert result.returncode == 3 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == "error [timeout]: recognition: no answer within 2 s"
    assert time.monotonic() - started < 8


@pytest.mark.parametrize("moment", ["connecting", "waiting for audio"])
def test_ctrl_c_exits_130_promptly(tmp_path: Path, dashscope: FakeDashScope, moment: str):
    """Also while an SDK call is blocked (the SDK's connect, or its wait for the end of a
    synthesis): the command does not wait for the SDK to give up."""
    dashscope.fault = "stall"
    deadlines = "{connect: 30, first_result: 30, total: 60}"
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope, deadlines))
    command = ["say", "你好", "--config", str(config), "--output", str(tmp_path / "o.wav")]
    process = subprocess.Popen(
        [sys.executable, "-m", "satellite", *command],
        cwd=REPO,
        env=cli_env(),
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as at a terminal, also when the tests run as a background job (which
        # starts with SIGINT ignored, and Python keeps it so).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert process.stderr is not None
        assert process.stderr.readline().startswith("synthesizing with dashscope")
        deadline = time.monotonic() + 10
        while moment == "waiting for audio" and dashscope.received_text != [["你好"]]:
            assert time.monotonic() < deadline, "the text never reached the provider"
            time.sleep(0.05)  # the request is waiting for the stalled provider
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 130
        assert time.monotonic() - interrupted < 5
        assert process.stderr.read().strip() == "interrupted"
        assert not (tmp_path / "o.wav").exists()
    finally:
        process.kill()
        process.wait()


# --- transcribe ------------------------------------------------------------------------


def test_transcribe_converts_any_wav_and_streams_it_fast(tmp_path: Path, dashscope: FakeDashScope):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    wav = stereo_44k_wav(tmp_path / "in.wav", 8.0)
    started = time.monotonic()
    result = run_cli("transcribe", wav, "--config", config, "--language", "en")
    assert time.monotonic() - started < 6.0  # 8 s of audio, not paced in real time
    assert result.returncode == 0, result.stderr
    assert result.stdout == DASHSCOPE_TRANSCRIPT + "\n"
    [received] = dashscope.received_audio
    assert abs(len(received) - 8 * 32000) <= 64  # all of it, as 16 kHz mono s16le
    assert dashscope.requests[0]["parameters"]["language_hints"] == ["en"]
    mono = np.frombuffer(received, dtype="<i2")
    assert 3000 < np.abs(mono).max() < 12000  # the two channels mixed, not one dropped
    assert result.stderr.splitlines()[0] == (
        "transcribing 8.0 s of audio (WAV 16-bit, 44100 Hz, 2 ch) with dashscope "
        "paraformer-realtime-v2..."
    )


def test_transcribe_partials_are_shown_as_they_change(tmp_path: Path, azure: FakeAzure):
    config = write_config(tmp_path / "config.yaml", azure_yaml(azure))
    wav = stereo_44k_wav(tmp_path / "in.wav", 2.0)
    result = run_cli("transcribe", wav, "--config", config, "--partials")
    assert result.returncode == 0, result.stderr
    assert result.stdout == AZURE_TRANSCRIPT + "\n"
    partials = result.stderr.splitlines()[1:-1]  # between the progress lines
    assert len(partials) >= 3
    assert all(a != b for a, b in itertools.pairwise(partials)), partials
    assert partials[-1] == AZURE_TRANSCRIPT
    assert result.stderr.splitlines()[-1].startswith("transcript in ")

    quiet = run_cli("transcribe", wav, "--config", config)
    assert quiet.returncode == 0 and len(quiet.stderr.splitlines()) == 2


# --- audio files ---------------------------------------------------------------------

TRANSCRIPT_FIELDS = ["file", "text", "language", "confidence", "provider", "seconds"]


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_transcribe_mp3_flac_opus_and_wav_in_one_call_as_json_lines(
    tmp_path: Path, azure: FakeAzure
):
    config = write_config(tmp_path / "config.yaml", azure_yaml(azure))
    files = [
        tone_file(tmp_path / "a.mp3", 1.0, 44100),
        tone_file(tmp_path / "b.flac", 1.0, 22050),
        tone_file(tmp_path / "c.opus", 1.0, 48000, format="OGG", subtype="OPUS"),
        tone_file(tmp_path / "d.wav", 1.0, 16000),
    ]
    result = run_cli("transcribe", *files, "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    lines = json_lines(result.stdout)
    assert [list(line) for line in lines] == [TRANSCRIPT_FIELDS] * 4
    assert [line["file"] for line in lines] == [str(file) for file in files]
    for line in lines:
        assert line["text"] == AZURE_TRANSCRIPT
        assert line["language"] == "en-US"  # the configured locale: none identified
        assert line["confidence"] == pytest.approx((0.91 + 0.84) / 2)
        assert line["provider"] == "azure"
        assert 0 < line["seconds"] < 5
    assert len(azure.received_audio) == 4
    for received in azure.received_audio:  # each file whole, as 16 kHz mono s16le
        assert abs(len(received) - 32000) <= 2 * 1920  # Opus and MP3 pad a frame or two
    progress = result.stderr.splitlines()
    assert progress[0] == "transcribing 4 files with azure azure-conversation..."
    assert progress[1].startswith(f"[1/4] {files[0]}: 1.0 s of audio (MP3, 44100 Hz, 2 ch)")
    assert progress[2].startswith(f"[2/4] {files[1]}: 1.0 s of audio (FLAC 16-bit, 22050 Hz")
    assert progress[3].startswith(f"[3/4] {files[2]}: 1.0 s of audio (OGG Opus, 48000 Hz")
    assert progress[4].startswith(f"[4/4] {files[3]}: 1.0 s of audio (WAV 16-bit, 16000 Hz")
    assert " transcript from azure in " in progress[4]
    assert progress[5].startswith("4 of 4 files transcribed in ")


def test_a_corrupt_file_is_reported_and_the_others_are_transcribed(
    tmp_path: Path, dashscope: FakeDashScope
):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    good = tone_file(tmp_path / "good.flac")
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(bytes(range(256)) * 40)
    other = tone_file(tmp_path / "other.ogg")
    result = run_cli("transcribe", good, corrupt, other, "--config", config)
    assert result.returncode == 1
    assert result.stdout == f"{good}: {DASHSCOPE_TRANSCRIPT}\n{other}: {DASHSCOPE_TRANSCRIPT}\n"
    assert len(dashscope.received_audio) == 2
    assert (
        f"error: {corrupt} is not WAV, MP3, FLAC or OGG (Vorbis, Opus) audio: Format not recognised"
    ) in result.stderr.splitlines()
    assert result.stderr.splitlines()[-1].startswith("2 of 3 files transcribed in ")

    as_json = run_cli("transcribe", good, corrupt, "--config", config, "--json")
    assert as_json.returncode == 1
    transcript, failure = json_lines(as_json.stdout)
    assert transcript["provider"] == "dashscope" and transcript["confidence"] is None
    assert transcript["language"] == "zh"  # the config's default: DashScope names none
    assert failure == {
        "file": str(corrupt),
        "error": f"{corrupt} is not WAV, MP3, FLAC or OGG (Vorbis, Opus) audio: "
        "Format not recognised",
        "code": "unusable-file",
    }


def test_a_provider_failure_on_any_file_exits_3(tmp_path: Path, dashscope: FakeDashScope):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    good, missing = tone_file(tmp_path / "good.wav"), tmp_path / "missing.wav"
    result = run_cli(
        "transcribe", good, missing, "--config", config, "--json",
        env={"DASHSCOPE_API_KEY": "wrong"},
    )  # fmt: skip
    assert result.returncode == 3
    refused, unreadable = json_lines(result.stdout)
    assert (refused["file"], refused["code"]) == (str(good), "auth-failed")
    assert unreadable == {
        "file": str(missing),
        "error": f"cannot read {missing}: No such file or directory",
        "code": "unusable-file",
    }
    assert f"error [auth-failed]: {good}: " in result.stderr
    assert "wrong" not in result.stderr + result.stdout


def test_transcribe_names_the_failover_member_that_answered(
    tmp_path: Path, dashscope: FakeDashScope, azure: FakeAzure
):
    dashscope.fault = "refuse"
    config = write_config(
        tmp_path / "config.yaml",
        f"""
speech:
  asr: {{provider: [dashscope, azure], language: en-US}}
providers:
  dashscope: {{websocket_url: {dashscope.url}, timeouts: {DEADLINES}}}
  azure: {{host: {azure.host}, timeouts: {DEADLINES}, asr: {{languages: [en-US]}}}}
""",
    )
    result = run_cli("transcribe", tone_file(tmp_path / "in.mp3"), "--config", config, "--json")
    assert result.returncode == 0, result.stderr
    [line] = json_lines(result.stdout)
    assert (line["text"], line["provider"]) == (AZURE_TRANSCRIPT, "azure")


def test_transcribe_many_files_draws_a_progress_bar_on_a_terminal(tmp_path: Path, azure: FakeAzure):
    config = write_config(tmp_path / "config.yaml", azure_yaml(azure))
    files = [str(tone_file(tmp_path / f"{name}.flac")) for name in ("one", "two")]
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "satellite", "transcribe", *files, "--config", str(config)],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 20
    try:
        while chunk := _read_terminal(controller, deadline):
            shown += chunk
        assert process.wait(timeout=20) == 0
        assert process.stdout is not None
        assert process.stdout.read() == "".join(f"{f}: {AZURE_TRANSCRIPT}\n" for f in files)
    finally:
        os.close(controller)
        process.kill()
        process.wait()
    header, bar = shown.decode().split("\r\n")[:2]
    assert header == "transcribing 2 files with azure azure-conversation..."
    assert bar.startswith("\r\x1b[K[--------------------] 0/2 one.flac\r\x1b[K")
    assert "\r\x1b[K[##########----------] 1/2 two.flac\r\x1b[K" in bar
    assert bar.split("\r\x1b[K")[-1].startswith("2 of 2 files transcribed in ")


@pytest.mark.parametrize(
    ("name", "rate", "asked", "codec", "encoder"),
    [("out.mp3", 24000, "mp3", "MPEG_LAYER_III", "MP3 from dashscope"),
     ("out.mp3", 22050, "mp3", "MPEG_LAYER_III", "MP3 from dashscope"),
     ("out.ogg", 24000, "opus", "OPUS", "Ogg Opus from dashscope"),
     ("out.opus", 16000, "opus", "OPUS", "Ogg Opus from dashscope"),
     ("out.OPUS", 22050, "pcm", "OPUS", "Ogg Opus encoded here"),  # CosyVoice: no 22.05 kHz Opus
     ("out.flac", 24000, "pcm", "PCM_16", "FLAC encoded here")],
)  # fmt: skip
def test_say_writes_the_format_its_extension_names(
    tmp_path: Path,
    dashscope: FakeDashScope,
    name: str,
    rate: int,
    asked: str,
    codec: str,
    encoder: str,
):
    """CosyVoice encodes MP3 and Ogg Opus itself at its rate; anything else is encoded here."""
    yaml = dashscope_yaml(dashscope).replace("sample_rate: 24000", f"sample_rate: {rate}")
    config = write_config(tmp_path / "config.yaml", yaml)
    output = tmp_path / name
    text = "你好，世界。今天天气很好，我们出去走走吧。"
    result = run_cli("say", text, "--config", config, "--output", output)
    assert result.returncode == 0, result.stderr
    [request] = dashscope.requests
    assert request["parameters"]["format"] == asked
    expected = np.frombuffer(dashscope.tts_audio_for(text, rate), dtype="<i2")
    written, written_rate = soundfile.read(output, dtype="int16")
    assert soundfile.info(output).subtype == codec
    assert written_rate == (24000 if rate == 22050 and codec == "OPUS" else rate)
    # MP3 and Opus add a few frames of encoder delay and padding.
    assert abs(len(written) / written_rate - len(expected) / rate) < 0.15
    if codec == "PCM_16":  # lossless
        assert np.array_equal(written, expected)
    assert f"written to {output} ({encoder}); the command took " in result.stderr


@pytest.mark.parametrize(
    ("name", "rate", "asked", "codec", "encoder"),
    [("out.mp3", 24000, "audio-24khz-48kbitrate-mono-mp3", "MPEG_LAYER_III", "MP3 from azure"),
     ("out.opus", 48000, "ogg-48khz-16bit-mono-opus", "OPUS", "Ogg Opus from azure"),
     ("out.mp3", 22050, "raw-22050hz-16bit-mono-pcm", "MPEG_LAYER_III", "MP3 encoded here")],
)  # fmt: skip
def test_say_writes_what_azure_encodes_itself_at_its_rate(
    tmp_path: Path, azure: FakeAzure, name: str, rate: int, asked: str, codec: str, encoder: str
):
    yaml = azure_yaml(azure).replace("sample_rate: 24000", f"sample_rate: {rate}")
    config = write_config(tmp_path / "config.yaml", yaml)
    output = tmp_path / name
    text = "Good morning. The kitchen lights are on, and the blinds are open."
    result = run_cli("say", text, "--config", config, "--output", output)
    assert result.returncode == 0, result.stderr
    encoded = "here" not in encoder
    # Encoded by the service: one request for the whole text, so one stream.
    assert azure.output_formats == [asked] * (1 if encoded else 2)
    expected = sum(len(azure.tts_audio_for(ssml, rate)) for ssml in azure.received_ssml) / 2
    info = soundfile.info(output)
    assert (info.subtype, info.samplerate) == (codec, rate)
    assert abs(info.duration - expected / rate) < 0.15  # MP3, Opus: encoder delay, padding
    assert f"{info.duration:.1f} s of audio from azure voice en-US-JennyNeural " in result.stderr
    assert f"written to {output} ({encoder}); the command took " in result.stderr


def test_say_through_a_failover_list_encodes_where_every_provider_can(
    tmp_path: Path, dashscope: FakeDashScope, azure: FakeAzure
):
    """Whichever provider speaks must give the same format: MP3 from both clouds, but with
    espeak-ng (PCM only) in the list the MP3 is encoded here."""
    dashscope.fault = "refuse"
    clouds = f"""
providers:
  dashscope:
    websocket_url: {dashscope.url}
    timeouts: {DEADLINES}
    tts: {{sample_rate: 24000}}
  azure:
    host: {azure.host}
    timeouts: {DEADLINES}
    tts: {{voice: en-US-JennyNeural, sample_rate: 48000}}
"""
    both = write_config(
        tmp_path / "both.yaml", "speech: {tts: {provider: [dashscope, azure]}}\n" + clouds
    )
    output = tmp_path / "both.mp3"
    result = run_cli("say", "Hello there.", "--config", both, "--output", output)
    assert result.returncode == 0, result.stderr
    assert f"written to {output} (MP3 from azure); " in result.stderr
    assert azure.output_formats == ["audio-48khz-96kbitrate-mono-mp3"]
    assert soundfile.info(output).samplerate == 48000  # the rate of the provider that spoke

    offline = write_config(
        tmp_path / "offline.yaml", "speech: {tts: {provider: [azure, espeak]}}\n" + clouds
    )
    output = tmp_path / "offline.mp3"
    result = run_cli("say", "Hello there.", "--config", offline, "--output", output)
    assert result.returncode == 0, result.stderr
    assert f"written to {output} (MP3 encoded here); " in result.stderr
    assert azure.output_formats[1:] == ["raw-48khz-16bit-mono-pcm"]
    assert soundfile.info(output).format == "MP3"


def test_say_without_a_provider_encoding_encodes_mp3_here(tmp_path: Path):
    config = write_config(tmp_path / "config.yaml", "speech: {tts: {provider: espeak}}\n")
    output = tmp_path / "out.mp3"
    result = run_cli("say", "Hello there.", "--config", config, "--output", output)
    assert result.returncode == 0, result.stderr
    info = soundfile.info(output)
    assert (info.format, info.samplerate) == ("MP3", 22050)
    assert 0.5 < info.duration < 3
    assert f"written to {output} (MP3 encoded here); " in result.stderr


@pytest.mark.parametrize("name", ["out.mp3", "out.opus"])
def test_a_synthesis_failing_mid_stream_leaves_no_encoded_file(
    tmp_path: Path, dashscope: FakeDashScope, name: str
):
    dashscope.pace = 1.0  # real time: about 3 s of audio, over the 1.5 s total deadline
    deadlines = "{connect: 2, first_result: 2, total: 1.5}"
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope, deadlines))
    output = tmp_path / name
    text = "今天天气很好，我们出去走走吧。" * 5
    result = run_cli("say", text, "--config", config, "--output", output)
    assert result.returncode == 3
    assert result.stderr.splitlines()[-1].startswith("error [timeout]: synthesis: ")
    [request] = dashscope.requests
    assert request["parameters"]["format"] != "pcm" and dashscope.first_audio_sent
    assert not output.exists()


def test_say_refuses_an_unknown_extension_before_any_request(
    tmp_path: Path, dashscope: FakeDashScope
):
    config = write_config(tmp_path / "config.yaml", dashscope_yaml(dashscope))
    output = tmp_path / "out.aac"
    result = run_cli("say", "你好", "--config", config, "--output", output)
    assert result.returncode == 1
    assert result.stderr == (
        f"error: cannot write {output}: the file name must end in .wav, .flac, .mp3, .ogg "
        "or .opus\n"
    )
    assert dashscope.requests == [] and dashscope.received_text == []
    assert not output.exists()


# --- run: log format and readable keys ---------------------------------------------------


def test_run_logs_json_lines_and_warns_of_a_readable_key(tmp_path: Path):
    port = free_port()
    config = write_config(
        tmp_path / "config.yaml",
        f"""
zeroconf: false
log_format: text
speech: {{uri: "tcp://127.0.0.1:{port}"}}
providers: {{dashscope: {{api_key: sk-written-in-the-file}}}}
""",
        mode=0o644,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "satellite", "run", "--config", str(config), "--log-format", "json"],
        cwd=REPO,
        env=cli_env(),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_open(port) and time.monotonic() < deadline:
            assert process.poll() is None
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
        assert process.returncode == 0, stderr
    finally:
        process.kill()
        process.wait()
    entries = [json.loads(line) for line in stderr.splitlines()]  # every line is one object
    assert all(set(e) == {"time", "level", "logger", "message"} for e in entries)
    assert all(e["time"].endswith("Z") for e in entries)
    assert abs(datetime.fromisoformat(entries[0]["time"]).timestamp() - time.time()) < 60
    messages = {e["message"]: e for e in entries}
    assert any(m.startswith("speech endpoint listening") for m in messages)
    [warning] = [e for e in entries if e["level"] == "warning"]
    assert warning["logger"] == "satellite"
    assert f"{config} holds providers.dashscope.api_key in plain text" in warning["message"]
    assert f"chmod 600 {config}" in warning["message"]
    assert "sk-written-in-the-file" not in stderr


def test_transcribe_partials_update_one_line_on_a_terminal(tmp_path: Path, azure: FakeAzure):
    config = write_config(tmp_path / "config.yaml", azure_yaml(azure))
    wav = stereo_44k_wav(tmp_path / "in.wav", 2.0)
    controller, terminal = pty.openpty()
    command = ["transcribe", str(wav), "--config", str(config), "--partials"]
    process = subprocess.Popen(
        [sys.executable, "-m", "satellite", *command],
        cwd=REPO,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=terminal,
        text=True,
    )
    os.close(terminal)
    shown = b""
    deadline = time.monotonic() + 20
    try:
        while chunk := _read_terminal(controller, deadline):
            shown += chunk
        assert process.wait(timeout=20) == 0
        assert process.stdout is not None and process.stdout.read() == AZURE_TRANSCRIPT + "\n"
    finally:
        os.close(controller)
        process.kill()
        process.wait()
    progress, updating, done = shown.decode().split("\r\n")[:3]
    assert progress.startswith("transcribing 2.0 s of audio")
    assert updating.startswith("\r\x1b[KTurn") and updating.count("\r\x1b[K") >= 3
    assert updating.rsplit("\r\x1b[K", 1)[1] == AZURE_TRANSCRIPT  # the line ends as the result
    assert done.startswith("transcript in ")


def _read_terminal(controller: int, deadline: float) -> bytes:
    """What the program wrote to its terminal; b"" once it has closed it."""
    readable, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
    assert readable, "the program neither wrote nor closed its terminal in time"
    try:
        return os.read(controller, 4096)
    except OSError:  # EIO: every writer has closed the terminal
        return b""
