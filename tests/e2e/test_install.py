"""scripts/install as a device owner uses it: install, the commands on PATH with the
service's config and keys, an upgrade in place, and removal with or without the config.

Runs the real script (as root) into temporary directories instead of /opt, /etc and
/usr/local/bin; it creates the system user "voice-satellite" as on a device.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests.e2e.daemon import REPO

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("useradd") is None,
        reason="installs a system user and root-owned files: needs root",
    ),
    pytest.mark.timeout(900),
]


def install(places: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("VOICE_")
    }
    return subprocess.run(
        ["scripts/install", *args], cwd=REPO, capture_output=True, text=True, timeout=840,
        env={**environment, **places},
    )  # fmt: skip


def test_install_upgrade_and_removal(tmp_path: Path) -> None:
    prefix, config_dir = tmp_path / "opt", tmp_path / "etc"
    unit_dir, bin_dir = tmp_path / "systemd", tmp_path / "bin"
    places = {
        "VOICE_SATELLITE_PREFIX": str(prefix),
        "VOICE_SATELLITE_CONFIG_DIR": str(config_dir),
        "VOICE_SATELLITE_UNIT_DIR": str(unit_dir),
        "VOICE_SATELLITE_BIN_DIR": str(bin_dir),
    }
    first = install(places)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "installed: voice-satellite" in first.stdout
    config, env = config_dir / "config.yaml", config_dir / "env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600 and env.stat().st_uid == 0
    unit = (unit_dir / "voice-satellite.service").read_text(encoding="utf-8")
    assert f"ExecStart={prefix}/.venv/bin/voice-satellite run --config {config}" in unit

    # The command on PATH uses the service's config and, as root, its keys.
    env.write_text("DASHSCOPE_API_KEY=sk-installed-key\n", encoding="utf-8")
    command = bin_dir / "voice-satellite"
    checked = subprocess.run(
        [command, "check-config"], capture_output=True, text=True, timeout=60,
        env={name: value for name, value in os.environ.items() if "DASHSCOPE" not in name},
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{config}: valid")
    assert "DashScope has no API key" not in checked.stdout
    assert "sk-installed-key" not in checked.stdout + checked.stderr

    # An upgrade replaces the program (a file gone upstream goes), keeps config and keys,
    # and reinstalls nothing when the dependencies did not change.
    obsolete = prefix / "satellite" / "removed_upstream.py"
    obsolete.write_text("", encoding="utf-8")
    config.write_text(config.read_text(encoding="utf-8") + "# my edit\n", encoding="utf-8")
    stamp = prefix / ".venv" / ".installed-_"
    installed_at = stamp.stat().st_mtime
    second = install(places)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "reinstalled: voice-satellite" in second.stdout
    assert not obsolete.exists() and (prefix / "satellite" / "cli.py").exists()
    assert config.read_text(encoding="utf-8").endswith("# my edit\n")
    assert env.read_text(encoding="utf-8") == "DASHSCOPE_API_KEY=sk-installed-key\n"
    assert stamp.stat().st_mtime == installed_at

    # A config this version refuses is reported, not silently started.
    config.write_text("speech:\n  asr: {provider: dashscope, langauge: zh}\n", encoding="utf-8")
    third = install(places)
    assert "speech.asr.langauge: unknown key" in third.stderr
    assert "ATTENTION" in third.stderr

    removed = install(places, "--uninstall")
    assert removed.returncode == 0, removed.stderr
    assert not prefix.exists() and not command.exists()
    assert not (unit_dir / "voice-satellite.service").exists()
    assert config.exists() and env.exists()
    purged = install(places, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not config_dir.exists()


def test_install_refuses_unknown_options() -> None:
    result = subprocess.run(
        ["scripts/install", "--purge"], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 1 and "usage: sudo scripts/install" in result.stderr
