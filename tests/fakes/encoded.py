"""A live audio encoder for the fakes: PCM in, MP3 or Ogg Opus bytes out as soon as the
encoder emits them, as a service streaming its own encoding sends them.

libsndfile writes through a seekable file; what it writes at the end is sent as it comes.
Closing an MP3 goes back to fill in its first (Xing) frame, which a stream already sent
cannot take: that rewrite is dropped, so the stream is constant-bit-rate MP3 whose first
frame is silent, decoded like any other.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Literal

import soundfile

Container = Literal["mp3", "ogg-opus"]
_CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "ogg-opus": ("OGG", "OPUS")}


class _Stream(io.RawIOBase):
    """A file libsndfile can write: appends are kept to send, rewrites are dropped."""

    def __init__(self) -> None:
        super().__init__()
        self._size = 0
        self._position = 0
        self.unsent = bytearray()

    def readable(self) -> bool:
        return True  # libsndfile asks; it never reads a file it only writes

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        return 0

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = base + offset
        return self._position

    def write(self, data: bytes) -> int:  # type: ignore[override]
        data = bytes(data)
        end = self._position + len(data)
        if end > self._size:
            self.unsent += data[max(0, self._size - self._position) :]
            self._size = end
        self._position = end
        return len(data)

    def take(self) -> bytes:
        sent, self.unsent = bytes(self.unsent), bytearray()
        return sent


class LiveEncoder:
    """One stream of ``container`` at ``rate`` (mono), fed s16le PCM in pieces."""

    def __init__(self, container: Container, rate: int) -> None:
        file_format, subtype = _CODECS[container]
        self._stream = _Stream()
        # libsndfile applies a bit-rate mode only with a compression level.
        extra = {"bitrate_mode": "CONSTANT", "compression_level": 0.5} if container == "mp3" else {}
        self._sound = soundfile.SoundFile(
            self._stream, "w", rate, 1, subtype, format=file_format, **extra
        )

    def encode(self, pcm: bytes) -> bytes:
        """The bytes the encoder emitted for this PCM (often none: it works by frames)."""
        self._sound.buffer_write(pcm, dtype="int16")
        return self._stream.take()

    def finish(self) -> bytes:
        """The rest of the stream: the encoder flushed and the stream ended."""
        self._sound.close()
        return self._stream.take()


def encoder_for(container: Container | None, rate: int) -> LiveEncoder | None:
    """An encoder when the client asked for an encoding, None for PCM."""
    return None if container is None else LiveEncoder(container, rate)


def frames(
    pcm: bytes, step: int, encoder: LiveEncoder | None, last: bool
) -> Iterator[tuple[bytes, int]]:
    """The payloads of the audio messages for ``pcm``, each with the PCM bytes it holds: the
    PCM in ``step``-byte pieces, or what ``encoder`` emits for them (pieces it emits nothing
    for go with the next payload); ``last`` ends the encoder's stream."""
    held = 0
    for start in range(0, len(pcm), step):
        piece = pcm[start : start + step]
        held += len(piece)
        payload = piece if encoder is None else encoder.encode(piece)
        if last and encoder is not None and start + step >= len(pcm):
            payload += encoder.finish()
        if payload:
            yield payload, held
            held = 0
