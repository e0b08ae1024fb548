"""PCM formats and streaming conversion between them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

_DTYPES = {1: "u1", 2: "<i2", 4: "<i4"}  # 8-bit PCM is unsigned


@dataclass(frozen=True)
class AudioFormat:
    """Raw little-endian PCM: samples per second, bytes per sample, interleaved channels."""

    rate: int
    width: int
    channels: int

    @property
    def frame_bytes(self) -> int:
        return self.width * self.channels

    def seconds(self, byte_count: int) -> float:
        return byte_count / (self.rate * self.frame_bytes)


SPEECH_FORMAT = AudioFormat(rate=16000, width=2, channels=1)
SPEECH_BYTES_PER_MS = SPEECH_FORMAT.rate * SPEECH_FORMAT.frame_bytes // 1000


def validate_format(fmt: AudioFormat) -> None:
    """Raise ValueError unless the format can be converted."""
    if fmt.width not in _DTYPES:
        raise ValueError(f"unsupported sample width {fmt.width} (1, 2 or 4 bytes)")
    if not 1 <= fmt.channels <= 32:
        raise ValueError(f"unsupported channel count {fmt.channels}")
    if not 1000 <= fmt.rate <= 384000:
        raise ValueError(f"unsupported sample rate {fmt.rate}")


def numpy_module():
    """numpy, imported on first use: audio that needs no conversion never loads it (~12 MB)."""
    import numpy

    return numpy


def _to_float(samples: np.ndarray, width: int) -> np.ndarray:
    if width == 1:
        return (samples.astype("f8") - 128.0) / 128.0
    return samples.astype("f8") / float(2 ** (8 * width - 1))


def _from_float(samples: np.ndarray, width: int) -> bytes:
    np = numpy_module()
    scale = float(2 ** (8 * width - 1))
    ints = np.clip(np.round(samples * scale), -scale, scale - 1)
    if width == 1:
        ints = ints + 128
    return ints.astype(_DTYPES[width]).tobytes()


class PcmConverter:
    """Converts a stream of PCM chunks from one format to another.

    Chunks may be cut anywhere (odd byte counts included): partial frames are kept
    until the next chunk completes them. Rate conversion is linear interpolation that
    carries its position across chunks, so chunk boundaries leave no clicks.
    """

    def __init__(self, source: AudioFormat, target: AudioFormat) -> None:
        validate_format(source)
        validate_format(target)
        self.source = source
        self.target = target
        self._pending = b""
        self._step = source.rate / target.rate
        self._position = 0.0  # next output sample, in source samples relative to _history
        self._history: np.ndarray | None = None  # last source sample (mono float)

    @property
    def passthrough(self) -> bool:
        return self.source == self.target

    def convert(self, chunk: bytes) -> bytes:
        data = self._pending + chunk
        usable = len(data) - len(data) % self.source.frame_bytes
        self._pending = data[usable:]
        if self.passthrough or usable == 0:
            return data[:usable]
        np = numpy_module()
        raw = np.frombuffer(data[:usable], dtype=_DTYPES[self.source.width])
        frames = _to_float(raw, self.source.width).reshape(-1, self.source.channels)
        mono = frames.mean(axis=1) if self.source.channels > 1 else frames[:, 0]
        if self.source.rate != self.target.rate:
            mono = self._resample(mono)
        if self.target.channels > 1:
            mono = np.repeat(mono[:, None], self.target.channels, axis=1).reshape(-1)
        return _from_float(mono, self.target.width)

    def _resample(self, mono: np.ndarray) -> np.ndarray:
        np = numpy_module()
        samples = mono if self._history is None else np.concatenate([self._history, mono])
        last_index = len(samples) - 1
        if last_index < 1:
            self._history = samples
            return mono[:0]
        positions = np.arange(self._position, last_index, self._step)
        out = np.interp(positions, np.arange(len(samples)), samples)
        next_position = self._position + len(positions) * self._step
        self._position = next_position - last_index
        self._history = samples[-1:]
        return out
