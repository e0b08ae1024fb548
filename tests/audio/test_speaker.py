"""The speaker on every backend; PyAudio through a real file-backed ALSA device."""

from __future__ import annotations

import asyncio
import time
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest

from satellite.audio.pcm import AudioFormat
from satellite.audio.speaker import Speaker, SpeakerError
from satellite.config import SpeakerConfig
from tests.audio.alsa import use_file_alsa

pytestmark = pytest.mark.timeout(20)

MONO_16K = AudioFormat(16000, 2, 1)
APLAY = "aplay -q -r {rate} -c {channels} -f S16_LE -t raw"


def noise(byte_count: int, seed: int = 2) -> bytes:
    samples = np.random.default_rng(seed).integers(-20000, 20000, byte_count // 2, dtype=np.int16)
    return samples.astype("<i2").tobytes()


async def pieces(audio: bytes, size: int, delay: float = 0.0) -> AsyncIterator[bytes]:
    """``audio`` cut into ``size``-byte chunks (odd sizes split samples), all at once by
    default: faster than real time."""
    for offset in range(0, len(audio), size):
        if delay:
            await asyncio.sleep(delay)
        yield audio[offset : offset + size]


async def timed_play(speaker: Speaker, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> float:
    began = time.monotonic()
    try:
        async with asyncio.timeout(10):
            await speaker.play(fmt, audio)
    finally:
        await speaker.close()
    return time.monotonic() - began


@pytest.mark.parametrize(
    ("fmt", "size"),
    [(MONO_16K, 3200), (MONO_16K, 333), (AudioFormat(22050, 2, 2), 1001)],
    ids=["whole-chunks", "odd-chunks", "22050-stereo"],
)
async def test_pyaudio_plays_every_byte_no_faster_than_real_time(tmp_path, monkeypatch, fmt, size):
    alsa = use_file_alsa(tmp_path, monkeypatch)
    audio = noise(fmt.rate * fmt.frame_bytes // 2)  # 0.5 s
    elapsed = await timed_play(Speaker(SpeakerConfig(backend="pyaudio")), fmt, pieces(audio, size))
    assert alsa.played() == audio
    assert 0.5 <= elapsed < 1.5


async def test_command_receives_every_byte(tmp_path):
    sink = tmp_path / "sink.raw"
    audio = noise(16000)
    speaker = Speaker(SpeakerConfig(backend="command", command=f"cat > {sink}"))
    assert await timed_play(speaker, MONO_16K, pieces(audio, 777)) >= 0.5
    assert sink.read_bytes() == audio


async def test_aplay_command_plays_through_alsa(tmp_path, monkeypatch):
    alsa = use_file_alsa(tmp_path, monkeypatch)
    audio = noise(16000)
    await timed_play(
        Speaker(SpeakerConfig(backend="command", command=APLAY)), MONO_16K, pieces(audio, 4000)
    )
    played = alsa.played()
    assert played[: len(audio)] == audio
    assert not any(played[len(audio) :])  # aplay pads its last period with silence


async def test_file_appends_every_sound_with_volume(tmp_path):
    sink = tmp_path / "sink.raw"
    speaker = Speaker(SpeakerConfig(backend="file", file=sink, volume=0.5))
    first = np.array([1000, -1000] * 800, "<i2").tobytes()
    second = np.array([30000, -30000] * 800, "<i2").tobytes()
    began = time.monotonic()
    await speaker.play(MONO_16K, pieces(first, 101))
    await speaker.play(MONO_16K, pieces(second, 3200))
    assert time.monotonic() - began >= 0.2
    expected = np.array([500, -500] * 800 + [15000, -15000] * 800, "<i2").tobytes()
    assert sink.read_bytes() == expected


async def test_file_in_a_missing_directory_fails_clearly(tmp_path):
    speaker = Speaker(SpeakerConfig(backend="file", file=tmp_path / "nowhere" / "sink.raw"))
    with pytest.raises(SpeakerError, match="No such file or directory"):
        await speaker.play(MONO_16K, pieces(noise(3200), 3200))


async def test_a_failing_command_raises_quickly(tmp_path):
    speaker = Speaker(SpeakerConfig(backend="command", command="false"))
    began = time.monotonic()
    with pytest.raises(SpeakerError, match="command 'false'"):
        await speaker.play(MONO_16K, pieces(noise(64000), 3200, delay=0.05))  # 2 s
    assert time.monotonic() - began < 1.0


async def test_a_command_dying_mid_sound_raises_and_the_next_sound_reopens(tmp_path):
    sink = tmp_path / "sink.raw"
    speaker = Speaker(SpeakerConfig(backend="command", command=f"head -c 3200 > {sink}"))
    audio = noise(64000)  # 2 s
    began = time.monotonic()
    with pytest.raises(SpeakerError, match=r"mid-sound|lost|pipe"):
        await speaker.play(MONO_16K, pieces(audio, 3200, delay=0.05))
    assert time.monotonic() - began < 1.0
    sink.unlink()
    with pytest.raises(SpeakerError):
        await speaker.play(MONO_16K, pieces(audio, 3200, delay=0.05))
    assert sink.read_bytes() == audio[:3200]  # the command ran again


async def test_a_command_that_fails_once_works_on_the_next_sound(tmp_path):
    sink, flag = tmp_path / "sink.raw", tmp_path / "failed-once"
    command = f"if [ -e {flag} ]; then cat > {sink}; else touch {flag}; exit 3; fi"
    speaker = Speaker(SpeakerConfig(backend="command", command=command))
    audio = noise(6400)
    with pytest.raises(SpeakerError, match="code 3"):
        await speaker.play(MONO_16K, pieces(audio, 3200))
    await speaker.play(MONO_16K, pieces(audio, 3200))
    assert sink.read_bytes() == audio


async def test_play_file_plays_the_frames_of_a_wav(tmp_path, monkeypatch):
    alsa = use_file_alsa(tmp_path, monkeypatch)
    frames = noise(22050)  # 0.5 s at 22050 Hz mono
    path = tmp_path / "sound.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setframerate(22050)
        wav.setsampwidth(2)
        wav.setnchannels(1)
        wav.writeframes(frames)
    speaker = Speaker(SpeakerConfig(backend="pyaudio"))
    began = time.monotonic()
    try:
        await speaker.play_file(path)
    finally:
        await speaker.close()
    assert time.monotonic() - began >= 0.5
    assert alsa.played() == frames


async def test_play_file_of_a_non_wav_raises(tmp_path):
    path = tmp_path / "sound.wav"
    path.write_bytes(b"not a wav file at all")
    speaker = Speaker(SpeakerConfig(backend="file", file=tmp_path / "sink.raw"))
    with pytest.raises(SpeakerError, match="cannot read"):
        await speaker.play_file(path)
    with pytest.raises(SpeakerError, match="cannot read"):
        await speaker.play_file(tmp_path / "missing.wav")


@pytest.mark.parametrize(
    ("width", "dtype", "samples", "expected"),
    [
        (1, "u1", [128, 160, 250, 0], [128, 192, 255, 0]),  # unsigned, silence at 128
        (4, "<i4", [1000, -1000, 2**30, -(2**30)], [2000, -2000, 2**31 - 1, -(2**31)]),
    ],
)
async def test_volume_is_clipped_in_every_sample_width(tmp_path, width, dtype, samples, expected):
    sink = tmp_path / "sink.raw"
    speaker = Speaker(SpeakerConfig(backend="file", file=sink, volume=2.0))
    audio = np.array(samples * 100, dtype).tobytes()
    await speaker.play(AudioFormat(8000, width, 2), pieces(audio, 7))
    assert list(np.frombuffer(sink.read_bytes(), dtype)) == expected * 100
