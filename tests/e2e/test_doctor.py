"""``voice-satellite doctor`` as a device owner runs it: the real SDKs against the fake
clouds (good key, bad key, unreachable), the file-backed ALSA devices, a running daemon and
a Home Assistant connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.satellite import RunSatellite

from tests.audio.alsa import use_file_alsa
from tests.cli import run_cli, write_config
from tests.e2e.daemon import Daemon, free_port
from tests.fakes.azure import FakeAzure
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import connect

DEADLINES = "{connect: 2, first_result: 2, total: 6}"


@pytest.fixture
def clouds() -> Iterator[tuple[FakeDashScope, FakeAzure]]:
    with FakeDashScope() as dashscope, FakeAzure() as azure:
        yield dashscope, azure


def doctor_config(
    clouds: tuple[FakeDashScope, FakeAzure],
    *,
    speech_port: int,
    satellite: str = "{enabled: false}",
    dashscope_url: str | None = None,
) -> str:
    dashscope, azure = clouds
    return f"""
zeroconf: false
speech:
  uri: tcp://127.0.0.1:{speech_port}
  asr: {{provider: [dashscope, azure]}}
  tts: {{provider: [azure, espeak]}}
satellite: {satellite}
providers:
  dashscope: {{websocket_url: "{dashscope_url or dashscope.url}", timeouts: {DEADLINES}}}
  azure: {{host: "{azure.host}", timeouts: {DEADLINES}, asr: {{languages: [en-US]}},
           tts: {{voice: en-US-JennyNeural}}}}
"""


def lines_of(output: str) -> dict[str, str]:
    """Each finding's line (and its fix), by the check's name."""
    found: dict[str, str] = {}
    last = ""
    for line in output.splitlines():
        if line.startswith(("ok", "FAIL")):
            last = line.split(None, 1)[1].split(":", 1)[0]
            found[last] = line
        elif line.strip().startswith("->"):
            found[last] += "\n" + line
    return found


def test_every_provider_reached_and_the_devices_opened(tmp_path: Path, monkeypatch, clouds):
    use_file_alsa(tmp_path, monkeypatch, source=bytes(32000))
    satellite = (
        f"{{enabled: true, uri: 'tcp://127.0.0.1:{free_port()}', mic: {{backend: pyaudio}}, "
        "speaker: {backend: pyaudio}, wake: {engine: none}}"
    )
    text = doctor_config(clouds, speech_port=free_port(), satellite=satellite)
    config = write_config(tmp_path / "config.yaml", text)
    result = run_cli("doctor", "--config", config, timeout=120)
    found = lines_of(result.stdout)
    passed = ("config", "dashscope", "azure", "espeak", "microphone", "speaker",
              "dashscope speech-to-text", "azure speech-to-text", "azure text-to-speech",
              "espeak text-to-speech", "speech port", "satellite port", "zeroconf")  # fmt: skip
    for check in passed:
        assert found[check].startswith("ok"), result.stdout
    assert "answered (0." in found["azure text-to-speech"]
    dashscope, azure = clouds
    assert dashscope.received_audio and azure.received_audio and azure.received_ssml
    # The daemon is not running: Home Assistant cannot have connected.
    assert found["Home Assistant"].startswith("FAIL") and "not running" in found["Home Assistant"]
    assert result.returncode == 1 and result.stdout.rstrip().endswith("1 check(s) failed")


def test_a_refused_key_and_an_unreachable_service_say_what_to_do(tmp_path: Path, clouds):
    _, azure = clouds
    azure.key = "another-key"  # the service no longer accepts ours
    unreachable = f"ws://127.0.0.1:{free_port()}/api-ws/v1/inference"
    text = doctor_config(clouds, speech_port=free_port(), dashscope_url=unreachable)
    config = write_config(tmp_path / "config.yaml", text)
    result = run_cli("doctor", "--config", config, timeout=120)
    found = lines_of(result.stdout)
    assert result.returncode == 1
    assert found["dashscope speech-to-text"].startswith("FAIL  dashscope speech-to-text: [connect")
    assert "check the network" in found["dashscope speech-to-text"]
    assert "[auth-failed]" in found["azure speech-to-text"]
    assert "refused the key" in found["azure speech-to-text"]
    assert found["espeak text-to-speech"].startswith("ok")  # the offline voice still works
    assert "test-azure-key" not in result.stdout + result.stderr


def test_a_missing_mic_and_a_taken_port(tmp_path: Path, monkeypatch, clouds):
    use_file_alsa(tmp_path, monkeypatch, source=None)  # the capture device cannot open
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        satellite = "{enabled: true, mic: {backend: pyaudio}, speaker: null, wake: {engine: none}}"
        text = doctor_config(clouds, speech_port=port, satellite=satellite)
        result = run_cli("doctor", "--config", write_config(tmp_path / "c.yaml", text), timeout=120)
    found = lines_of(result.stdout)
    assert (
        found["microphone"].startswith("FAIL") and "voice-satellite devices" in found["microphone"]
    )
    assert "used by another program" in found["speech port"]
    assert result.returncode == 1


async def test_all_pass_with_the_daemon_running_and_home_assistant_connected(tmp_path: Path):
    runtime = tmp_path / "run"
    runtime.mkdir()
    config_text = """
zeroconf: false
speech: {enabled: false}
satellite:
  enabled: true
  uri: LISTEN_URI
  mic: {backend: command, command: "cat /dev/zero"}
  speaker: {backend: command, command: "cat > /dev/null"}
  wake: {engine: none}
"""
    daemon = Daemon(tmp_path, config_text, env={"RUNTIME_DIRECTORY": str(runtime)})
    try:
        daemon.wait_listening()
        env = {"RUNTIME_DIRECTORY": str(runtime)}

        def doctor() -> dict[str, str]:
            result = run_cli("doctor", "--config", daemon.config_path, env=env, timeout=60)
            return {"exit": str(result.returncode), **lines_of(result.stdout)}

        before = await asyncio.to_thread(doctor)
        assert (
            before["satellite port"].startswith("ok")
            and "served by this daemon" in (before["satellite port"])
        )
        assert "has not connected" in before["Home Assistant"] and before["exit"] == "1"
        ha = await connect(daemon.port)
        await ha.write_event(RunSatellite().event())
        for _ in range(100):  # the status line follows within its reporting period
            if "HA connected" in (runtime / "status").read_text(encoding="utf-8"):
                break
            await asyncio.sleep(0.1)
        after = await asyncio.to_thread(doctor)
        assert after["Home Assistant"].startswith("ok"), after
        assert after["exit"] == "0"
        await ha.disconnect()
    finally:
        daemon.stop()
