"""A file-backed ALSA device: a real PortAudio -> ALSA path on machines without a sound card.

A self-contained ALSA config (``ALSA_CONFIG_PATH``) defines only ``pcm.!default``: capture
reads the bytes of a raw source file, playback writes raw bytes to a sink file, both through
the ``file`` plugin over a ``null`` slave. Quirks:

- The device is not real-time: reads and writes complete at once.
- After the end of the source, capture repeats the source's last period (it does not return
  zeros): end a source with some silence (0.3 s is plenty) to get silence after it.
- Each playback stream truncates the sink: it holds the last stream's audio only.
- ALSA and PortAudio read the config when PyAudio() initializes, so ``use_file_alsa`` must
  run before the Mic or Speaker under test opens its device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

_CONFIG = """\
pcm.!default {{
  type asym
  playback.pcm {{
    type file
    slave.pcm {{ type null }}
    format "raw"
    file "{sink}"
  }}
  capture.pcm {{
    type file
    slave.pcm {{ type null }}
    format "raw"
    file "/dev/null"
    infile "{source}"
  }}
}}
"""


@dataclass(frozen=True)
class FileAlsa:
    source: Path  # raw PCM that capture returns (write it before the device opens)
    sink: Path  # raw PCM that playback wrote

    def played(self) -> bytes:
        return self.sink.read_bytes() if self.sink.exists() else b""


def use_file_alsa(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: bytes | None = b""
) -> FileAlsa:
    """Make the default ALSA device file-backed for this test; ``source=None`` leaves the
    source file missing (capture cannot open)."""
    alsa = FileAlsa(source=tmp_path / "alsa-source.raw", sink=tmp_path / "alsa-sink.raw")
    if source is not None:
        alsa.source.write_bytes(source)
    config = tmp_path / "asound.conf"
    config.write_text(_CONFIG.format(source=alsa.source, sink=alsa.sink))
    monkeypatch.setenv("ALSA_CONFIG_PATH", str(config))  # restored after the test
    return alsa
