"""Debug recordings: the newest utterances kept as WAV files, to tune the VAD and recognition.

A file is named after the utterance's start (UTC, sortable) and its kind, e.g.
``20261130T101500.123Z-satellite.wav``. Only files named that way are ever deleted, so the
directory may hold other files.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import wave
from datetime import UTC, datetime
from pathlib import Path

from .audio.pcm import AudioFormat
from .bridge import run_blocking
from .config import RecordingsConfig

_LOGGER = logging.getLogger(__name__)
MAX_SECONDS = 60.0  # audio kept in memory per recording; the rest is not recorded
_OURS = re.compile(r"^\d{8}T\d{6}\.\d{3}Z-[a-z]+(-\d+)?\.wav$")


class Recorder:
    """Hands out recordings when ``recordings.dir`` is set, and keeps the newest ``keep``."""

    def __init__(self, config: RecordingsConfig) -> None:
        self.config = config
        self._saving: set[asyncio.Task[Path | None]] = set()

    def start(self, kind: str, fmt: AudioFormat) -> Recording | None:
        """A recording of one utterance in ``fmt`` starting now; None when recordings are off.
        ``kind`` (lowercase letters) ends the file name: "satellite", "asr"."""
        if self.config.dir is None:
            return None
        return Recording(self, kind, fmt)

    def _save_in_background(self, recording: Recording) -> None:
        task = asyncio.ensure_future(recording.save())
        self._saving.add(task)
        task.add_done_callback(self._saving.discard)

    async def wait_saved(self) -> None:
        """Return once the recordings finished so far are written (at shutdown)."""
        await asyncio.gather(*self._saving, return_exceptions=True)

    def write(self, name: str, fmt: AudioFormat, audio: bytes) -> Path:
        """Blocking: write the file (readable only by the daemon's user) under a temporary
        name, make room among the newest ``keep``, then name it, so a reader never sees a
        partial file or more recordings than ``keep`` (while saves do not overlap)."""
        directory = self.config.dir
        assert directory is not None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".", suffix=".partial", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as file, wave.open(file, "wb") as wav:
                wav.setframerate(fmt.rate)
                wav.setsampwidth(fmt.width)
                wav.setnchannels(fmt.channels)
                wav.writeframes(audio)
            self._prune(directory, self.config.keep - 1)
            stem = name.removesuffix(".wav")
            for attempt in range(1, 100):
                path = directory / (name if attempt == 1 else f"{stem}-{attempt}.wav")
                with contextlib.suppress(FileExistsError):  # never replaces a recording
                    os.link(temporary, path)
                    return path
            raise FileExistsError(f"{directory / name} and 98 more exist")
        finally:
            os.unlink(temporary)

    def _prune(self, directory: Path, keep: int) -> None:
        ours = sorted(name for name in os.listdir(directory) if _OURS.match(name))
        for name in ours[: max(0, len(ours) - keep)]:
            with contextlib.suppress(FileNotFoundError):  # another save pruned it first
                (directory / name).unlink()


class Recording:
    """The audio of one utterance, kept in memory (at most ``MAX_SECONDS``) until saved."""

    def __init__(self, recorder: Recorder, kind: str, fmt: AudioFormat) -> None:
        self._recorder = recorder
        self.format = fmt
        started = datetime.now(UTC)
        self.name = f"{started:%Y%m%dT%H%M%S}.{started.microsecond // 1000:03d}Z-{kind}.wav"
        self._audio = bytearray()
        self._limit = int(MAX_SECONDS * fmt.rate) * fmt.frame_bytes
        self._saved = False

    def add(self, pcm: bytes) -> None:
        room = self._limit - len(self._audio)
        if room > 0:
            self._audio += pcm[:room]

    async def save(self) -> Path | None:
        """Write the file off the event loop (once); None if it cannot be written, which is
        logged as a warning (a full disk must not fail a request)."""
        if self._saved:
            return None
        self._saved = True
        audio, self._audio = bytes(self._audio), bytearray()
        try:
            path = await run_blocking(self._recorder.write, self.name, self.format, audio)
        except (OSError, wave.Error) as exc:
            _LOGGER.warning("cannot save the recording %s: %s", self.name, exc)
            return None
        _LOGGER.debug("recorded %s (%.1f s)", path, self.format.seconds(len(audio)))
        return path

    def finish(self) -> None:
        """The utterance has ended: save it in the background, without waiting."""
        self._recorder._save_in_background(self)
