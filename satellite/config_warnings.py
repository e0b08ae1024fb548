"""What a valid config may still get wrong: missing keys or programs, and keys that other
users of the machine can read. Shown by ``check-config``, logged by ``run``."""

from __future__ import annotations

import stat
from pathlib import Path

from .config import LoadedConfig
from .provider_table import PROVIDERS


def config_warnings(loaded: LoadedConfig) -> list[str]:
    """One line per problem; never a key's value."""
    setup = [
        problem for name in providers_in_use(loaded) for problem in setup_problems(loaded, name)
    ]
    return setup + other_warnings(loaded)


def providers_in_use(loaded: LoadedConfig) -> list[str]:
    """The providers the speech roles name, in order (none when the endpoint is off)."""
    speech = loaded.config.speech
    if not speech.enabled:
        return []
    return list(dict.fromkeys((*speech.asr.provider, *speech.tts.provider)))


def setup_problems(loaded: LoadedConfig, name: str) -> list[str]:
    """What provider ``name`` lacks: its key, a region, its program."""
    section = getattr(loaded.config.providers, name)
    return PROVIDERS[name].setup_check(section, loaded.secret_hint)


def other_warnings(loaded: LoadedConfig) -> list[str]:
    """Keys other users can read, and settings that make the satellite mishear."""
    return _exposed_secrets(loaded) + _satellite_hearing(loaded)


def _satellite_hearing(loaded: LoadedConfig) -> list[str]:
    """Settings that make the satellite hear what is not speech."""
    satellite = loaded.config.satellite
    mic = satellite.mic
    if satellite.enabled and mic.auto_gain and not mic.noise_suppression:
        return [
            "satellite.mic.auto_gain without noise_suppression raises room noise until the VAD "
            "takes it for speech: set satellite.mic.noise_suppression (2 is a good start)"
        ]
    return []


def _readable_by_others(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:  # a missing key file is reported when a request needs it
        return False


def _exposed_secrets(loaded: LoadedConfig) -> list[str]:
    """Warnings for keys that every user of the machine can read (never their values)."""
    fix = "chmod 600 {0} (and chown it to the user the daemon runs as)"
    warnings = []
    if loaded.written_secrets and _readable_by_others(Path(loaded.source)):
        keys = " and ".join(loaded.written_secrets)
        warnings.append(
            f"{loaded.source} holds {keys} in plain text and other users can read it: "
            f"{fix.format(loaded.source)}, or read the key from the environment (${{VAR}})"
        )
    for spec in PROVIDERS.values():
        _, file = spec.key_and_file(getattr(loaded.config.providers, spec.name))
        if file is not None and _readable_by_others(file):
            key_path = f"{spec.key_path}_file"
            warnings.append(
                f"the key file {file} ({key_path}) can be read by other users: {fix.format(file)}"
            )
    return warnings
