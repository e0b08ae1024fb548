"""Command line: ``voice-satellite run | check-config | devices | mic-test``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError, LoadedConfig, load_config

_LOGGER = logging.getLogger("satellite")


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="YAML config file (default: $VOICE_SATELLITE_CONFIG, then "
        "/etc/voice-satellite/config.yaml, then built-in defaults)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-satellite",
        description="Wyoming speech endpoint (DashScope / Azure) for Home Assistant.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    _config_argument(run)
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides log_level from the config",
    )

    check = commands.add_parser("check-config", help="validate the config; exit 1 on problems")
    _config_argument(check)

    commands.add_parser("devices", help="list the audio devices PyAudio sees, with their indexes")

    meter = commands.add_parser(
        "mic-test", help="show a live level and VAD meter from the configured microphone"
    )
    _config_argument(meter)
    meter.add_argument(
        "--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)"
    )
    meter.add_argument(
        "--aggressiveness",
        type=int,
        choices=range(4),
        default=None,
        help="try a VAD aggressiveness other than satellite.vad.aggressiveness",
    )
    return parser


def _load_or_report(path: Path | None) -> LoadedConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"invalid configuration: {exc.source}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return None


def _missing_secrets(loaded: LoadedConfig) -> list[str]:
    """Warnings for what the providers in use lack: keys, a region, the offline voice."""
    config = loaded.config
    speech = config.speech
    used = {*speech.asr.provider, *speech.tts.provider} if speech.enabled else set()
    warnings = []
    if "dashscope" in used and not (
        config.providers.dashscope.api_key.get_secret_value()
        or config.providers.dashscope.api_key_file
    ):
        warnings.append(
            f"DashScope has no API key; requests will fail until you "
            f"{loaded.secret_hint('providers.dashscope.api_key')}"
        )
    azure = config.providers.azure
    if "azure" in used and not azure.host:
        if not (azure.key.get_secret_value() or azure.key_file):
            warnings.append(
                f"Azure Speech has no key; requests will fail until you "
                f"{loaded.secret_hint('providers.azure.key')}"
            )
        if not azure.region:
            warnings.append(
                "Azure Speech has no region; "
                f"{loaded.secret_hint('providers.azure.region')} or set providers.azure.host"
            )
    program = config.providers.espeak.program
    if "espeak" in used and shutil.which(program) is None:
        warnings.append(
            f"the offline voice's program {program!r} is not installed: apt install espeak-ng "
            "(or set providers.espeak.program to its path)"
        )
    return warnings


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.config)
    if loaded is None:
        return 1
    config = loaded.config
    print(f"{loaded.source}: valid")
    if config.speech.enabled:
        asr, tts = config.speech.asr.provider, config.speech.tts.provider
        print(
            f"  speech endpoint {config.speech.uri}: ASR {' -> '.join(asr)}, TTS {' -> '.join(tts)}"
        )
    if config.satellite.enabled:
        satellite = config.satellite
        speaker = satellite.speaker.backend if satellite.speaker else "none"
        print(
            f"  satellite {satellite.uri}: mic {satellite.mic.backend}, speaker {speaker}, "
            f"start stage {satellite.start_stage}"
        )
    for warning in _missing_secrets(loaded):
        print(f"  warning: {warning}")
    return 0


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDKs' own logs repeat failures that our log lines already report (with tracebacks
    # of deliberate cancellations), and some log request headers, which carry the key.
    for sdk_logger in ("dashscope", "websocket", "websockets", "aiohttp"):
        logging.getLogger(sdk_logger).setLevel(logging.CRITICAL)


def _run(args: argparse.Namespace) -> int:
    from .daemon import Daemon

    loaded = _load_or_report(args.config)
    if loaded is None:
        return 1
    _setup_logging(args.log_level or loaded.config.log_level)
    for warning in _missing_secrets(loaded):
        _LOGGER.warning(warning)
    try:
        asyncio.run(Daemon(loaded).run())
    except OSError as exc:
        _LOGGER.error("cannot start: %s", exc)
        return 1
    return 0


def _devices(_: argparse.Namespace) -> int:
    from .audio.device import list_devices

    try:
        devices = list_devices()
    except OSError as exc:
        print(f"cannot list audio devices: {exc}", file=sys.stderr)
        return 1
    print("index  in  out  rate    name")
    for device in devices:
        print(
            f"{device.index:5}  {device.inputs:2}  {device.outputs:3}  {device.default_rate:6}  "
            f"{device.name}"
        )
    if not devices:
        print("no audio devices found", file=sys.stderr)
        return 1
    print(
        "\nUse the index or (part of) the name as satellite.mic.device / satellite.speaker.device."
    )
    return 0


def _mic_test(args: argparse.Namespace) -> int:
    from .audio.meter import run_meter

    loaded = _load_or_report(args.config)
    if loaded is None:
        return 1
    _setup_logging("warning")
    satellite = loaded.config.satellite
    vad = satellite.vad
    if args.aggressiveness is not None:
        vad = vad.model_copy(update={"aggressiveness": args.aggressiveness})
    print(f"mic: {satellite.mic.backend}; VAD aggressiveness {vad.aggressiveness}; Ctrl-C stops")
    try:
        asyncio.run(run_meter(satellite.mic, vad, args.seconds))
    except KeyboardInterrupt:
        print()
    return 0


_COMMANDS = {
    "run": _run,
    "check-config": _check_config,
    "devices": _devices,
    "mic-test": _mic_test,
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return _COMMANDS[args.command](args)
