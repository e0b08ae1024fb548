"""PCM conversion: what the provider receives from arbitrary client audio."""

import math
import struct

import numpy as np
import pytest

from satellite.audio.pcm import SPEECH_FORMAT, AudioFormat, PcmConverter


def tone(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> bytes:
    count = int(rate * seconds)
    samples = [int(12000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(count)]
    frames = [s for s in samples for _ in range(channels)]
    return struct.pack(f"<{len(frames)}h", *frames)


def test_same_format_passes_bytes_through_even_when_cut_oddly():
    audio = tone(16000, 0.2)
    converter = PcmConverter(SPEECH_FORMAT, SPEECH_FORMAT)
    out = b"".join(converter.convert(audio[i : i + 333]) for i in range(0, len(audio), 333))
    assert out == audio


def test_odd_chunks_are_buffered_to_whole_samples():
    converter = PcmConverter(SPEECH_FORMAT, SPEECH_FORMAT)
    assert converter.convert(b"\x01") == b""
    assert converter.convert(b"\x02\x03") == b"\x01\x02"
    assert converter.convert(b"\x04") == b"\x03\x04"


@pytest.mark.parametrize("source_rate", [8000, 22050, 44100, 48000])
def test_resampling_keeps_duration_and_pitch(source_rate):
    audio = tone(source_rate, 1.0, channels=2)
    converter = PcmConverter(AudioFormat(source_rate, 2, 2), SPEECH_FORMAT)
    out = b"".join(converter.convert(audio[i : i + 1001]) for i in range(0, len(audio), 1001))
    samples = np.frombuffer(out, dtype=np.int16).astype(float)
    assert abs(len(samples) - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(samples))
    peak_hz = np.argmax(spectrum) * 16000 / len(samples)
    assert abs(peak_hz - 440) < 3
    assert 11000 < np.max(np.abs(samples)) <= 12001


def test_width_conversion_8_and_32_bit():
    to_8 = PcmConverter(SPEECH_FORMAT, AudioFormat(16000, 1, 1))
    assert to_8.convert(struct.pack("<3h", 0, 32767, -32768)) == bytes([128, 255, 0])
    to_32 = PcmConverter(SPEECH_FORMAT, AudioFormat(16000, 4, 1))
    assert struct.unpack("<2i", to_32.convert(struct.pack("<2h", 16384, -16384))) == (
        1 << 30,
        -(1 << 30),
    )


def test_unsupported_format_is_rejected():
    with pytest.raises(ValueError, match="width"):
        PcmConverter(AudioFormat(16000, 3, 1), SPEECH_FORMAT)
