"""The satellite's states and the one table of what moves it from one to another.

```
 PAUSED                        --started-->          IDLE
 IDLE, AWAITING_ANSWER         --wake-->             STREAMING (a new command replaces the last)
 STREAMING                     --audio ended-->      AWAITING_ANSWER
 IDLE, STREAMING, AWAITING_... --sound started-->    PLAYING (an answer, or an announcement)
 PLAYING                       --played-->           IDLE
 AWAITING_ANSWER               --answer over-->      IDLE
 any                           --timer finished-->   RINGING
 RINGING                       --wake, ring over-->  IDLE (then PAUSED if HA has gone)
 any but RINGING               --stopped-->          PAUSED (a ringing timer rings on)
```
The satellite acts on entering and leaving states (``Satellite._enter`` / ``_leave``): it
opens the run on entering STREAMING, sends ``audio-stop`` on leaving it, rings on entering
RINGING and stops on leaving it. A trigger the table does not list for the current state
changes nothing.
"""

from __future__ import annotations

import logging
from enum import Enum

_LOGGER = logging.getLogger(__name__)


class State(Enum):
    PAUSED = "paused"  # no HA connection, or HA paused the satellite: nothing reaches HA
    IDLE = "idle"  # listening for the wake word (engine none: for speech)
    STREAMING = "streaming"  # a pipeline run receives the mic audio
    AWAITING_ANSWER = "awaiting the answer"  # audio-stop sent; HA transcribes and answers
    PLAYING = "playing"  # HA's audio (answer or announcement) plays; the mic is deaf
    RINGING = "ringing"  # a finished timer rings until the wake word or timer_ring_s


class Trigger(Enum):
    STARTED = "HA started the satellite"
    STOPPED = "HA paused the satellite or went away"
    WAKE = "wake word (engine none: speech)"
    AUDIO_ENDED = "the run's audio ended"
    SOUND_STARTED = "HA's audio began"
    PLAYED = "HA's audio was heard"
    ANSWER_OVER = "no answer is coming"
    TIMER_FINISHED = "a timer finished"
    RING_OVER = "the ringing ended"


S, T = State, Trigger
TRANSITIONS: dict[tuple[State, Trigger], State] = {
    (S.PAUSED, T.STARTED): S.IDLE,
    (S.IDLE, T.WAKE): S.STREAMING,
    (S.AWAITING_ANSWER, T.WAKE): S.STREAMING,  # a new command replaces the last
    (S.RINGING, T.WAKE): S.IDLE,  # the wake word silences a timer and opens no run
    (S.STREAMING, T.AUDIO_ENDED): S.AWAITING_ANSWER,
    (S.IDLE, T.SOUND_STARTED): S.PLAYING,  # an announcement
    (S.STREAMING, T.SOUND_STARTED): S.PLAYING,  # an answer that starts early
    (S.AWAITING_ANSWER, T.SOUND_STARTED): S.PLAYING,
    (S.PLAYING, T.PLAYED): S.IDLE,
    (S.AWAITING_ANSWER, T.ANSWER_OVER): S.IDLE,
    (S.RINGING, T.RING_OVER): S.IDLE,
    **{(state, T.TIMER_FINISHED): S.RINGING for state in S if state is not S.RINGING},
    **{(state, T.STOPPED): S.PAUSED for state in S if state not in (S.PAUSED, S.RINGING)},
}


class StateMachine:
    def __init__(self) -> None:
        self.state = State.PAUSED

    def next_state(self, trigger: Trigger) -> State | None:
        """Where ``trigger`` leads from the current state; None: it changes nothing."""
        return TRANSITIONS.get((self.state, trigger))

    def move(self, trigger: Trigger) -> tuple[State, State] | None:
        """Follow ``trigger``; returns (left, entered), or None when it changes nothing."""
        target = self.next_state(trigger)
        if target is None:
            _LOGGER.debug("%s: ignored in state %s", trigger.value, self.state.value)
            return None
        left, self.state = self.state, target
        _LOGGER.debug("%s: %s -> %s", trigger.value, left.value, target.value)
        return left, target
