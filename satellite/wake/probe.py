"""Loads a user's wake-word model file in a child process: the engines' native loaders
crash the process on a corrupt file instead of raising, so the daemon never tries one
that this probe could not load.

Usage: ``python -m satellite.wake.probe ENGINE MODEL``; exit code 0 when it loads.
"""

from __future__ import annotations

import subprocess
import sys

from ..config import WakeConfig

PROBE_TIMEOUT_S = 30.0


def load_problem(engine: str, model: str) -> str | None:
    """Why the engine cannot load ``model`` (a file path), or None when it loads."""
    try:
        probe = subprocess.run(
            [sys.executable, "-m", __name__, engine, model],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"model file {model!r}: loading it took over {PROBE_TIMEOUT_S:g} s"
    if probe.returncode == 0:
        return None
    said = [line for line in (probe.stderr + probe.stdout).splitlines() if line.strip()]
    reason = said[-1].strip() if said else f"the loader crashed (exit code {probe.returncode})"
    return f"model file {model!r} is corrupt or not a model for the {engine} engine: {reason}"


def main() -> int:
    from .engine import WakeModelError, build_engine

    engine, model = sys.argv[1:3]
    config = WakeConfig.model_construct(engine=engine, models=(model,), threshold=None)
    try:
        build_engine(config)
    except WakeModelError as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
