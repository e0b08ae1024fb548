"""The microphone: any configured source as a paced stream of 16 kHz mono s16le chunks.

Also home of the device plumbing the speaker shares: PyAudio devices, shell commands,
volume and backend descriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pyaudio

from ..bridge import run_blocking
from ..config import MicConfig, SpeakerConfig
from .pcm import SPEECH_FORMAT, AudioFormat, PcmConverter

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_RETRY_FIRST_SECONDS = 0.5
_RETRY_MAX_SECONDS = 10.0
_READ_TIMEOUT_SECONDS = 5.0  # a source silent this long has failed (a mic never pauses)
_AHEAD_CHUNKS = 2  # how far delivered audio may run ahead of the wall clock
_STUCK_SECONDS = 2.0  # how long a device call left running may keep the device busy
_STOP_SECONDS = 2.0  # a command gets this long to exit after SIGTERM, then SIGKILL

# PortAudio's global state (device lists, host APIs) is not safe to use from several threads
# at once; the mic and the speaker open and close from different pool threads.
_PORTAUDIO_LOCK = threading.Lock()
# Explicit: pyaudio.get_format_from_width maps 4 bytes to float32, not int32.
_PA_FORMATS = {1: pyaudio.paUInt8, 2: pyaudio.paInt16, 4: pyaudio.paInt32}


class MicError(Exception):
    """The microphone cannot deliver audio (logged and retried by ``Mic.chunks``)."""


# --- Shared with the speaker ---------------------------------------------------------


def describe_backend(config: MicConfig | SpeakerConfig) -> str:
    if config.backend == "command":
        return f"command {config.command!r}"
    if config.backend == "file":
        return f"file {config.file}"
    return (
        "default pyaudio device" if config.device is None else f"pyaudio device {config.device!r}"
    )


def apply_volume(data: bytes, width: int, volume: float) -> bytes:
    """Whole samples of ``width`` bytes scaled by ``volume``, clipped to the sample range."""
    if volume == 1.0 or not data:
        return data
    dtype = np.dtype(np.uint8) if width == 1 else np.dtype(f"<i{width}")
    offset = 128 if width == 1 else 0  # 8-bit PCM is unsigned
    peak = 2 ** (8 * width - 1)
    samples = np.frombuffer(data, dtype).astype(np.float64) - offset
    scaled = np.clip(np.round(samples * volume), -peak, peak - 1) + offset
    return scaled.astype(dtype).tobytes()


def _device_index(pa: pyaudio.PyAudio, wanted: str | int | None, is_input: bool) -> int | None:
    """The index of the configured device: None (default), an index, or part of a name."""
    if wanted is None:
        return None
    key = "maxInputChannels" if is_input else "maxOutputChannels"
    devices = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    usable = [d for d in devices if int(d[key]) > 0]
    for device in usable:
        if wanted == device["index"] or (
            isinstance(wanted, str) and wanted.lower() in str(device["name"]).lower()
        ):
            return int(device["index"])
    kind = "input" if is_input else "output"
    names = ", ".join(repr(d["name"]) for d in usable) or "none"
    raise LookupError(f"no {kind} device {wanted!r}; {kind} devices: {names}")


class PyAudioDevice:
    """A PyAudio input or output device with at most one open stream.

    Blocking calls run through ``run_blocking``, one at a time. PortAudio must not close a
    stream (or terminate) while another thread reads or writes it, so a call whose caller
    stopped waiting (cancelled, timed out) keeps the device busy until it returns.
    ``terminate()`` drops the PyAudio instance: the next ``open()`` creates a new one, which
    sees devices plugged in since.
    """

    def __init__(self, device: str | int | None, *, is_input: bool) -> None:
        self._device = device
        self._is_input = is_input
        self._pa: pyaudio.PyAudio | None = None
        self._stream: pyaudio.PyAudio.Stream | None = None
        self._lock = asyncio.Lock()
        self._running: asyncio.Future[Any] | None = None

    async def open(self, fmt: AudioFormat, frames_per_buffer: int | None = None) -> None:
        await self._call(self._open, fmt, frames_per_buffer)

    async def read(self, frames: int) -> bytes:
        return await self._call(lambda: self._live().read(frames, exception_on_overflow=False))

    async def write(self, data: bytes) -> None:
        await self._call(lambda: self._live().write(data))

    async def drain(self) -> None:
        """Wait until the written audio has played (``stop_stream``), then close the stream."""
        await self._call(self._drain)

    async def terminate(self) -> None:
        """Close the stream and PyAudio; a device stuck in a call is abandoned, not awaited."""
        try:
            await self._call(self._terminate)
        except TimeoutError:
            _LOGGER.warning("audio device stuck in a call: abandoning it")
            self._pa = self._stream = self._running = None

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            if self._running is not None and not self._running.done():
                await asyncio.wait({self._running}, timeout=_STUCK_SECONDS)
                if not self._running.done():
                    raise TimeoutError("the audio device is stuck in a previous call")
            self._running = asyncio.ensure_future(run_blocking(func, *args))
            # Retrieved here too: the caller may have stopped waiting.
            self._running.add_done_callback(lambda done: done.cancelled() or done.exception())
            return await asyncio.shield(self._running)

    def _live(self) -> pyaudio.PyAudio.Stream:
        if self._stream is None:
            raise OSError("the audio stream is closed")
        return self._stream

    def _open(self, fmt: AudioFormat, frames_per_buffer: int | None) -> None:
        with _PORTAUDIO_LOCK:
            if self._pa is None:
                self._pa = pyaudio.PyAudio()
            index = _device_index(self._pa, self._device, self._is_input)
            self._stream = self._pa.open(
                rate=fmt.rate,
                channels=fmt.channels,
                format=_PA_FORMATS[fmt.width],
                input=self._is_input,
                output=not self._is_input,
                input_device_index=index if self._is_input else None,
                output_device_index=None if self._is_input else index,
                frames_per_buffer=frames_per_buffer or pyaudio.paFramesPerBufferUnspecified,
            )

    def _drain(self) -> None:
        self._live().stop_stream()
        with _PORTAUDIO_LOCK:
            self._close_stream()

    def _terminate(self) -> None:
        with _PORTAUDIO_LOCK:
            self._close_stream()
            if self._pa is not None:
                with contextlib.suppress(OSError):
                    self._pa.terminate()
                self._pa = None

    def _close_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()  # discards what has not played yet


class ShellCommand:
    """A shell command in its own process group (stopping it stops its children too),
    its stderr logged line by line."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self._label = label
        self._logging = asyncio.ensure_future(self._log_stderr())

    @classmethod
    async def start(cls, command: str, label: str, *, feed: bool) -> ShellCommand:
        """``feed``: we write its stdin (speaker); else we read its stdout (mic)."""
        pipe, devnull = asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_shell(
            command,
            stdin=pipe if feed else devnull,
            stdout=devnull if feed else pipe,
            stderr=pipe,
            start_new_session=True,
        )
        return cls(process, label)

    async def stop(self) -> None:
        """Stop the process group: SIGTERM, then SIGKILL if it lingers."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), _STOP_SECONDS)
                break
        await asyncio.wait({self._logging}, timeout=_STOP_SECONDS)
        self._logging.cancel()

    async def _log_stderr(self) -> None:
        assert self.process.stderr is not None
        while data := await self.process.stderr.read(4096):
            for line in data.decode(errors="replace").splitlines():
                if line.strip():
                    _LOGGER.warning("%s: %s", self._label, line.rstrip())


# --- Sources ---------------------------------------------------------------------------


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
                await asyncio.wait_for(self._command.process.wait(), _STOP_SECONDS)
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
            frames = np.frombuffer(data[:usable], np.uint8).reshape(
                -1, self._source.channels, self._source.width
            )
            data = frames[:, self._channel, :].tobytes()
        return apply_volume(self._pcm.convert(data), SPEECH_FORMAT.width, self._volume)


class Mic:
    """Reads the configured microphone forever as 16 kHz mono s16le chunks.

    Device failures never reach the reader: they are logged (once per outage) and the device
    is reopened with exponential backoff. Every backend is paced to real time, because files
    (and the file-backed ALSA device of the tests) deliver instantly.
    """

    def __init__(self, config: MicConfig, chunk_ms: int = 30) -> None:
        self.config = config
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
                data = await self._unless_closed(
                    asyncio.wait_for(source.read(frames), _READ_TIMEOUT_SECONDS)
                )
            except TimeoutError:
                raise MicError(f"no audio for {_READ_TIMEOUT_SECONDS:g} s") from None
            if data is None:
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
                if ahead > 0 and not await self._sleep(ahead):
                    return
                yield chunk

    async def _unless_closed(self, work: Coroutine[Any, Any, T]) -> T | None:
        """The result of ``work``, or None as soon as the mic is closed (``work`` cancelled)."""
        if self._closed.is_set():
            work.close()
            return None
        task = asyncio.ensure_future(work)
        closing = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closing.cancel()
            task.cancel()  # no-op once done
        return task.result() if task in done else None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short by close(); False when closed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closed.wait(), seconds)
        return not self._closed.is_set()
