"""The microphone: any configured source as a paced stream of 16 kHz mono s16le chunks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import wave
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from ..bridge import run_blocking
from ..config import MicConfig
from .device import STOP_SECONDS, PyAudioDevice, ShellCommand, apply_volume, describe_backend
from .pcm import SPEECH_FORMAT, AudioFormat, PcmConverter, numpy_module

_LOGGER = logging.getLogger(__name__)

_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 10.0
_READ_TIMEOUT_SECONDS = 5.0  # a source silent this long has failed (a mic never pauses)
_AHEAD_CHUNKS = 2  # how far delivered audio may run ahead of the wall clock


class MicError(Exception):
    """The microphone cannot deliver audio (logged and retried by ``Mic.chunks``)."""


class _Source(Protocol):
    format: AudioFormat

    async def open(self) -> None: ...

    async def read(self, frames: int) -> bytes: ...

    async def close(self) -> None: ...


def _config_format(config: MicConfig) -> AudioFormat:
    return AudioFormat(config.rate, config.width, config.channels)


class _PyAudioSource:
    def __init__(self, config: MicConfig, frames: int) -> None:
        self.format = _config_format(config)
        self._frames = frames
        self._device = PyAudioDevice(config.device, is_input=True)

    async def open(self) -> None:
        await self._device.open(self.format, self._frames)

    async def read(self, frames: int) -> bytes:
        return await self._device.read(frames)

    async def close(self) -> None:
        await self._device.terminate()


class _CommandSource:
    """Raw PCM from a command's stdout; the command exiting is a failure."""

    def __init__(self, config: MicConfig) -> None:
        assert config.command is not None
        self.format = _config_format(config)
        self._command_line = config.command
        self._command: ShellCommand | None = None

    async def open(self) -> None:
        self._command = await ShellCommand.start(self._command_line, "mic command", feed=False)

    async def read(self, frames: int) -> bytes:
        assert self._command is not None and self._command.process.stdout is not None
        data = await self._command.process.stdout.read(frames * self.format.frame_bytes)
        if not data:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._command.process.wait(), STOP_SECONDS)
            raise MicError(f"the command exited (code {self._command.process.returncode})")
        return data

    async def close(self) -> None:
        if self._command is not None:
            await self._command.stop()


class _FileSource:
    """A WAV file (format from its header) or raw PCM; silence after its end, as a mic."""

    def __init__(self, config: MicConfig) -> None:
        assert config.file is not None
        self.format = _config_format(config)
        self._path = config.file
        self._read_frames: Callable[[int], bytes] | None = None
        self._close: Callable[[], None] | None = None

    async def open(self) -> None:
        self.format, self._read_frames, self._close = await run_blocking(
            _open_pcm_file, self._path, self.format
        )

    async def read(self, frames: int) -> bytes:
        if self._read_frames is not None:
            data = await run_blocking(self._read_frames, frames)
            if data:
                return data
            await self.close()
        silence = b"\x80" if self.format.width == 1 else b"\x00"
        return silence * (frames * self.format.frame_bytes)

    async def close(self) -> None:
        close, self._close, self._read_frames = self._close, None, None
        if close is not None:
            await run_blocking(close)


def _open_pcm_file(
    path: Path, fmt: AudioFormat
) -> tuple[AudioFormat, Callable[[int], bytes], Callable[[], None]]:
    """The file's format, a frame reader and its closer."""
    with path.open("rb") as probe:
        header = probe.read(12)
    if not (header.startswith(b"RIFF") and header[8:12] == b"WAVE"):
        file = path.open("rb")
        return fmt, lambda frames: file.read(frames * fmt.frame_bytes), file.close
    try:
        wav = wave.open(str(path), "rb")  # noqa: SIM115 - read chunk by chunk, closed by the caller
    except (wave.Error, EOFError) as exc:
        raise MicError(f"{path}: unreadable WAV: {exc}") from None
    return (
        AudioFormat(wav.getframerate(), wav.getsampwidth(), wav.getnchannels()),
        wav.readframes,
        wav.close,
    )


# --- Mic -------------------------------------------------------------------------------

# Device failures, retried. TimeoutError is an OSError; LookupError: no such PyAudio device.
_FAILURES = (OSError, ValueError, LookupError, MicError)


class _Converter:
    """Source PCM to SPEECH_FORMAT: the configured channel (else all mixed), volume applied."""

    def __init__(self, fmt: AudioFormat, config: MicConfig) -> None:
        if config.channel is not None and config.channel >= fmt.channels:
            raise MicError(f"channel {config.channel} does not exist in {fmt.channels} channels")
        self._source = fmt
        self._channel = config.channel
        self._volume = config.volume
        self._partial = b""  # a frame cut by a read
        picked = fmt if self._channel is None else AudioFormat(fmt.rate, fmt.width, 1)
        self._pcm = PcmConverter(picked, SPEECH_FORMAT)

    def convert(self, data: bytes) -> bytes:
        if self._channel is not None:
            data = self._partial + data
            usable = len(data) - len(data) % self._source.frame_bytes
            self._partial = data[usable:]
            frames = (
                numpy_module()
                .frombuffer(data[:usable], "u1")
                .reshape(-1, self._source.channels, self._source.width)
            )
            data = frames[:, self._channel, :].tobytes()
        return apply_volume(self._pcm.convert(data), SPEECH_FORMAT.width, self._volume)


