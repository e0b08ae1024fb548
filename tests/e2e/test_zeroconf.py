"""Zeroconf advertisement, checked inside a private network namespace (needs root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.daemon import REPO

NAMESPACE_SETUP = (
    "ip link set lo up && ip link add vs0 type veth peer name vs1 && "
    "ip addr add 10.123.0.1/24 dev vs0 && ip link set vs0 up && ip link set vs1 up"
)

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
    reason="needs root, unshare and ip to make a private network namespace",
)


def browse(config: Path, expected: int, seconds: float = 15) -> list[str]:
    """Services found within ``seconds`` (sooner once ``expected`` were found)."""
    probe = f"{sys.executable} -m tests.e2e.zeroconf_probe {config} {expected} 10.123.0.1 {seconds}"
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"{NAMESPACE_SETUP} && {probe}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("FOUND ")]


def test_both_servers_are_advertised_with_a_routable_address(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text(
        """
speech: {uri: "tcp://0.0.0.0:10300", name: "kitchen speech"}
satellite:
  enabled: true
  uri: "tcp://0.0.0.0:10700"
  name: "kitchen satellite"
  mic: {backend: command, command: "cat /dev/zero"}
  speaker: null
""",
        encoding="utf-8",
    )
    assert browse(config, 2) == [
        "FOUND kitchen satellite._wyoming._tcp.local. 10.123.0.1:10700",
        "FOUND kitchen speech._wyoming._tcp.local. 10.123.0.1:10300",
    ]


def test_zeroconf_false_advertises_nothing(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text('zeroconf: false\nspeech: {uri: "tcp://0.0.0.0:10300"}\n', encoding="utf-8")
    assert browse(config, 1, seconds=4) == []


def test_doctor_sees_the_running_daemon_advertised(tmp_path: Path):
    config = tmp_path / "config.yaml"
    config.write_text('speech: {uri: "tcp://0.0.0.0:10300", name: "doctor speech"}\n')
    daemon = f"{sys.executable} -m satellite run --config {config}"
    wait = f"{sys.executable} -m tests.e2e.wait_port 10300 20"
    doctor = f"{sys.executable} -m satellite doctor --config {config}"
    script = (
        f"{NAMESPACE_SETUP} && {{ {daemon} >/dev/null 2>&1 & daemon=$!; }} "
        f"&& {wait} && {doctor}; kill $daemon; wait $daemon"
    )
    result = subprocess.run(
        ["unshare", "-n", "sh", "-c", script],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), "DASHSCOPE_API_KEY": "test-dashscope-key"},
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert "ok    speech port: tcp://0.0.0.0:10300: served by this daemon (running)" in lines
    assert "ok    zeroconf speech: 'doctor speech' is advertised" in lines, result.stdout
