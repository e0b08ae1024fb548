"""The YAML configuration: loaded and validated once into frozen, typed objects.

Strings may use ``${VAR}`` and ``${VAR:-default}`` to read the environment. A variable
that is unset and has no default becomes an empty string and is remembered, so a
missing API key can name the variable to set instead of stopping the daemon.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from .config_base import Model
from .provider_table import PROVIDERS, Role, names_for

DEFAULT_CONFIG_PATH = Path("/etc/voice-satellite/config.yaml")
CONFIG_ENV = "VOICE_SATELLITE_CONFIG"


def _check_server_uri(value: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme == "tcp":
        if not parsed.hostname or parsed.port is None:
            raise ValueError("expected tcp://HOST:PORT, e.g. tcp://0.0.0.0:10300")
    elif parsed.scheme != "unix" or not parsed.path:
        raise ValueError("expected tcp://HOST:PORT or unix:///path/to/socket")
    return value


Isolation = Literal["process", "inline"]  # where the provider SDKs run


class ProviderProcesses(Model):
    """Where the cloud SDKs run, and when their worker processes are replaced."""

    # "process": each provider in a worker process the daemon supervises (a crash costs the
    # worker, not the daemon); "inline": in the daemon.
    isolation: Isolation = "process"
    recycle_after_requests: Annotated[int, Field(ge=0)] = 1000  # a worker's; 0: never
    worker_max_rss_mb: Annotated[int, Field(ge=0)] = 300  # recycled above it; 0: no limit


Providers = create_model(  # providers.<name>: each provider's own section, from the table
    "Providers",
    __base__=ProviderProcesses,
    **{name: (spec.section, spec.section()) for name, spec in PROVIDERS.items()},
)


# --- Roles -------------------------------------------------------------------


_ROLE_WORDS = {"asr": "speech-to-text", "tts": "text-to-speech"}


def _provider_chain(role: Role) -> Callable[[Any], Any]:
    """A validator: one provider name, or a list of them tried in order, each able to serve
    ``role``; kept as a tuple without repeats."""

    def check(value: Any) -> Any:
        chain = (value,) if isinstance(value, str) else value
        if not isinstance(chain, list | tuple):
            return value
        if not chain:
            raise ValueError("name at least one provider")
        if len(set(chain)) != len(chain):
            raise ValueError("a provider is listed twice")
        offered = names_for(role)
        for name in chain:
            if name not in offered:
                raise ValueError(
                    f"{name!r} is not a {_ROLE_WORDS[role]} provider; "
                    f"choose from: {', '.join(offered)}"
                )
        return tuple(chain)

    return check


class AsrRole(Model):
    # One provider, or a failover list tried in order, e.g. [dashscope, azure].
    provider: tuple[str, ...] = ("dashscope",)
    # Language used when the client sends none; advertised first. auto: the service identifies
    # it among the provider's configured languages (HA's language, when sent, still wins).
    language: str | None = "zh"
    # Live partial transcripts (transcript-start/-chunk/-stop). auto: to clients that asked
    # for the endpoint's info on the same connection; always; never (final transcript only).
    transcript_streaming: Literal["auto", "always", "never"] = "auto"

    _chain = field_validator("provider", mode="before")(_provider_chain("asr"))


class TtsRole(Model):
    # One provider, or a failover list tried in order, e.g. [dashscope, azure, espeak].
    provider: tuple[str, ...] = ("dashscope",)
    # Default voice of the first provider; None uses that provider's configured voice.
    voice: str | None = None

    _chain = field_validator("provider", mode="before")(_provider_chain("tts"))


class FailoverConfig(Model):
    """When a provider of a failover list is skipped (its circuit breaker is open)."""

    failures: Annotated[int, Field(ge=1, le=100)] = 3  # consecutive failures that open it
    cooldown_s: Annotated[float, Field(gt=0, le=3600)] = 30.0  # skipped this long, then probed


def advertised_name(configured: str | None, role: str) -> str:
    """A role's zeroconf instance name: the configured one, else the host name and the role
    ("kitchen-pi speech"); HA derives its unique id from it, so it must be stable."""
    return configured or f"{socket.gethostname().split('.')[0]} {role}"


class SpeechConfig(Model):
    enabled: bool = True
    uri: str = "tcp://0.0.0.0:10300"
    name: str | None = None  # zeroconf name; default: "<host name> speech"
    asr: AsrRole = AsrRole()
    tts: TtsRole = TtsRole()
    failover: FailoverConfig = FailoverConfig()

    _uri = field_validator("uri")(_check_server_uri)


# --- Satellite ---------------------------------------------------------------

SampleWidth = Literal[1, 2, 4]
Volume = Annotated[float, Field(ge=0.0, le=10.0)]


class MicConfig(Model):
    """Where the satellite's audio comes from; converted to 16 kHz mono s16 for VAD and HA."""

    backend: Literal["pyaudio", "command", "file"] = "pyaudio"
    device: str | int | None = None  # pyaudio: name (or part of it) or index; None: default
    command: str | None = None  # e.g. "arecord -q -r 16000 -c 1 -f S16_LE -t raw"
    file: Path | None = None  # WAV or headerless PCM (in rate/width/channels below)
    rate: Annotated[int, Field(ge=8000, le=192000)] = 16000
    width: SampleWidth = 2
    channels: Annotated[int, Field(ge=1, le=32)] = 1
    channel: Annotated[int, Field(ge=0)] | None = None  # use only this channel; None: mix
    volume: Volume = 1.0  # multiplier, clipped
    # WebRTC clean-up on 10 ms frames, before the VAD and the wake word (0: off).
    noise_suppression: Annotated[int, Field(ge=0, le=4)] = 0  # 1 light .. 4 strongest
    # Target level in dB below full scale; webrtc-noise-gain 1.3 treats any 1-31 alike (on).
    auto_gain: Annotated[int, Field(ge=0, le=31)] = 0

    @model_validator(mode="after")
    def _backend_needs(self) -> MicConfig:
        if self.backend == "command" and not self.command:
            raise ValueError("backend 'command' needs 'command', e.g. arecord -q -r 16000 ...")
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs 'file', the path of a WAV or raw file")
        if self.channel is not None and self.channel >= self.channels:
            raise ValueError(f"channel {self.channel} does not exist in {self.channels} channels")
        return self


