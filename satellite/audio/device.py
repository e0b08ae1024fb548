"""Device plumbing the mic and the speaker share: PyAudio devices, shell commands, volume."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyaudio

from ..config import MicConfig, SpeakerConfig
from .pcm import AudioFormat, numpy_module
from .quiet import quiet_audio_libraries

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

_STUCK_SECONDS = 2.0  # how long a device call left running may keep the device busy
STOP_SECONDS = 2.0  # a command gets this long to exit after SIGTERM, then SIGKILL

# PortAudio's global state (device lists, host APIs) is not safe to use from several threads
# at once; the mic and the speaker open and close from different pool threads.
_PORTAUDIO_LOCK = threading.Lock()
# Explicit: pyaudio.get_format_from_width maps 4 bytes to float32, not int32.
_PA_FORMATS = {1: pyaudio.paUInt8, 2: pyaudio.paInt16, 4: pyaudio.paInt32}


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
    np = numpy_module()
    dtype = np.dtype(np.uint8) if width == 1 else np.dtype(f"<i{width}")
    offset = 128 if width == 1 else 0  # 8-bit PCM is unsigned
    peak = 2 ** (8 * width - 1)
    samples = np.frombuffer(data, dtype).astype(np.float64) - offset
    scaled = np.clip(np.round(samples * volume), -peak, peak - 1) + offset
    return scaled.astype(dtype).tobytes()


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    inputs: int  # input channels (0: not a microphone)
    outputs: int  # output channels (0: not a speaker)
    default_rate: int


def _devices(pa: pyaudio.PyAudio) -> list[DeviceInfo]:
    infos = (pa.get_device_info_by_index(i) for i in range(pa.get_device_count()))
    return [
        DeviceInfo(
            index=int(info["index"]),
            name=str(info["name"]),
            inputs=int(info["maxInputChannels"]),
            outputs=int(info["maxOutputChannels"]),
            default_rate=int(info["defaultSampleRate"]),
        )
        for info in infos
    ]


def _portaudio() -> pyaudio.PyAudio:
    """PortAudio started, with the audio libraries' probing messages silenced."""
    quiet_audio_libraries()
    return pyaudio.PyAudio()


def list_devices() -> list[DeviceInfo]:
    """Every PortAudio device (blocking; for the command line)."""
    with _PORTAUDIO_LOCK:
        pa = _portaudio()
        try:
            return _devices(pa)
        finally:
            pa.terminate()


def _device_index(pa: pyaudio.PyAudio, wanted: str | int | None, is_input: bool) -> int | None:
    """The index of the configured device: None (default), an index, or part of a name.

    LookupError naming the devices there are when it is not there (PortAudio's own text
    for a missing default input device speaks of "output")."""
    kind = "input" if is_input else "output"
    default = pa.get_default_input_device_info if is_input else pa.get_default_output_device_info
    usable = [d for d in _devices(pa) if (d.inputs if is_input else d.outputs) > 0]
    if wanted is None:
        with contextlib.suppress(OSError):
            default()
            return None
        missing = f"no default {kind} device"
    else:
        for device in usable:
            if wanted == device.index or (
                isinstance(wanted, str) and wanted.lower() in device.name.lower()
            ):
                return device.index
        missing = f"no {kind} device {wanted!r}"
    names = ", ".join(repr(d.name) for d in usable) or "none"
    raise LookupError(
        f"{missing} ({kind} devices here: {names}); check that it is plugged in and listed by "
        "'voice-satellite devices'"
    )


def missing_device(config: MicConfig | SpeakerConfig, is_input: bool) -> str | None:
    """Why the configured PortAudio device is not on this machine, or None (blocking; for
    check-config: devices come and go, the daemon retries)."""
    if config.backend != "pyaudio":
        return None
    with _PORTAUDIO_LOCK:
        pa = _portaudio()
        try:
            _device_index(pa, config.device, is_input)
        except LookupError as exc:
            return str(exc)
        finally:
            pa.terminate()
    return None


_Call = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller stopped waiting
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class _DeviceThread:
    """A device's own thread, running its blocking calls one after another.

    A mic reads ten blocks a second for as long as the daemon runs: handing each read to the
    shared thread pool cost more CPU than PortAudio's read itself. A daemon thread, so a call
    stuck in a driver never holds up the exit.
    """

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(self, func: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._calls.put((func, future, loop))
        return future

    def stop(self) -> None:
        """End the thread once the calls already submitted have returned."""
        self._calls.put(None)

    def _serve(self) -> None:
        while (call := self._calls.get()) is not None:
            func, future, loop = call
            try:
                outcome: tuple[Any, BaseException | None] = (func(), None)
            except BaseException as exc:  # raised again in the awaiting task
                outcome = (None, exc)
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(_settle, future, *outcome)


class PyAudioDevice:
    """A PyAudio input or output device with at most one open stream.

    Blocking calls run on the device's own thread, one at a time. PortAudio must not close a
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
        self._thread: _DeviceThread | None = None  # from the first call until terminate()

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
        finally:
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.stop()

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        async with self._lock:
            if self._running is not None and not self._running.done():
                await asyncio.wait({self._running}, timeout=_STUCK_SECONDS)
                if not self._running.done():
                    raise TimeoutError("the audio device is stuck in a previous call")
            if self._thread is None:
                self._thread = _DeviceThread("mic-device" if self._is_input else "speaker-device")
            self._running = self._thread.submit(functools.partial(func, *args))
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
                self._pa = _portaudio()
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
                await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
                break
        await asyncio.wait({self._logging}, timeout=STOP_SECONDS)
        self._logging.cancel()

    async def _log_stderr(self) -> None:
        assert self.process.stderr is not None
        while data := await self.process.stderr.read(4096):
            for line in data.decode(errors="replace").splitlines():
                if line.strip():
                    _LOGGER.warning("%s: %s", self._label, line.rstrip())


# --- Sources ---------------------------------------------------------------------------
