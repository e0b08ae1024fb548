"""Audio files, through libsndfile (soundfile): WAV, MP3, FLAC or OGG (Vorbis, Opus) read as
s16le PCM, and PCM written in the container and codec the file's extension names (or audio
that arrives already encoded, written as it comes)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import soundfile

from ..bridge import run_blocking
from .pcm import AudioFormat, PcmConverter

READABLE = "WAV, MP3, FLAC or OGG (Vorbis, Opus)"
_S16 = 2


class AudioFileError(Exception):
    """A file that cannot be read or written as audio; the message names it and why."""


@dataclass(frozen=True)
class AudioFile:
    """A whole file's audio, decoded."""

    fmt: AudioFormat  # always 16-bit: every codec is decoded to s16le
    pcm: bytes  # interleaved s16le frames
    kind: str  # container and codec, e.g. "MP3", "OGG Opus", "WAV 24-bit"


def _reason(exc: soundfile.LibsndfileError) -> str:
    return exc.error_string.removeprefix("Error : ").rstrip(".")


def _kind(sound: soundfile.SoundFile) -> str:
    if sound.format == "OGG":
        return f"OGG {sound.subtype_info}"
    bits = sound.subtype.removeprefix("PCM_")
    return f"{sound.format} {bits}-bit" if bits.isdigit() else sound.format


def read_audio(path: Path) -> AudioFile:
    """Decode a whole file (blocking: call it through ``run_blocking``)."""
    try:
        with path.open("rb") as file, soundfile.SoundFile(file) as sound:
            fmt = AudioFormat(sound.samplerate, _S16, sound.channels)
            return AudioFile(fmt, bytes(sound.buffer_read(dtype="int16")), _kind(sound))
    except OSError as exc:
        raise AudioFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    except soundfile.LibsndfileError as exc:
        raise AudioFileError(f"{path} is not {READABLE} audio: {_reason(exc)}") from None


@dataclass(frozen=True)
class _Codec:
    format: str
    subtype: str
    label: str  # as the user reads it
    rates: tuple[int, ...] = ()  # the only sample rates it takes (empty: any)


_WRITTEN = {
    ".wav": _Codec("WAV", "PCM_16", "WAV"),
    ".flac": _Codec("FLAC", "PCM_16", "FLAC"),
    ".mp3": _Codec("MP3", "MPEG_LAYER_III", "MP3"),
    ".ogg": _Codec("OGG", "VORBIS", "Ogg Vorbis"),
    ".opus": _Codec("OGG", "OPUS", "Ogg Opus", (8000, 12000, 16000, 24000, 48000)),
}


def _codec(path: Path) -> _Codec:
    codec = _WRITTEN.get(path.suffix.lower())
    if codec is None:
        *most, last = _WRITTEN
        known = f"{', '.join(most)} or {last}"
        raise AudioFileError(f"cannot write {path}: the file name must end in {known}")
    return codec


def codec_label(path: Path) -> str:
    """What ``write_audio`` encodes a file of this name in, e.g. "MP3", "Ogg Vorbis"."""
    return _codec(path).label


def check_writable(path: Path) -> None:
    """Refuse, before any audio is produced, a file name whose extension names no codec or
    whose directory does not exist."""
    _codec(path)
    if not path.parent.is_dir():
        raise AudioFileError(f"cannot write {path}: there is no directory {path.parent}")


def _written_format(codec: _Codec, fmt: AudioFormat) -> AudioFormat:
    """16-bit, at the first rate the codec takes from ``fmt.rate`` up (else its highest)."""
    rate = fmt.rate
    if codec.rates and rate not in codec.rates:
        rate = next((r for r in codec.rates if r > rate), codec.rates[-1])
    return AudioFormat(rate, _S16, fmt.channels)


@contextlib.contextmanager
def _new_file(path: Path) -> Iterator[BinaryIO]:
    """The file, created for writing; removed again if anything fails before it is done."""
    try:
        file = path.open("wb")  # here, not in a thread: a cancelled wait would leave it behind
    except OSError as exc:
        raise AudioFileError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with file:
            yield file
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise AudioFileError(f"cannot write {path}: {exc.strerror or exc}") from None
        if isinstance(exc, soundfile.LibsndfileError):
            raise AudioFileError(f"cannot write {path}: {_reason(exc)}") from None
        raise


async def write_audio(path: Path, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> None:
    """Write the audio as it comes, encoded as the extension asks; a failure (of the audio's
    source included) leaves no partial file behind."""
    codec = _codec(path)
    target = _written_format(codec, fmt)
    converter = PcmConverter(fmt, target)
    # Closing flushes the encoder and writes the final header: quick, in place.
    with (
        _new_file(path) as file,
        soundfile.SoundFile(
            file, "w", target.rate, target.channels, codec.subtype, format=codec.format
        ) as sound,
    ):
        async for chunk in audio:
            if pcm := converter.convert(chunk):
                await run_blocking(sound.buffer_write, pcm, dtype="int16")


async def write_encoded(path: Path, audio: AsyncIterator[bytes]) -> None:
    """Write audio that comes already encoded (a whole file's bytes) as it comes, unchanged;
    a failure (of the audio's source included) leaves no partial file behind."""
    with _new_file(path) as file:
        async for chunk in audio:
            await run_blocking(file.write, chunk)


def audio_seconds(path: Path) -> float | None:
    """How long a written file plays, as libsndfile reads it (None if it cannot); blocking."""
    try:
        return soundfile.info(path).duration
    except (OSError, soundfile.LibsndfileError):
        return None