class SpeakerConfig(Model):
    """Where HA's TTS audio and the satellite's sounds are played."""

    backend: Literal["pyaudio", "command", "file"] = "pyaudio"
    device: str | int | None = None
    # Placeholders {rate}, {width}, {channels} are filled from each sound's format,
    # e.g. "aplay -q -r {rate} -c {channels} -f S16_LE -t raw".
    command: str | None = None
    file: Path | None = None  # a sink that receives every sound (raw PCM appended)
    volume: Volume = 1.0

    @model_validator(mode="after")
    def _backend_needs(self) -> SpeakerConfig:
        if self.backend == "command" and not self.command:
            raise ValueError("backend 'command' needs 'command', e.g. aplay -q -r {rate} ...")
        if self.backend == "file" and self.file is None:
            raise ValueError("backend 'file' needs 'file', the path the audio is written to")
        return self


class VadConfig(Model):
    """When voiced audio opens a pipeline run, and when silence ends it."""

    aggressiveness: Annotated[int, Field(ge=0, le=3)] = 2  # 3 filters out the most non-speech
    frame_ms: Literal[10, 20, 30] = 30
    preroll_ms: Annotated[int, Field(ge=0, le=5000)] = 300  # audio kept from before speech
    hangover_ms: Annotated[int, Field(ge=0, le=10000)] = 800  # silence that ends speech
    min_speech_ms: Annotated[int, Field(ge=0, le=5000)] = 150  # voiced audio that opens a run
    max_speech_s: Annotated[float, Field(gt=0, le=300)] = 15.0  # a run never streams longer


