"""scripts/run and scripts/install as a device owner meets them: a restart needs no network,
and a system they cannot work on is refused up front with what to do."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.daemon import REPO, TEST_KEYS, free_port

NEEDS_NAMESPACE = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"),
    reason="needs root, unshare and ip to make a network namespace without a network",
)


def platform_check(fake_commands: str) -> subprocess.CompletedProcess[str]:
    """scripts/common.sh's check_platform, with ``uname``/``getconf`` answering as another
    system's would (shell functions take precedence over commands)."""
    script = f"source scripts/common.sh\n{fake_commands}\ncheck_platform"
    return subprocess.run(
        ["bash", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=30
    )


def test_this_machine_passes_the_platform_check() -> None:
    result = platform_check("")
    assert result.returncode == 0 and result.stderr == ""


@pytest.mark.parametrize("arch", ["armv7l", "armv6l", "i686"])
def test_a_32_bit_system_is_refused_with_what_to_install(arch: str) -> None:
    result = platform_check(f"uname() {{ echo {arch}; }}")
    assert result.returncode == 1
    assert f"needs a 64-bit system (arm64 or amd64); this one is {arch}" in result.stderr
    assert "Raspberry Pi OS (64-bit)" in result.stderr


def test_a_c_library_older_than_bookworm_is_refused() -> None:
    result = platform_check("getconf() { echo 'glibc 2.31'; }")  # Debian 11
    assert result.returncode == 1
    assert "needs Debian 12 (bookworm) or newer" in result.stderr and "2.31" in result.stderr


def test_the_package_lists_hold_what_the_unit_runs() -> None:
    """The unit's reload command is /bin/kill, from procps: a minimal image lacks it."""
    unit = (REPO / "systemd" / "voice-satellite.service").read_text(encoding="utf-8")
    assert "/bin/kill" in unit
    listed = subprocess.run(
        ["bash", "-c", 'source scripts/common.sh; echo "${RUNTIME_PACKAGES[@]}"'],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()  # fmt: skip
    assert "procps" in listed


def fresh_checkout(destination: Path) -> Path:
    """This checkout's files, without its virtualenv or caches, as a new clone has them."""
    destination.mkdir()
    excluded = ("--exclude=.git", "--exclude=.venv", "--exclude=*_cache", "--exclude=__pycache__")
    packed = subprocess.run(
        ["tar", *excluded, "-cf", "-", "."], cwd=REPO, capture_output=True, check=True
    )
    subprocess.run(["tar", "-xf", "-"], cwd=destination, input=packed.stdout, check=True)
    return destination


@NEEDS_NAMESPACE
@pytest.mark.timeout(900)
def test_a_second_start_needs_no_network(tmp_path: Path) -> None:
    """A fresh checkout's first start installs; the second starts the daemon without reaching
    the package index: here inside a network namespace that has only a loopback interface."""
    checkout = fresh_checkout(tmp_path / "checkout")
    first = subprocess.run(
        ["scripts/run", "--help"], cwd=checkout, capture_output=True, text=True, timeout=840
    )
    assert first.returncode == 0, first.stderr
    assert (checkout / ".venv" / "bin" / "voice-satellite").exists()
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"zeroconf: false\nspeech: {{uri: 'tcp://127.0.0.1:{port}'}}\n"
        "satellite: {enabled: false}\n",
        encoding="utf-8",
    )
    log = tmp_path / "run.log"
    start = f"scripts/run --config {config}"
    with log.open("w") as output:
        started = time.monotonic()
        process = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", f"ip link set lo up && exec {start}"],
            cwd=checkout, stdout=output, stderr=subprocess.STDOUT,
            env={**os.environ, **TEST_KEYS, "PIP_INDEX_URL": "http://10.255.255.1/"},
        )  # fmt: skip
        try:
            while "listening" not in log.read_text() and process.poll() is None:
                assert time.monotonic() - started < 60, log.read_text()
                time.sleep(0.05)
            listening_after = time.monotonic() - started
        finally:
            process.terminate()
            process.wait(timeout=20)
    text = log.read_text()
    assert "speech endpoint listening" in text, text
    assert "installing" not in text and "pip" not in text.lower()
    print(f"second start: listening after {listening_after:.2f} s")
