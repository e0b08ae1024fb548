"""Command line: ``voice-satellite run | check-config | devices | mic-test | say | transcribe
| voices``.

Exit codes (README): 0 done; 1 the config, an argument or a local file or device cannot be
used; 2 the command line is malformed (argparse); 3 a provider failed (its Wyoming error
code and message are printed); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from . import __version__, logs
from .config import ConfigError, LoadedConfig, SatelliteConfig, load_config
from .config_warnings import config_warnings
from .openssl import TLS, leave_out

_LOGGER = logging.getLogger("satellite")
T = TypeVar("T")

EXIT_OK = 0
EXIT_UNUSABLE = 1  # config, argument, file or device
EXIT_PROVIDER = 3
EXIT_INTERRUPTED = 130


def _config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="PATH",
        help="YAML config file (default: $VOICE_SATELLITE_CONFIG, then "
        "/etc/voice-satellite/config.yaml, then built-in defaults)",
    )


_EXIT_CODES = (
    "exit codes: 0 done, 1 unusable config, argument, file or device, 2 malformed command "
    "line, 3 the provider failed (its error code and message are printed), 130 interrupted"
)


def _command(
    commands: argparse._SubParsersAction,
    name: str,
    summary: str,
    description: str,
    epilog: str | None = None,
) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=description, epilog=epilog)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="voice-satellite",
        description="Wyoming speech endpoint (DashScope / Azure / espeak-ng) and voice "
        "satellite for Home Assistant.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _command(
        commands,
        "run",
        "run the daemon until SIGTERM/SIGINT",
        "Serve the enabled roles (speech endpoint, satellite) until SIGTERM or SIGINT.",
    )
    _config_argument(run)
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None,
        help="overrides log_level from the config",
    )
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=None,
        help="overrides log_format from the config; json: one object per line "
        "(time, level, logger, message, exception) for journald or Loki",
    )

    check = _command(
        commands,
        "check-config",
        "validate the config; exit 1 on problems",
        "Validate the config and print each problem with its key path, or what would be "
        "served and any warnings (a missing key, a key other users can read).",
    )
    _config_argument(check)

    doctor = _command(
        commands,
        "doctor",
        "check everything, in order, and say what to do about what fails",
        "Check, one line each: the config and its warnings, the keys, the audio devices "
        "(opened for real), each configured provider (a real, minimal request: half a "
        "second of silence, one word), each port (free, or served by this daemon), the "
        "zeroconf advertisement and whether Home Assistant has connected to the satellite. "
        "Run it with sudo on an installed device to use the service's keys.",
        "exit codes: 0 every check passed, 1 a check failed",
    )
    _config_argument(doctor)

    _command(
        commands,
        "devices",
        "list the audio devices PyAudio sees, with their indexes",
        "List the audio devices PyAudio sees: index, input and output channels, default "
        "rate and name, for satellite.mic.device and satellite.speaker.device.",
    )

    meter = _command(
        commands,
        "mic-test",
        "show the microphone's level, VAD and wake-word probabilities, live",
        "Show, every 100 ms, what the satellite hears: the microphone's level (dBFS, after "
        "noise suppression and auto gain), whether the VAD hears a voice, and each wake "
        "model's probability (- while the VAD hears none), to tune satellite.vad and "
        "satellite.wake.threshold.",
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
    meter.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="try a wake-word threshold (0-1) other than satellite.wake.threshold",
    )

    say = _command(
        commands,
        "say",
        "speak a text with the configured TTS provider",
        "Synthesize a text with speech.tts.provider (failover list included) and play it "
        "on satellite.speaker, or write it to an audio file.",
        _EXIT_CODES,
    )
    _config_argument(say)
    say.add_argument("text", help="what to say; - reads it from stdin")
    say.add_argument("--voice", default=None, help="a voice listed by 'voices' (default: its *)")
    say.add_argument(
        "--output",
        type=Path,
        default=None,
        metavar="FILE",
        help="write an audio file instead, encoded as its extension says: .wav, .flac, .mp3, "
        ".ogg or .opus (MP3 and Ogg Opus from the provider when it encodes them itself, "
        "else encoded here; .ogg encoded here is Vorbis)",
    )

    transcribe = _command(
        commands,
        "transcribe",
        "print the transcript of audio files from the configured ASR provider",
        "Stream audio files (WAV, MP3, FLAC or OGG Vorbis/Opus; any rate and channels) one "
        "after another to speech.asr.provider (failover list included), as fast as it takes "
        "them, and print each transcript on stdout (prefixed by the file's name when there "
        "are several). A file that fails does not stop the others; the exit code reports it.",
        _EXIT_CODES,
    )
    _config_argument(transcribe)
    transcribe.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="the audio to transcribe"
    )
    transcribe.add_argument(
        "--language", default=None, help="language hint, e.g. zh or en-US (default: the config's)"
    )
    transcribe.add_argument(
        "--partials",
        action="store_true",
        help="show each partial hypothesis on stderr as it changes",
    )
    transcribe.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per file: file, text, language, confidence (null where "
        "the provider gives none), provider and seconds; or file, error and code",
    )

    voices = _command(
        commands,
        "voices",
        "list the TTS provider's voices",
        "List the voices of speech.tts.provider (every provider of a failover list): name, "
        "languages, provider and description; the default (*) first.",
        _EXIT_CODES,
    )
    _config_argument(voices)
    voices.add_argument(
        "--language", default=None, help="only voices speaking it (zh also matches zh-CN)"
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


def _check_config(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.config)
    if loaded is None:
        return EXIT_UNUSABLE
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
        wake = satellite.wake
        if wake.engine == "none":
            listens = f"no wake word on the device (start stage {satellite.start_stage})"
        elif wake.engine == "remote":
            listens = f"wake word from {wake.uri} ({', '.join(wake.models) or 'any model'})"
        else:
            listens = f"wake word {wake.engine}: {', '.join(wake.models)}"
        print(
            f"  satellite {satellite.uri}: mic {satellite.mic.backend}, speaker {speaker}, "
            f"{listens}"
        )
    for warning in config_warnings(loaded) + _device_warnings(config.satellite):
        print(f"  warning: {warning}")
    return EXIT_OK


def _device_warnings(satellite: SatelliteConfig) -> list[str]:
    """The mic and speaker named in the config, looked for on this machine."""
    if not satellite.enabled:
        return []
    from .audio.device import missing_device

    named = [
        ("satellite.mic", satellite.mic, True),
        ("satellite.speaker", satellite.speaker, False),
    ]
    return [
        f"{key}: {problem}"
        for key, device, is_input in named
        if device is not None and (problem := missing_device(device, is_input))
    ]


def _run(args: argparse.Namespace) -> int:
    loaded = _load_or_report(args.config)
    if loaded is None:
        return EXIT_UNUSABLE
    if loaded.config.providers.isolation == "process":
        leave_out(TLS)  # before asyncio is imported (openssl.py)
    import asyncio

    from .daemon import Daemon
    from .wake.engine import WakeModelError

    logs.setup(
        args.log_level or loaded.config.log_level, args.log_format or loaded.config.log_format
    )
    for warning in config_warnings(loaded):
        _LOGGER.warning(warning)
    try:
        asyncio.run(Daemon(loaded, args.config).run())
    except (OSError, WakeModelError) as exc:
        _LOGGER.error("cannot start: %s", exc)
        return EXIT_UNUSABLE
    return EXIT_OK


def _devices(_: argparse.Namespace) -> int:
    from .audio.device import list_devices

    try:
        devices = list_devices()
    except OSError as exc:
        print(f"cannot list audio devices: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    print("index  in  out  rate    name")
    for device in devices:
        print(
            f"{device.index:5}  {device.inputs:2}  {device.outputs:3}  {device.default_rate:6}  "
            f"{device.name}"
        )
    if not devices:
        print("no audio devices found", file=sys.stderr)
        return EXIT_UNUSABLE
    print(
        "\nUse the index or (part of) the name as satellite.mic.device / satellite.speaker.device."
    )
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    import asyncio

    from .doctor import Doctor, print_finding

    logs.setup("error")
    doctor = Doctor(print_finding)
    try:
        asyncio.run(doctor.run(args.config))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if doctor.failures:
        print(f"{doctor.failures} check(s) failed")
        return EXIT_UNUSABLE
    print("every check passed")
    return EXIT_OK


def _mic_test(args: argparse.Namespace) -> int:
    import asyncio

    from .audio.meter import run_meter
    from .audio.mic import MicError
    from .wake.engine import WakeModelError

    loaded = _load_or_report(args.config)
    if loaded is None:
        return EXIT_UNUSABLE
    logs.setup("warning")
    satellite = loaded.config.satellite
    vad, wake = satellite.vad, satellite.wake
    if args.aggressiveness is not None:
        vad = vad.model_copy(update={"aggressiveness": args.aggressiveness})
    if args.threshold is not None:
        if not 0 < args.threshold < 1:
            print("--threshold: expected a probability between 0 and 1", file=sys.stderr)
            return EXIT_UNUSABLE
        wake = wake.model_copy(update={"threshold": args.threshold})
    satellite = satellite.model_copy(update={"vad": vad, "wake": wake})
    threshold = "each model's own" if wake.threshold is None else f"{wake.threshold:g}"
    print(
        f"mic: {satellite.mic.backend}; VAD aggressiveness {vad.aggressiveness}; "
        f"wake word: {wake.engine}, {', '.join(wake.models)}, threshold {threshold}; "
        "Ctrl-C stops"
    )
    try:
        asyncio.run(run_meter(satellite, args.seconds))
    except WakeModelError as exc:
        print(f"cannot load the wake word: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except MicError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except KeyboardInterrupt:
        print()
    return EXIT_OK


def _provider_command(
    args: argparse.Namespace, work: Callable[[LoadedConfig], Coroutine[Any, Any, T]]
) -> tuple[int, T | None]:
    """Run one provider request to completion and map its outcome to an exit code."""
    import asyncio

    from .audio.files import AudioFileError
    from .errors import ProviderError
    from .oneshot import CommandError

    loaded = _load_or_report(args.config)
    if loaded is None:
        return EXIT_UNUSABLE, None
    logs.setup("warning")
    try:
        return EXIT_OK, asyncio.run(work(loaded))
    except ProviderError as exc:
        print(f"error [{exc.code}]: {exc.message}", file=sys.stderr)
        return EXIT_PROVIDER, None
    except (CommandError, AudioFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE, None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED, None


def _say(args: argparse.Namespace) -> int:
    from .oneshot import say

    text = sys.stdin.read() if args.text == "-" else args.text
    if not text.strip():
        print("error: nothing to say (the text is empty)", file=sys.stderr)
        return EXIT_UNUSABLE
    code, _ = _provider_command(args, lambda loaded: say(loaded, text, args.voice, args.output))
    return code


def _transcribe(args: argparse.Namespace) -> int:
    from .oneshot import UNUSABLE_FILE, Failure, Transcript, transcribe

    def emit(outcome: Transcript | Failure) -> None:
        if args.json:
            print(json.dumps(dataclasses.asdict(outcome), ensure_ascii=False), flush=True)
        elif isinstance(outcome, Transcript):
            named = f"{outcome.file}: " if len(args.files) > 1 else ""
            print(f"{named}{outcome.text}", flush=True)

    code, failures = _provider_command(
        args, lambda loaded: transcribe(loaded, args.files, args.language, args.partials, emit)
    )
    if not failures:
        return code
    return EXIT_UNUSABLE if all(f.code == UNUSABLE_FILE for f in failures) else EXIT_PROVIDER


def _voices(args: argparse.Namespace) -> int:
    from .oneshot import voices

    code, lines = _provider_command(args, lambda loaded: voices(loaded, args.language))
    for line in lines or []:
        print(line)
    return code


_COMMANDS = {
    "run": _run,
    "check-config": _check_config,
    "devices": _devices,
    "doctor": _doctor,
    "mic-test": _mic_test,
    "say": _say,
    "transcribe": _transcribe,
    "voices": _voices,
}


# How long calls still blocked in an SDK (given up on, waiting for the SDK's own timeout)
# may hold the process once the command is done.
EXIT_GRACE_S = 2.0


def entry() -> NoReturn:
    """The console script: ``main()``, then exit once blocking calls have returned, or
    after EXIT_GRACE_S without the ones that have not (Python's own exit would wait for
    them, for as long as the SDK's timeouts)."""
    code = main()
    from .bridge import calls_still_running  # after main(): ``run`` may leave out ssl

    still_running = calls_still_running(EXIT_GRACE_S)
    if not still_running:
        sys.exit(code)
    _LOGGER.info("exiting without waiting for %d blocked SDK call(s)", still_running)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except BrokenPipeError:  # e.g. ``voices | head``: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return EXIT_OK