class SoundsConfig(Model):
    """Optional WAV files played by the satellite."""

    awake: Path | None = None  # when a pipeline run opens (or HA detects the wake word)
    done: Path | None = None  # when HA has the transcript
    timer_finished: Path | None = None  # repeated while a finished timer rings
    announce: Path | None = None  # before an announcement (HA's audio outside a run)


WakeEngineName = Literal["micro", "openwakeword", "remote", "none"]


class WakeConfig(Model):
    """The wake word heard on the device; nothing reaches HA before it (engine none: the
    VAD alone opens runs, and ``start_stage`` says whether HA's engine listens first)."""

    engine: WakeEngineName = "micro"
    models: tuple[str, ...] = ("okay_nabu",)  # bundled names or paths to model files
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None  # None: each model's own
    refractory_s: Annotated[float, Field(ge=0, le=60)] = 2.0  # one detection per this long
    uri: str = "tcp://127.0.0.1:10400"  # engine remote: the Wyoming wake service
    # Only audio the VAD lets through reaches the model, with this much audio before it.
    vad_gated: bool = True
    preroll_ms: Annotated[int, Field(ge=0, le=3000)] = 1000
    command_wait_s: Annotated[float, Field(gt=0, le=60)] = 5.0  # for the command to begin

    @field_validator("uri")
    @classmethod
    def _client_uri(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "tcp" or not parsed.hostname or parsed.port is None:
            raise ValueError("expected tcp://HOST:PORT of a Wyoming wake service")
        return value

    @model_validator(mode="after")
    def _models_exist(self) -> WakeConfig:
        from .wake.catalogue import model_problem

        if self.engine in ("micro", "openwakeword"):
            if not self.models:
                raise ValueError(f"engine {self.engine!r} needs at least one model")
            for index, model in enumerate(self.models):
                problem = model_problem(self.engine, model)
                if problem:
                    raise ValueError(f"models.{index}: {problem}")
        return self


class SatelliteConfig(Model):
    enabled: bool = False
    uri: str = "tcp://0.0.0.0:10700"
    name: str | None = None  # shown in HA and zeroconf name; default: "<host name> satellite"
    area: str | None = None  # suggested area in HA, e.g. "Kitchen"
    start_stage: Literal["wake", "asr"] = "wake"  # wake: HA's wake-word engine listens first
    mic: MicConfig = MicConfig()
    speaker: SpeakerConfig | None = SpeakerConfig()  # null: no speaker (pipeline ends at handle)
    vad: VadConfig = VadConfig()
    sounds: SoundsConfig = SoundsConfig()
    wake: WakeConfig = WakeConfig()
    timer_ring_s: Annotated[float, Field(gt=0, le=3600)] = 300.0  # a finished timer rings
    mute_tail_ms: Annotated[int, Field(ge=0, le=5000)] = 300  # mic stays gated after playback
    # Commands run on HA events, by event type: {"transcript": "logger -t satellite heard"}.
    # The event's data is passed as JSON on stdin.
    events: dict[str, str] = Field(default_factory=dict)

    _uri = field_validator("uri")(_check_server_uri)


# --- Daemon ------------------------------------------------------------------


class LimitsConfig(Model):
    """What one client may cost the daemon, on both servers."""

    max_connections: Annotated[int, Field(ge=1, le=1024)] = 32  # per server; more get an error
    idle_timeout_s: Annotated[float, Field(gt=0, le=86400)] = 120.0  # silent connections close
    # Header, data and payload of one Wyoming event; a larger one is refused unread.
    max_event_bytes: Annotated[int, Field(ge=65536, le=64 * 1024 * 1024)] = 1024 * 1024
    # Audio and text one connection may have waiting (ASR audio ahead of the provider,
    # streamed TTS text, HA's audio ahead of the speaker); beyond it the request fails.
    max_buffer_bytes: Annotated[int, Field(ge=65536, le=1024 * 1024 * 1024)] = 16 * 1024 * 1024
    # Client networks allowed to connect, e.g. [192.168.1.0/24, 127.0.0.1/32]; empty: any.
    allowed_networks: tuple[IPv4Network | IPv6Network, ...] = ()


class RecordingsConfig(Model):
    """The newest utterances kept as WAV files, for tuning the VAD and recognition."""

    dir: Path | None = None  # None: off; e.g. /var/lib/voice-satellite/recordings
    keep: Annotated[int, Field(ge=1, le=10000)] = 20  # older files are deleted


class Config(Model):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"  # json: one object per line (journald, loki)
    zeroconf: bool = True  # advertise both servers as _wyoming._tcp.local.
    # On SIGTERM, requests in progress get this long to finish before they are ended.
    shutdown_timeout_s: Annotated[float, Field(ge=0, le=300)] = 10.0
    limits: LimitsConfig = LimitsConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    speech: SpeechConfig = SpeechConfig()
    satellite: SatelliteConfig = SatelliteConfig()
    providers: Providers = Providers()

    @model_validator(mode="after")
    def _voice_fits_provider(self) -> Config:
        voice, provider = self.speech.tts.voice, self.speech.tts.provider[0]
        if voice is not None:
            problem = PROVIDERS[provider].voice_check(getattr(self.providers, provider), voice)
            if problem:
                raise ValueError(
                    f"speech.tts.voice {voice!r} {problem}, and speech.tts.provider starts with "
                    f"{provider}: name one of its voices, or remove speech.tts.voice to use "
                    f"{provider}'s own"
                )
        return self

    @model_validator(mode="after")
    def _language_fits_providers(self) -> Config:
        language = self.speech.asr.language
        if language is None:
            return self
        for provider in self.speech.asr.provider:
            section = getattr(self.providers, provider)
            problem = PROVIDERS[provider].language_check(section, language)
            if problem:
                raise ValueError(
                    f"speech.asr.language: {language} {problem} ({provider} is in "
                    "speech.asr.provider)"
                )
        return self


# --- Loading -----------------------------------------------------------------


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` are one line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    source: str  # file path, or "built-in defaults"
    # Dotted key path -> environment variables it referenced that were unset.
    unset_env: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Key paths of keys written in the file itself rather than read through ${VAR}.
    written_secrets: tuple[str, ...] = ()

    def secret_hint(self, key_path: str) -> str:
        """How a user provides the secret at ``key_path`` (never its value)."""
        names = self.unset_env.get(key_path)
        if names:
            return f"set the environment variable {', '.join(names)} ({key_path} in {self.source})"
        return f"set {key_path} in {self.source}"


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, path: str, unset: dict[str, tuple[str, ...]]) -> Any:
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), unset) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}.{i}", unset) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    missing: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        missing.append(name)
        return ""

    result = _ENV_REF.sub(substitute, value)
    if missing:
        unset[path] = tuple(missing)
    return result


_DEFAULT_SECRETS = {
    f"providers.{spec.name}.{field}": f"${{{variable}}}"
    for spec in PROVIDERS.values()
    for field, variable in spec.env.items()
}


def _apply_default_secrets(raw: dict[str, Any]) -> dict[str, Any]:
    """Give omitted secret keys their ``${VAR}`` default so they are interpolated too."""
    for dotted, template in _DEFAULT_SECRETS.items():
        *parents, leaf = dotted.split(".")
        node: Any = raw
        for key in parents:
            child = node.get(key) if isinstance(node, dict) else None
            if child is None:
                child = {}
                if isinstance(node, dict):
                    node[key] = child
            node = child
        if isinstance(node, dict) and leaf not in node:
            node[leaf] = template
    return raw


# pydantic's error types -> what the key expects, in the words of someone editing YAML.
_EXPECTED = {
    **dict.fromkeys(("tuple_type", "list_type", "set_type"), "a list, e.g. [a, b]"),
    **dict.fromkeys(
        ("dict_type", "model_type", "model_attributes_type"), "a section: keys indented below it"
    ),
    **dict.fromkeys(("int_type", "int_parsing", "int_from_float"), "a whole number"),
    **dict.fromkeys(("float_type", "float_parsing"), "a number"),
    **dict.fromkeys(("bool_type", "bool_parsing"), "true or false"),
    "string_type": "text (in quotes if YAML reads it as a number or true/false)",
    "greater_than_equal": "a number of at least {ge}",
    "greater_than": "a number above {gt}",
    "less_than_equal": "a number of at most {le}",
    "less_than": "a number below {lt}",
    "literal_error": "one of: {expected}",
    "enum": "one of: {expected}",
    "too_short": "at least {min_length} item(s)",
    "too_long": "at most {max_length} item(s)",
}


def _key_path(location: tuple[Any, ...]) -> str:
    """``providers.azure.asr.languages[0]`` for pydantic's location of a value."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else str(part)
    return path


def _describe(error: dict[str, Any], unset: Mapping[str, tuple[str, ...]]) -> str:
    location = error["loc"]
    path = _key_path(location)
    kind = error["type"]
    if kind == "extra_forbidden":
        return (
            f"{path}: unknown key; check its spelling and indentation (see config/satellite.yaml)"
        )
    if kind == "missing":
        return f"{path}: required key is missing"
    if not location:  # a check across sections: its message names the keys
        return error["msg"].removeprefix("Value error, ")
    expected = _EXPECTED.get(kind)
    if expected is None:
        message = error["msg"].removeprefix("Value error, ")
    else:
        context = {
            name: str(value).replace("'", "") for name, value in error.get("ctx", {}).items()
        }
        message = "expected " + expected.format_map(context)
    given = error.get("input")
    shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
    variables = unset.get(".".join(map(str, location)))
    if variables:
        shown = f" (the environment variable {', '.join(variables)} is not set)"
    return f"{path}: {message}{shown}"


def _written_secrets(raw: dict[str, Any]) -> tuple[str, ...]:
    """The keys whose value holds more than ``${VAR}`` references (a default counts)."""
    written = []
    for dotted in (spec.key_path for spec in PROVIDERS.values() if spec.key_path):
        node: Any = raw
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str) and _ENV_REF.sub(lambda m: m.group(2) or "", node).strip():
            written.append(dotted)
    return tuple(written)


def parse_config(raw: Any, source: str) -> LoadedConfig:
    """Validate a parsed YAML document."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the file must hold a mapping of keys (e.g. 'speech:')"])
    unset: dict[str, tuple[str, ...]] = {}
    data = _interpolate(_apply_default_secrets(raw), "", unset)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(e, unset) for e in exc.errors(include_url=False)]
        raise ConfigError(source, problems) from None
    return LoadedConfig(
        config=config, source=source, unset_env=unset, written_secrets=_written_secrets(raw)
    )


def load_config(path: Path | None) -> LoadedConfig:
    """Load ``path``; with None, the file named by $VOICE_SATELLITE_CONFIG, then
    /etc/voice-satellite/config.yaml, then built-in defaults."""
    if path is None:
        env_path = os.environ.get(CONFIG_ENV)
        if env_path:
            path = Path(env_path)
        elif DEFAULT_CONFIG_PATH.exists():
            path = DEFAULT_CONFIG_PATH
        else:
            return parse_config({}, "built-in defaults")
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    return parse_config(raw, source)


def read_secret(value: SecretStr, file: Path | None) -> str:
    """The secret's value: from ``file`` when one is configured, else the (interpolated) value."""
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return value.get_secret_value().strip()
