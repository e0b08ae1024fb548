"""HA's timers as the satellite keeps them, and the ringing of a finished one.

HA owns the timers; the satellite remembers what HA told it (started, updated, cancelled,
finished) so the log and ``systemctl status`` can say what is running, and it rings a
finished timer until the wake word is heard or ``timer_ring_s`` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wyoming.timer import TimerStarted, TimerUpdated

from ..audio.tones import TONE_FORMAT, timer_tone
from .playback import Playback

_LOGGER = logging.getLogger(__name__)
RING_PAUSE_S = 1.0  # between two rings: room for the wake word


def clock(seconds: float) -> str:
    """5:00, 1:02:03."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


@dataclass
class Timer:
    id: str
    name: str | None
    total_s: float
    left_s: float  # when ``since`` was taken
    since: float  # monotonic
    active: bool = True

    def seconds_left(self, now: float) -> float:
        return max(0.0, self.left_s - (now - self.since)) if self.active else self.left_s

    @property
    def label(self) -> str:
        return f"{self.name} timer" if self.name else "timer"

    def describe(self, now: float) -> str:
        """The timer as people say it: "kitchen timer 5:00, 3:12 left" (", paused")."""
        paused = ", paused" if not self.active else ""
        return f"{self.label} {clock(self.total_s)}, {clock(self.seconds_left(now))} left{paused}"


def _seconds(value: float | str) -> float:
    seconds = float(value)
    if not 0 <= seconds < 10**9:
        raise ValueError(f"{value!r} is not a number of seconds")
    return seconds


class Timers:
    def __init__(self) -> None:
        self._timers: dict[str, Timer] = {}

    def started(self, event: TimerStarted) -> Timer:
        """Raises ValueError or TypeError for fields that are not what HA sends."""
        now = time.monotonic()
        total = _seconds(event.total_seconds)
        name = str(event.name) if event.name else None
        timer = Timer(str(event.id), name, total, total, now)
        self._timers[timer.id] = timer
        _LOGGER.info("timer started: %s", timer.describe(now))
        return timer

    def updated(self, event: TimerUpdated) -> None:
        """Raises ValueError or TypeError for fields that are not what HA sends."""
        timer_id, left = str(event.id), _seconds(event.total_seconds)
        timer = self._timers.get(timer_id)
        if timer is None:  # started before this connection: learn it now
            timer = self._timers[timer_id] = Timer(timer_id, None, left, left, 0)
        # HA sends the seconds left, and whether the timer runs.
        timer.left_s, timer.active = left, bool(event.is_active)
        timer.since = time.monotonic()
        _LOGGER.info("timer updated: %s", timer.describe(timer.since))

    def cancelled(self, timer_id: str) -> None:
        timer = self._timers.pop(timer_id, None)
        if timer is not None:
            _LOGGER.info("timer cancelled: %s", timer.describe(time.monotonic()))

    def finished(self, timer_id: str) -> str:
        """Forget the timer; returns what to call it in the log."""
        timer = self._timers.pop(timer_id, None)
        if timer is None:
            return f"timer {timer_id}"
        return timer.label if timer.name else f"{timer.label} {clock(timer.total_s)}"

    def status(self) -> str:
        """The running timers, soonest first ("" when none)."""
        now = time.monotonic()
        timers = sorted(self._timers.values(), key=lambda t: t.seconds_left(now))
        return "; ".join(timer.describe(now) for timer in timers)


class Ringer:
    """Plays the timer sound again and again (the mic stays open, so the wake word can
    stop it) until ``stop()`` or ``ring_s`` has passed; then calls ``over``."""

    def __init__(
        self, playback: Playback, sound: Path | None, ring_s: float, over: Callable[[], None]
    ) -> None:
        self._playback = playback
        self._sound = sound
        self._ring_s = ring_s
        self._over = over
        self._task: asyncio.Task[None] | None = None

    @property
    def ringing(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.ringing:
            self._task = asyncio.ensure_future(self._ring())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def configure(self, sound: Path | None, ring_s: float) -> None:
        self._sound, self._ring_s = sound, ring_s

    async def _ring(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._ring_s):
                while True:
                    if self._sound is not None:
                        playing = self._playback.play_file(self._sound, deafen=False)
                    else:
                        playing = self._playback.play_pcm(TONE_FORMAT, timer_tone(), deafen=False)
                    try:
                        await asyncio.shield(playing)
                    except asyncio.CancelledError:
                        playing.cancel()  # stopped: cut the sound short
                        raise
                    await asyncio.sleep(RING_PAUSE_S)
        _LOGGER.info("the timer stopped ringing after %s", clock(self._ring_s))
        self._task = None
        self._over()
