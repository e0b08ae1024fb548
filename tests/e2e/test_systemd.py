"""The systemd unit verifies clean and is hardened; the daemon speaks sd_notify."""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from wyoming.tts import Synthesize

from tests.e2e.daemon import REPO, Daemon, port_open
from tests.fakes.dashscope import FakeDashScope
from tests.wyoming_client import connect, read, read_until

UNIT = REPO / "systemd" / "voice-satellite.service"
INSTALLED_PROGRAM = "/opt/voice-satellite/.venv/bin/voice-satellite"
MAX_EXPOSURE = 3.0

needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture
def unit_here(tmp_path) -> Path:
    """The unit with ExecStart pointing at this checkout's program (verify requires it)."""
    program = Path(sys.executable).with_name("voice-satellite")
    text = UNIT.read_text(encoding="utf-8")
    assert INSTALLED_PROGRAM in text
    unit = tmp_path / UNIT.name
    unit.write_text(text.replace(INSTALLED_PROGRAM, str(program)), encoding="utf-8")
    return unit


@needs_systemd
def test_unit_verifies_without_a_single_remark(unit_here):
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit_here)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout + result.stderr == ""


@needs_systemd
def test_unit_exposure_is_at_most_3(unit_here):
    threshold = f"--threshold={MAX_EXPOSURE * 10:g}"  # on systemd's 0-100 scale
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", threshold, str(unit_here)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert "Overall exposure level" in last, result.stdout
    exposure = float(last.split(":")[1].split()[0])
    assert exposure <= MAX_EXPOSURE and result.returncode == 0, last


@pytest.fixture
def notify_socket(tmp_path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.settimeout(10)
    yield sock
    sock.close()


def messages_until(sock: socket.socket, wanted: str) -> list[str]:
    received = []
    while not received or wanted not in received[-1]:
        received.append(sock.recv(4096).decode())
    return received


def test_daemon_tells_systemd_ready_alive_and_stopping(tmp_path, notify_socket):
    daemon = Daemon(
        tmp_path,
        "speech: {uri: LISTEN_URI}\nproviders: {dashscope: {warm_connections: 0}}\n",
        env={"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "200000"},
    )
    try:
        ready = messages_until(notify_socket, "READY=1")[-1]
        assert port_open(daemon.port)  # ready only once the server listens
        assert "STATUS=serving: " in ready and f"127.0.0.1:{daemon.port}" in ready
        fed = time.monotonic()
        watchdog = [notify_socket.recv(4096).decode() for _ in range(3)]
        assert watchdog == ["WATCHDOG=1"] * 3
        assert time.monotonic() - fed < 2.0  # every 0.1 s: half the 0.2 s watchdog
        daemon.process.send_signal(signal.SIGHUP)  # systemctl reload
        reload = [m for m in messages_until(notify_socket, "READY=1") if m != "WATCHDOG=1"]
        assert reload[0].startswith("RELOADING=1") and "STATUS=serving: " in reload[-1]
        assert daemon.stop() == 0, daemon.logs()
        assert "STOPPING=1" in messages_until(notify_socket, "STOPPING=1")[-1]
    finally:
        daemon.stop()


async def test_status_counts_the_requests_answered_and_failed(tmp_path, notify_socket):
    """``systemctl status`` shows what the daemon has done, updated as it serves."""
    with FakeDashScope() as fake:
        daemon = Daemon(
            tmp_path,
            f"speech: {{uri: LISTEN_URI}}\n"
            f"providers: {{dashscope: {{websocket_url: {fake.url}, warm_connections: 0}}}}\n",
            env={"NOTIFY_SOCKET": notify_socket.getsockname()},
        )
        try:
            ready = await asyncio.to_thread(messages_until, notify_socket, "READY=1")
            assert "0 transcribed, 0 synthesized, 0 failed" in ready[-1], ready
            client = await connect(daemon.port)
            await client.write_event(Synthesize(text="你好。").event())
            assert (await read_until(client, "audio-stop"))[-1].type == "audio-stop"
            fake.fault = "auth"
            await client.write_event(Synthesize(text="你好。").event())
            assert (await read(client)).data["code"] == "auth-failed"
            await client.disconnect()
            status = await asyncio.to_thread(messages_until, notify_socket, "1 failed")
            assert "0 transcribed, 1 synthesized, 1 failed (auth-failed 1)" in status[-1]
        finally:
            assert daemon.stop() == 0, daemon.logs()
