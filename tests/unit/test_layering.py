"""A satellite-only device loads none of the speech providers' code."""

from __future__ import annotations

import json
import subprocess
import sys

SATELLITE_MODULES = (
    "satellite.assist.satellite",
    "satellite.assist.handler",
    "satellite.connections",
    "satellite.frontend.build",
)


def test_satellite_role_imports_no_provider_code() -> None:
    script = (
        "import importlib, json, sys\n"
        f"for name in {SATELLITE_MODULES!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(
        subprocess.run(
            [sys.executable, "-c", script], check=True, capture_output=True, text=True
        ).stdout
    )
    assert "satellite.errors" in loaded  # the error codes it does use
    providers = [
        name
        for name in loaded
        if name.startswith(("satellite.providers", "satellite.speech", "dashscope", "azure"))
    ]
    assert providers == []
