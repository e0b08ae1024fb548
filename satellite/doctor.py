"""``voice-satellite doctor``: every check a device owner would otherwise make by hand, in
order, one line each with what to do when it fails.

The config (and its warnings), the keys, the audio devices opened for real, each provider
reached with a real, minimal request (a fraction of a second of silence, one short word),
each port free or served by this daemon, the zeroconf advertisement and whether Home
Assistant has connected to the satellite. Every step is bounded by its own deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from wyoming.client import AsyncClient
from wyoming.info import Describe, Info

from .audio.pcm import SPEECH_FORMAT
from .config import ConfigError, LoadedConfig, advertised_name, load_config
from .config_warnings import other_warnings, providers_in_use, setup_problems
from .errors import ErrorCode, ProviderError
from .provider_table import PROVIDERS
from .providers.base import AsrProvider, SynthesisOptions, TtsProvider
from .providers.text import WholeText
from .systemd import status_file

_DESCRIBE_SECONDS = 3.0  # a Wyoming server answers describe at once
_DEVICE_SECONDS = 5.0  # opening a device and reading (or playing) a tenth of a second
_ZEROCONF_SECONDS = 3.0
_SILENCE = bytes(SPEECH_FORMAT.rate // 2 * SPEECH_FORMAT.frame_bytes)  # 0.5 s
_SERVICE_TYPE = "_wyoming._tcp.local."

# What to do about a provider's failure, by its error code.
_PROVIDER_FIXES = {
    ErrorCode.MISSING_CREDENTIALS: "set the key (see the keys line above)",
    ErrorCode.AUTH_FAILED: "the service refused the key: check it (and, for Azure, the "
    "region) in /etc/voice-satellite/env, then sudo systemctl restart voice-satellite",
    ErrorCode.CONNECT_FAILED: "check the network and DNS, and the provider's URL or host in "
    "the config",
    ErrorCode.TIMEOUT: "the service did not answer in time: check the network, or raise the "
    "provider's timeouts",
}


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked, e.g. "dashscope speech-to-text"
    passed: bool
    detail: str  # what was found
    fix: str = ""  # what to do, when it did not pass


@dataclass(frozen=True)
class _Port:
    role: str  # "speech" or "satellite"
    uri: str
    served: bool  # this daemon answers on it


class Doctor:
    """Runs the checks in order, reporting each finding as it comes."""

    def __init__(self, report: Callable[[Finding], None]) -> None:
        self._report = report
        self.failures = 0

    def _pass(self, check: str, detail: str) -> None:
        self._report(Finding(check, True, detail))

    def _fail(self, check: str, detail: str, fix: str = "") -> None:
        self.failures += 1
        self._report(Finding(check, False, detail, fix))

    async def run(self, config_path: Path | None) -> None:
        loaded = self._config(config_path)
        if loaded is None:
            return
        self._keys(loaded)
        await self._devices(loaded)
        await self._providers(loaded)
        ports = await self._ports(loaded)
        await self._zeroconf(loaded, ports)
        self._home_assistant(loaded, ports)

    # --- config and keys ---------------------------------------------------------------

    def _config(self, config_path: Path | None) -> LoadedConfig | None:
        try:
            loaded = load_config(config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                self._fail(
                    "config",
                    f"{exc.source}: {problem}",
                    "fix the key named (voice-satellite check-config)",
                )
            return None
        self._pass("config", f"{loaded.source} is valid")
        for warning in other_warnings(loaded):
            self._pass("config", f"warning: {warning}")
        return loaded

    def _keys(self, loaded: LoadedConfig) -> None:
        """Each provider in use has its key (and region, or program)."""
        for name in providers_in_use(loaded):
            problems = setup_problems(loaded, name)
            for problem in problems:
                self._fail(name, problem)
            if not problems:
                key_path = PROVIDERS[name].key_path
                self._pass(name, f"{key_path} is set" if key_path else "installed")

    # --- audio devices -----------------------------------------------------------------

    async def _devices(self, loaded: LoadedConfig) -> None:
        satellite = loaded.config.satellite
        if not satellite.enabled:
            return
        from .audio.mic import Mic, MicError

        mic = Mic(satellite.mic, chunk_ms=100, retry=False)
        try:
            async with asyncio.timeout(_DEVICE_SECONDS):
                async for _ in mic.chunks():
                    break
            self._pass("microphone", f"{mic.description} delivers audio")
        except (MicError, TimeoutError) as exc:
            reason = str(exc) or f"no audio within {_DEVICE_SECONDS:g} s"
            self._fail(
                "microphone",
                reason,
                "voice-satellite devices lists the inputs; set satellite.mic.device",
            )
        finally:
            await mic.close()
        if satellite.speaker is None:
            return
        from .audio.speaker import Speaker, SpeakerError

        speaker = Speaker(satellite.speaker)
        try:
            async with asyncio.timeout(_DEVICE_SECONDS):
                await speaker.play(SPEECH_FORMAT, _pieces(bytes(SPEECH_FORMAT.rate // 10 * 2)))
            self._pass("speaker", f"{speaker.description} plays (silence)")
        except (SpeakerError, TimeoutError) as exc:
            reason = str(exc) or f"did not play within {_DEVICE_SECONDS:g} s"
            self._fail(
                "speaker",
                reason,
                "voice-satellite devices lists the outputs; set satellite.speaker.device",
            )
        finally:
            await speaker.close()

    # --- providers ---------------------------------------------------------------------

    async def _providers(self, loaded: LoadedConfig) -> None:
        if not loaded.config.speech.enabled:
            return
        from .providers.registry import build_asr, build_tts

        asr, tts = build_asr(loaded), build_tts(loaded)
        for member in asr.members:
            await self._reach(f"{member.name} speech-to-text", member, _recognize(member))
        for speaker in tts.members:
            await self._reach(f"{speaker.name} text-to-speech", speaker, _speak(speaker))

    async def _reach(
        self, check: str, provider: AsrProvider | TtsProvider, request: Awaitable[str]
    ) -> None:
        started = time.monotonic()
        try:
            detail = await request
            took = (time.monotonic() - started) * 1000
            self._pass(check, f"{detail} in {took:.0f} ms")
        except ProviderError as exc:
            fix = _PROVIDER_FIXES.get(exc.code, "see the error; the journal has the details")
            self._fail(check, f"[{exc.code}] {exc.message}", fix)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await provider.close()

    # --- ports, zeroconf, Home Assistant -----------------------------------------------

    async def _ports(self, loaded: LoadedConfig) -> list[_Port]:
        config = loaded.config
        roles = [("speech", config.speech.uri, config.speech.enabled),
                 ("satellite", config.satellite.uri, config.satellite.enabled)]  # fmt: skip
        ports = []
        for role, uri, enabled in roles:
            if not enabled:
                continue
            served = await _served_by_us(uri)
            if served:
                detail, passed, fix = f"{uri}: served by this daemon (running)", True, ""
            else:
                problem = _cannot_bind(uri)
                passed = problem is None
                detail = f"{uri}: free" if passed else f"{uri}: {problem}"
                fix = "" if passed else "stop the program using it, or set another port"
            if passed:
                self._pass(f"{role} port", detail)
            else:
                self._fail(f"{role} port", detail, fix)
            ports.append(_Port(role, uri, served))
        return ports

    async def _zeroconf(self, loaded: LoadedConfig, ports: list[_Port]) -> None:
        config = loaded.config
        if not config.zeroconf:
            self._pass("zeroconf", "off: add the servers in HA by hand")
            return
        from .discovery import routable_ipv4

        for port in ports:
            name = advertised_name(getattr(config, port.role).name, port.role)
            address = routable_ipv4(urlparse(port.uri).hostname or "")
            if address is None:
                self._fail(
                    f"zeroconf {port.role}",
                    "no routable IPv4 address to advertise",
                    "connect the device to the network HA is on",
                )
            elif not port.served:
                self._pass(
                    f"zeroconf {port.role}", f"will advertise {name!r} at {address} once running"
                )
            elif await _advertised(name):
                self._pass(f"zeroconf {port.role}", f"{name!r} is advertised")
            else:
                self._fail(
                    f"zeroconf {port.role}",
                    f"{name!r} is not seen on the network",
                    "allow mDNS (UDP 5353) through the firewall, or add the server in HA by hand",
                )

    def _home_assistant(self, loaded: LoadedConfig, ports: list[_Port]) -> None:
        satellite = next((port for port in ports if port.role == "satellite"), None)
        if satellite is None:
            return
        if not satellite.served:
            self._fail(
                "Home Assistant",
                "the daemon is not running",
                "sudo systemctl start voice-satellite",
            )
            return
        path = status_file()
        try:
            status = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            self._fail(
                "Home Assistant",
                f"cannot read the daemon's status ({path}): {exc.strerror}",
                "run doctor with sudo",
            )
            return
        if "HA connected" in status:
            self._pass("Home Assistant", "connected to the satellite")
        else:
            host = urlparse(satellite.uri).port
            self._fail(
                "Home Assistant",
                "has not connected to the satellite",
                "in HA: Settings > Devices & services > Add integration > "
                f"Wyoming Protocol, this device's address, port {host}",
            )


async def _pieces(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm


async def _recognize(asr: AsrProvider) -> str:
    await asr.recognize(None, _pieces(_SILENCE))
    return "answered (half a second of silence recognized)"


async def _speak(tts: TtsProvider) -> str:
    audio = 0
    async for chunk in tts.synthesize(WholeText("OK."), SynthesisOptions()):
        audio += len(chunk)
    return f"answered ({tts.audio_format.seconds(audio):.1f} s of audio for 'OK.')"


async def _served_by_us(uri: str) -> bool:
    """Whether this daemon answers ``describe`` at ``uri``."""
    try:
        async with asyncio.timeout(_DESCRIBE_SECONDS):
            async with AsyncClient.from_uri(_local(uri)) as client:
                await client.write_event(Describe().event())
                while (event := await client.read_event()) is not None:
                    if Info.is_type(event.type):
                        return _is_ours(Info.from_event(event))
    except (OSError, TimeoutError, ValueError):
        pass
    return False


def _is_ours(info: Info) -> bool:
    programs = [*info.asr, *info.tts]
    if any(program.name.startswith("voice-satellite") for program in programs):
        return True
    return info.satellite is not None and info.satellite.description.startswith("voice-satellite")


def _local(uri: str) -> str:
    """The URI to reach a server bound to ``uri`` from this machine."""
    parsed = urlparse(uri)
    if parsed.scheme == "tcp" and parsed.hostname in ("0.0.0.0", "", None):
        return f"tcp://127.0.0.1:{parsed.port}"
    return uri


def _cannot_bind(uri: str) -> str | None:
    """Why the server could not listen on ``uri`` now, or None."""
    parsed = urlparse(uri)
    if parsed.scheme != "tcp":
        return None  # a unix socket: its path is replaced at start
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((parsed.hostname or "0.0.0.0", parsed.port or 0))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {parsed.port} is used by another program (ss -ltnp to see which)"
            return f"cannot listen: {exc.strerror}"
    return None


async def _advertised(name: str) -> bool:
    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncZeroconf

    zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
    try:
        info = await zeroconf.async_get_service_info(
            _SERVICE_TYPE, f"{name}.{_SERVICE_TYPE}", timeout=int(_ZEROCONF_SECONDS * 1000)
        )
        return info is not None
    finally:
        await zeroconf.async_close()


def print_finding(finding: Finding) -> None:
    mark = "ok  " if finding.passed else "FAIL"
    line = f"{mark}  {finding.check}: {finding.detail}"
    if finding.fix:
        line += f"\n      -> {finding.fix}"
    print(line, flush=True, file=sys.stdout)
