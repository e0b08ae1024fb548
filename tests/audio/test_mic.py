"""The microphone on every backend; PyAudio through a real file-backed ALSA device."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import wave

import numpy as np
import pytest

from satellite.audio.mic import Mic
from satellite.config import MicConfig
from tests.audio.alsa import use_file_alsa

pytestmark = pytest.mark.timeout(20)

CHUNK_MS = 30
CHUNK_BYTES = 960  # 30 ms of 16 kHz mono s16le
PAD = bytes(9600)  # 0.3 s of silence: the file-backed capture repeats its last period


def mic_of(config: MicConfig) -> Mic:
    return Mic(config, chunk_ms=CHUNK_MS)


def noise(byte_count: int, seed: int = 1) -> bytes:
    """Loud deterministic s16le samples, none of them zero."""
    samples = np.random.default_rng(seed).integers(1, 20000, byte_count // 2, dtype=np.int16)
    return samples.astype("<i2").tobytes()


def samples(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(np.float64)


async def read(mic: Mic, count: int, timeout: float = 5.0) -> bytes:
    """``count`` chunks from the mic (then closed), checking each chunk's size."""
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout), contextlib.aclosing(mic.chunks()) as stream:
            async for chunk in stream:
                assert len(chunk) == CHUNK_BYTES
                chunks.append(chunk)
                if len(chunks) == count:
                    break
    finally:
        await mic.close()
    return b"".join(chunks)


async def test_pyaudio_returns_the_source_bytes_then_silence(tmp_path, monkeypatch):
    audio = noise(16000)
    use_file_alsa(tmp_path, monkeypatch, audio + PAD)
    mic = mic_of(MicConfig(backend="pyaudio"))
    assert mic.description == "default pyaudio device (16000 Hz, 1 ch)"
    data = await read(mic, 30)
    assert data[: len(audio)] == audio
    assert not any(data[len(audio) :])


@pytest.mark.parametrize(("channel", "level"), [(1, 1.0), (0, 0.0), (None, 0.5)])
async def test_pyaudio_48k_stereo_uses_the_configured_channel(
    tmp_path, monkeypatch, channel, level
):
    """A 440 Hz tone in channel 1, silence in channel 0; without ``channel`` they are mixed."""
    t = np.arange(24000) / 48000  # 0.5 s
    tone = np.round(16000 * np.sin(2 * np.pi * 440 * t))
    stereo = np.stack([np.zeros_like(tone), tone], axis=1).astype("<i2").tobytes()
    use_file_alsa(tmp_path, monkeypatch, stereo + bytes(57600))  # + 0.3 s silence
    config = MicConfig(backend="pyaudio", device="default", rate=48000, channels=2, channel=channel)
    out = samples(await read(mic_of(config), 25))
    body = out[800:7200]
    assert np.sqrt(np.mean(body**2)) == pytest.approx(16000 / np.sqrt(2) * level, abs=200)
    if level:
        assert np.argmax(np.abs(np.fft.rfft(body))) * 16000 / len(body) == pytest.approx(440, abs=5)
        assert np.flatnonzero(np.abs(out) > 100)[-1] == pytest.approx(8000, abs=10)


async def test_volume_multiplies_and_clips(tmp_path):
    source = tmp_path / "mic.raw"
    source.write_bytes(np.array([1000, -1000, 20000, -20000] * 240, "<i2").tobytes())
    out = samples(await read(mic_of(MicConfig(backend="file", file=source, volume=2.0)), 1))
    assert list(out[:4]) == [2000, -2000, 32767, -32768]


async def test_pyaudio_is_paced_to_real_time(tmp_path, monkeypatch):
    use_file_alsa(tmp_path, monkeypatch, noise(40000) + PAD)
    mic = mic_of(MicConfig(backend="pyaudio"))
    began = time.monotonic()
    await read(mic, 34)  # 1.02 s of audio
    assert 0.9 <= time.monotonic() - began < 1.5


@pytest.mark.parametrize("command", ["pv -qL 32000 {file}", "cat {file}"])
async def test_command_returns_the_file_bytes(tmp_path, command):
    source = tmp_path / "mic.raw"
    source.write_bytes(noise(16 * CHUNK_BYTES))
    mic = mic_of(MicConfig(backend="command", command=command.format(file=source)))
    assert await read(mic, 16) == source.read_bytes()


@pytest.mark.parametrize("kind", ["wav", "raw"])
async def test_file_returns_its_audio_then_silence_forever(tmp_path, kind):
    audio = noise(8000)
    path = tmp_path / f"mic.{kind}"
    if kind == "wav":
        with wave.open(str(path), "wb") as wav:
            wav.setframerate(16000)
            wav.setsampwidth(2)
            wav.setnchannels(1)
            wav.writeframes(audio)
        config = MicConfig(backend="file", file=path, rate=48000, channels=2)  # header wins
    else:
        path.write_bytes(audio)
        config = MicConfig(backend="file", file=path)
    data = await read(mic_of(config), 20)
    assert data[: len(audio)] == audio
    assert not any(data[len(audio) :])


async def test_a_command_that_exits_is_logged_and_run_again(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="satellite.audio.mic")
    source = tmp_path / "mic.raw"
    source.write_bytes(noise(9600))
    mic = mic_of(MicConfig(backend="command", command=f"head -c 3200 {source}"))
    data = await read(mic, 6)  # each run gives 3 whole chunks
    first_run = source.read_bytes()[: 3 * CHUNK_BYTES]
    assert data == first_run * 2
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("the command exited (code 0)" in w for w in warnings)
    opened = [r for r in caplog.records if "microphone: reading" in r.getMessage()]
    assert len(opened) == 2


async def test_a_missing_device_is_logged_once_and_retried_until_closed(
    tmp_path, monkeypatch, caplog
):
    use_file_alsa(tmp_path, monkeypatch, PAD)
    mic = mic_of(MicConfig(backend="pyaudio", device="no-such-mic"))
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in mic.chunks():
            got.append(chunk)

    reader = asyncio.ensure_future(consume())
    await asyncio.sleep(1.7)  # attempts at 0, 0.5 and 1.5 s
    assert not reader.done() and not got
    began = time.monotonic()
    await mic.close()
    await asyncio.wait_for(reader, 1.0)  # ends, without an exception
    assert time.monotonic() - began < 1.0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "no input device 'no-such-mic' (input devices here: 'default')" in warnings[0]
    assert "'voice-satellite devices'" in warnings[0]


async def test_pyaudio_recovers_when_the_device_comes_back(tmp_path, monkeypatch, caplog):
    alsa = use_file_alsa(tmp_path, monkeypatch, source=None)  # capture cannot open yet
    audio = noise(3 * CHUNK_BYTES)
    mic = mic_of(MicConfig(backend="pyaudio"))

    async def plug_in() -> None:
        await asyncio.sleep(0.2)
        alsa.source.write_bytes(audio + PAD)

    plugging = asyncio.ensure_future(plug_in())
    data = await read(mic, 3)
    await plugging
    assert data == audio
    assert any("unavailable" in r.getMessage() for r in caplog.records)


async def test_close_interrupts_a_pending_read_and_stops_the_command(tmp_path):
    pid_file = tmp_path / "pid"
    mic = mic_of(MicConfig(backend="command", command=f"echo $$ > {pid_file}; exec sleep 30"))
    reader = asyncio.ensure_future(read(mic, 1, timeout=10))
    async with asyncio.timeout(5):
        while not pid_file.exists() or not pid_file.read_text().strip():
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await mic.close()
    assert await asyncio.wait_for(reader, 1.0) == b""
    assert time.monotonic() - began < 1.0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