class Mic:
    """Reads the configured microphone forever as 16 kHz mono s16le chunks.

    Device failures never reach the reader: they are logged (once per outage) and the device
    is reopened with exponential backoff; with ``retry=False`` (a command a person waits on)
    the first failure is raised as MicError instead. Every backend is paced to real time,
    because files (and the file-backed ALSA device of the tests) deliver instantly.
    """

    def __init__(self, config: MicConfig, chunk_ms: int = 100, *, retry: bool = True) -> None:
        self.config = config
        self._retry = retry
        self._chunk_ms = chunk_ms
        self._chunk_seconds = chunk_ms / 1000
        self._chunk_bytes = SPEECH_FORMAT.rate * chunk_ms // 1000 * SPEECH_FORMAT.frame_bytes
        self._closed = asyncio.Event()
        self._source: _Source | None = None
        self._outage_logged = False

    @property
    def description(self) -> str:
        where = describe_backend(self.config)
        if self.config.backend == "file":
            return where
        return f"{where} ({self.config.rate} Hz, {self.config.channels} ch)"

    async def chunks(self) -> AsyncIterator[bytes]:
        """Chunks of ``chunk_ms`` of SPEECH_FORMAT audio, until ``close()``; one reader."""
        delay = _RETRY_FIRST_SECONDS
        while not self._closed.is_set():
            source = self._source = self._new_source()
            try:
                await source.open()
                announced = False
                async for chunk in self._deliver(source):
                    if not announced:
                        _LOGGER.info("microphone: reading %s", self.description)
                        announced, self._outage_logged = True, False
                        delay = _RETRY_FIRST_SECONDS
                    yield chunk
            except _FAILURES as exc:
                if not self._retry:
                    reason = str(exc) or type(exc).__name__
                    raise MicError(f"microphone {self.description}: {reason}") from exc
                if not self._closed.is_set():
                    self._report(exc, delay)
            finally:
                self._source = None
                await source.close()
            if not await self._sleep(delay):
                return
            delay = min(delay * 2, _RETRY_MAX_SECONDS)

    async def close(self) -> None:
        """Release the device; ``chunks()`` then ends."""
        self._closed.set()
        if self._source is not None:
            await self._source.close()

    def _new_source(self) -> _Source:
        if self.config.backend == "command":
            return _CommandSource(self.config)
        if self.config.backend == "file":
            return _FileSource(self.config)
        return _PyAudioSource(self.config, self._frames(self.config.rate))

    def _frames(self, rate: int) -> int:
        """Frames read at a time: a chunk's worth."""
        return max(1, rate * self._chunk_ms // 1000)

    def _report(self, exc: Exception, delay: float) -> None:
        reason = str(exc) or type(exc).__name__
        if self._outage_logged:
            _LOGGER.debug("microphone still unavailable: %s", reason)
            return
        self._outage_logged = True
        _LOGGER.warning(
            "microphone %s unavailable: %s; retrying in %.1f s", self.description, reason, delay
        )

    async def _deliver(self, source: _Source) -> AsyncIterator[bytes]:
        """Chunks from an open source, paced to real time; ends when closed."""
        converter = _Converter(source.format, self.config)
        frames = self._frames(source.format.rate)
        read_seconds = frames / source.format.rate
        allowance = _AHEAD_CHUNKS * self._chunk_seconds
        start, produced = time.monotonic(), 0.0
        pending = b""
        while True:
            began = time.monotonic()
            try:
                async with asyncio.timeout(_READ_TIMEOUT_SECONDS):
                    data = await source.read(frames)
            except TimeoutError:
                raise MicError(f"no audio for {_READ_TIMEOUT_SECONDS:g} s") from None
            if self._closed.is_set():
                return
            now = time.monotonic()
            if now - began > read_seconds / 2:
                # The source made us wait, so it runs in real time: follow its clock, as
                # the wall clock drifts from a sound card's.
                start = now - produced
            pending += converter.convert(data)
            while len(pending) >= self._chunk_bytes:
                chunk, pending = pending[: self._chunk_bytes], pending[self._chunk_bytes :]
                produced += self._chunk_seconds
                ahead = produced - (time.monotonic() - start) - allowance
                if ahead > 0:
                    await asyncio.sleep(ahead)
                if self._closed.is_set():
                    return
                yield chunk

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short by close(); False when closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)
        return not self._closed.is_set()
