"""The environment systemd/voice-satellite.service gives the daemon, read from the unit
file: the benchmarks run the daemon as an installed device does."""

from __future__ import annotations

from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "voice-satellite.service"


def unit_environment() -> dict[str, str]:
    """The unit's ``Environment=NAME=value`` settings (the key file aside)."""
    settings: dict[str, str] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        if line.startswith("Environment="):
            name, _, value = line.removeprefix("Environment=").partition("=")
            settings[name] = value
    return settings
