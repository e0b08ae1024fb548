"""What the mic device costs by itself: PyAudio reading 100 ms blocks in real time, as the
daemon's mic does, with nothing else in the process. Prints CPU seconds per minute of audio.

The benchmarks' PyAudio mic is a file-backed ALSA device (no sound card here); its read path
costs far more per call than the daemon's own work, so this floor is printed next to them.
Run (ALSA_CONFIG_PATH set to the device's config): python -m bench.device_floor SECONDS
"""

from __future__ import annotations

import sys
import time

import pyaudio

BLOCK_FRAMES = 1600  # 100 ms at 16 kHz


def main() -> None:
    seconds = float(sys.argv[1])
    audio = pyaudio.PyAudio()
    stream = audio.open(
        rate=16000,
        channels=1,
        format=pyaudio.paInt16,
        input=True,
        frames_per_buffer=BLOCK_FRAMES,
    )
    start, cpu_start, blocks = time.monotonic(), time.process_time(), 0
    while time.monotonic() - start < seconds:
        stream.read(BLOCK_FRAMES, exception_on_overflow=False)
        blocks += 1
        time.sleep(max(0.0, start + blocks * BLOCK_FRAMES / 16000 - time.monotonic()))
    cpu = time.process_time() - cpu_start
    stream.close()
    audio.terminate()
    print(f"{cpu / (time.monotonic() - start) * 60:.3f}")


if __name__ == "__main__":
    main()
