"""Voice activity gate: turns a mic stream into pipeline runs (start, audio..., end).

Pure and synchronous: the caller feeds 16 kHz mono s16le chunks of any size and forwards
the returned events.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Literal

import webrtcvad

from ..config import VadConfig
from .pcm import SPEECH_FORMAT


@dataclass(frozen=True)
class GateEvent:
    """``start`` carries the pre-roll plus the voiced audio that opened the gate, ``audio``
    the audio that follows, ``end`` nothing; its reason is "silence" or "max-length"."""

    kind: Literal["start", "audio", "end"]
    audio: bytes = b""
    reason: str = ""


class VadGate:
    """Classifies frames with webrtcvad and opens a run when speech starts.

    Trigger rule: while idle, the gate opens on a voiced frame once the voiced frames within
    the last 2 × min_speech_ms add up to min_speech_ms (at least one frame). The window, not
    a run of consecutive frames, keeps brief unvoiced dips inside a word from restarting the
    count. A click counts as long as webrtcvad reports it, and webrtcvad's decisions outlast
    a sound: a 30 ms click reads as 90-150 ms (the most in modes 0-1 with 30 ms frames).
    The run's audio begins preroll_ms (rounded up to whole frames) before the first voiced
    frame of that window, so the first syllable is not clipped.

    A run ends after hangover_ms of continuous unvoiced frames (which are still streamed), or
    once it has streamed max_speech_s of audio (rounded up to whole frames), the ``start``
    audio included.
    """

    def __init__(self, config: VadConfig) -> None:
        self._vad = webrtcvad.Vad(config.aggressiveness)
        frame_ms = config.frame_ms
        frame_samples = SPEECH_FORMAT.rate * frame_ms // 1000
        self._frame_bytes = frame_samples * SPEECH_FORMAT.width
        self._required = max(1, math.ceil(config.min_speech_ms / frame_ms))
        window = max(self._required + 1, math.ceil(2 * config.min_speech_ms / frame_ms))
        self._preroll_frames = math.ceil(config.preroll_ms / frame_ms)
        self._hangover_frames = max(1, math.ceil(config.hangover_ms / frame_ms))
        max_frames = math.ceil(round(config.max_speech_s * SPEECH_FORMAT.rate) / frame_samples)
        self._max_bytes = max_frames * self._frame_bytes
        # Idle: recent frames (pre-roll plus trigger window) and the window's voiced flags.
        self._history: deque[bytes] = deque(maxlen=self._preroll_frames + window)
        self._recent: deque[bool] = deque(maxlen=window)
        self._voiced = 0  # voiced frames in _recent
        self._pending = b""  # the start of an incomplete frame
        self._active = False
        self.voiced_frames = 0  # of the frames the last ``process`` call classified
        self.frames = 0
        self._run_bytes = 0  # audio streamed in the current run
        self._unvoiced = 0  # consecutive unvoiced frames in the current run

    @property
    def active(self) -> bool:
        """True between ``start`` and ``end``."""
        return self._active

    def reset(self) -> None:
        """Back to idle, forgetting the pre-roll and any partial speech (no ``end``)."""
        self._active = False
        self._pending = b""
        self._clear_window()

    def process(self, pcm: bytes) -> list[GateEvent]:
        data = self._pending + pcm
        size = self._frame_bytes
        usable = len(data) - len(data) % size
        self._pending = data[usable:]
        events: list[GateEvent] = []
        sent = 0  # while active, data before this offset was already emitted
        self.voiced_frames, self.frames = 0, usable // size
        for offset in range(0, usable, size):
            frame = data[offset : offset + size]
            voiced = self._vad.is_speech(frame, SPEECH_FORMAT.rate)
            self.voiced_frames += voiced
            if self._active:
                self._run_bytes += size
                self._unvoiced = 0 if voiced else self._unvoiced + 1
            elif self._opens(frame, voiced):
                events.append(GateEvent("start", self._start_run()))
                sent = offset + size
            else:
                continue
            if self._unvoiced >= self._hangover_frames:
                reason = "silence"
            elif self._run_bytes >= self._max_bytes:
                reason = "max-length"
            else:
                continue
            if offset + size > sent:
                events.append(GateEvent("audio", data[sent : offset + size]))
            events.append(GateEvent("end", reason=reason))
            self._active = False
        if self._active and usable > sent:
            events.append(GateEvent("audio", data[sent:usable]))
        return events

    def _opens(self, frame: bytes, voiced: bool) -> bool:
        recent = self._recent
        if len(recent) == recent.maxlen:
            self._voiced -= recent[0]
        recent.append(voiced)
        self._voiced += voiced
        self._history.append(frame)
        return voiced and self._voiced >= self._required

    def _start_run(self) -> bytes:
        """The pre-roll and trigger frames; the run counts them towards max_speech_s."""
        first_voiced = len(self._history) - len(self._recent) + self._recent.index(True)
        audio = b"".join(islice(self._history, max(0, first_voiced - self._preroll_frames), None))
        self._clear_window()
        self._active = True
        self._run_bytes = len(audio)
        self._unvoiced = 0
        return audio

    def _clear_window(self) -> None:
        self._history.clear()
        self._recent.clear()
        self._voiced = 0
