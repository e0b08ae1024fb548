"""The speaker: plays sounds in their own format on the configured backend, in real time."""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from ..bridge import run_blocking
from ..config import SpeakerConfig
from .device import PyAudioDevice, ShellCommand, apply_volume, describe_backend
from .pcm import AudioFormat, validate_format

_OPEN_SECONDS = 10.0  # PyAudio's first initialization probes every sound card
_MARGIN_SECONDS = 5.0  # slack on top of the audio's duration before a stalled device fails
_PIECE_SECONDS = 0.1  # largest single write, so a cancelled sound stops quickly


class SpeakerError(Exception):
    """A sound could not be played (completely)."""


class _Sink(Protocol):
    async def open(self) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def finish(self) -> None:
        """Wait until everything written has been played (or handed over)."""

    async def abort(self) -> None:
        """Release the sink now, after a failure or a cancellation."""


class _PyAudioSink:
    def __init__(self, device: PyAudioDevice, fmt: AudioFormat) -> None:
        self._device = device
        self._format = fmt

    async def open(self) -> None:
        await self._device.open(self._format)

    async def write(self, data: bytes) -> None:
        await self._device.write(data)

    async def finish(self) -> None:
        await self._device.drain()

    async def abort(self) -> None:
        await self._device.terminate()  # the next sound reinitializes PyAudio


class _CommandSink:
    """Feeds a command's stdin; it must read everything and exit with code 0."""

    def __init__(self, command: str, fmt: AudioFormat) -> None:
        for name, value in (("rate", fmt.rate), ("width", fmt.width), ("channels", fmt.channels)):
            command = command.replace(f"{{{name}}}", str(value))
        self._command_line = command
        self._command: ShellCommand | None = None

    async def open(self) -> None:
        self._command = await ShellCommand.start(self._command_line, "speaker command", feed=True)

    async def write(self, data: bytes) -> None:
        process = self._running()
        assert process.stdin is not None
        try:
            process.stdin.write(data)
            await process.stdin.drain()
        except OSError:  # the pipe broke: it exited, and its exit code tells why
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 1.0)
            self._running()
            raise

    async def finish(self) -> None:
        process = self._running()
        assert process.stdin is not None
        process.stdin.close()
        with contextlib.suppress(OSError):  # it exited early: its exit code tells
            await process.stdin.wait_closed()
        code = await process.wait()
        await self.abort()  # whatever it left running
        if code != 0:
            raise SpeakerError(f"the command exited with code {code}")

    async def abort(self) -> None:
        if self._command is not None:
            await self._command.stop()

    def _running(self) -> asyncio.subprocess.Process:
        """The process, which must still be running: it exits only after its input ends."""
        assert self._command is not None
        process = self._command.process
        if process.returncode is not None:
            raise SpeakerError(f"the command exited (code {process.returncode}) mid-sound")
        return process


class _FileSink:
    """Appends raw PCM to a file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._file: BinaryIO | None = None

    async def open(self) -> None:
        self._file = await run_blocking(self._path.open, "ab")

    async def write(self, data: bytes) -> None:
        assert self._file is not None
        await run_blocking(self._file.write, data)

    async def finish(self) -> None:
        file, self._file = self._file, None
        if file is not None:
            await run_blocking(file.close)

    async def abort(self) -> None:
        with contextlib.suppress(OSError):
            await self.finish()


class Speaker:
    """Plays sounds one at a time; ``play`` returns when the sound has really been heard."""

    def __init__(self, config: SpeakerConfig) -> None:
        self.config = config
        self._device = PyAudioDevice(config.device, is_input=False)
        self._lock = asyncio.Lock()
        self._sink: _Sink | None = None

    @property
    def description(self) -> str:
        return describe_backend(self.config)

    async def play(self, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> None:
        """Play ``audio`` as it arrives (faster than real time is fine: it waits for the
        device, never drops). Raises SpeakerError if the device fails or stalls."""
        try:
            validate_format(fmt)
        except ValueError as exc:
            raise SpeakerError(f"cannot play {fmt}: {exc}") from None
        async with self._lock:
            sink = self._sink = self._new_sink(fmt)
            try:
                await self._play(sink, fmt, audio)
            except BaseException:
                await sink.abort()
                raise
            finally:
                self._sink = None

    async def play_file(self, path: Path) -> None:
        """Play a WAV file."""
        try:
            fmt, frames = await run_blocking(_read_wav, path)
        except (OSError, EOFError, wave.Error) as exc:
            raise SpeakerError(f"cannot read {path}: {exc}") from None
        await self.play(fmt, _single(frames))

    async def close(self) -> None:
        """Stop the sound playing (if any) and release the device."""
        if self._sink is not None:
            await self._sink.abort()
        await self._device.terminate()

    def _new_sink(self, fmt: AudioFormat) -> _Sink:
        if self.config.backend == "command":
            assert self.config.command is not None
            return _CommandSink(self.config.command, fmt)
        if self.config.backend == "file":
            assert self.config.file is not None
            return _FileSink(self.config.file)
        return _PyAudioSink(self._device, fmt)

    async def _play(self, sink: _Sink, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> None:
        await self._bounded(sink.open(), _OPEN_SECONDS)
        piece_bytes = max(1, int(fmt.rate * _PIECE_SECONDS)) * fmt.frame_bytes
        start: float | None = None
        duration = 0.0
        pending = b""
        async for chunk in audio:
            pending += chunk
            usable = len(pending) - len(pending) % fmt.frame_bytes
            for offset in range(0, usable, piece_bytes):
                piece = pending[offset : min(offset + piece_bytes, usable)]
                if start is None:
                    start = time.monotonic()
                seconds = fmt.seconds(len(piece))
                data = apply_volume(piece, fmt.width, self.config.volume)
                await self._bounded(sink.write(data), seconds + _MARGIN_SECONDS)
                duration += seconds
            pending = pending[usable:]
        end = time.monotonic() if start is None else start + duration
        await self._bounded(sink.finish(), max(0.0, end - time.monotonic()) + _MARGIN_SECONDS)
        # Files and the file-backed ALSA device take audio instantly: wait as a listener would.
        await asyncio.sleep(max(0.0, end - time.monotonic()))

    async def _bounded(self, work: Coroutine[Any, Any, None], timeout: float) -> None:
        """A sink operation; its failure or a stall longer than ``timeout`` is a SpeakerError."""
        try:
            await asyncio.wait_for(work, timeout)
        except TimeoutError:
            raise SpeakerError(f"{self.description}: stalled for {timeout:.1f} s") from None
        except (SpeakerError, OSError, ValueError, LookupError) as exc:
            raise SpeakerError(f"{self.description}: {exc}") from exc


def _read_wav(path: Path) -> tuple[AudioFormat, bytes]:
    with wave.open(str(path), "rb") as wav:
        fmt = AudioFormat(wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
        return fmt, wav.readframes(wav.getnframes())


async def _single(data: bytes) -> AsyncIterator[bytes]:
    yield data
