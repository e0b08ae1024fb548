"""Audio files read and written through libsndfile: what comes back, and what a failure
leaves behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from satellite.audio.files import (
    AudioFileError,
    check_writable,
    read_audio,
    write_audio,
    write_encoded,
)
from satellite.audio.pcm import AudioFormat

MONO_22K = AudioFormat(22050, 2, 1)


def tone(seconds: float, rate: int) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * 330 * t) * 8000).astype("<i2").tobytes()


async def pieces(pcm: bytes, fail_after: int | None = None) -> AsyncIterator[bytes]:
    """``pcm`` in odd-sized pieces (frames cut in two), failing after ``fail_after`` pieces."""
    for count, offset in enumerate(range(0, len(pcm), 999)):
        if count == fail_after:
            raise RuntimeError("the synthesis failed")
        yield pcm[offset : offset + 999]


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.mp3", "a.ogg", "a.opus"])
async def test_what_is_written_reads_back(tmp_path: Path, name: str):
    pcm = tone(1.0, MONO_22K.rate)
    await write_audio(tmp_path / name, MONO_22K, pieces(pcm))
    audio = read_audio(tmp_path / name)
    rate = 24000 if name == "a.opus" else MONO_22K.rate  # Opus takes no 22.05 kHz
    assert audio.fmt == AudioFormat(rate, 2, 1)
    assert abs(audio.fmt.seconds(len(audio.pcm)) - 1.0) < 0.08
    if name in ("a.wav", "a.flac"):  # lossless
        assert audio.pcm == pcm


@pytest.mark.parametrize("name", ["a.wav", "a.mp3", "a.opus"])
async def test_a_failed_synthesis_leaves_no_file(tmp_path: Path, name: str):
    with pytest.raises(RuntimeError, match="the synthesis failed"):
        await write_audio(tmp_path / name, MONO_22K, pieces(tone(1.0, 22050), fail_after=5))
    assert list(tmp_path.iterdir()) == []


async def test_encoded_audio_is_written_as_it_comes(tmp_path: Path):
    encoded = tmp_path / "made.mp3"
    await write_audio(encoded, MONO_22K, pieces(tone(1.0, 22050)))
    copy = tmp_path / "copy.mp3"
    await write_encoded(copy, pieces(encoded.read_bytes()))
    assert copy.read_bytes() == encoded.read_bytes()


async def test_encoded_audio_that_fails_leaves_no_file(tmp_path: Path):
    with pytest.raises(RuntimeError, match="the synthesis failed"):
        await write_encoded(tmp_path / "a.mp3", pieces(bytes(10_000), fail_after=3))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(AudioFileError, match=r"cannot write .*: No such file or directory"):
        await write_encoded(tmp_path / "missing" / "a.mp3", pieces(bytes(10)))


def test_unusable_names_are_refused_before_anything_is_written(tmp_path: Path):
    with pytest.raises(AudioFileError, match=r"must end in \.wav, \.flac, \.mp3, \.ogg or \.opus"):
        check_writable(tmp_path / "out.m4a")
    with pytest.raises(AudioFileError, match="there is no directory"):
        check_writable(tmp_path / "missing" / "out.wav")
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_file_is_named_with_what_went_wrong(tmp_path: Path):
    whole = tmp_path / "whole.flac"
    soundfile.write(whole, np.zeros(44100, dtype="<i2"), 44100)
    truncated = tmp_path / "truncated.flac"
    truncated.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(AudioFileError, match=f"{truncated} is not WAV, MP3, FLAC or OGG"):
        read_audio(truncated)
