"""The satellite role: mic -> front end -> Home Assistant, and HA's audio -> speaker.

HA connects to the satellite (it is the TCP client); only the newest connection is served.
The mic's audio goes through the front end (clean-up, VAD, wake word: ``frontend/``). A
wake word heard on the device (or, with ``wake.engine: none``, speech) opens a pipeline run:
``run-pipeline`` then the audio as ``audio-chunk``s, until ``audio-stop``. What each event
does in each state is in ``state.py``; playback, timers and hooks have modules of their own.
A config reload applies without dropping HA.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from wyoming.asr import Transcript
from wyoming.audio import AudioChunk, AudioStop
from wyoming.error import Error
from wyoming.event import Event
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.snd import Played
from wyoming.timer import TimerCancelled, TimerFinished, TimerStarted, TimerUpdated
from wyoming.vad import VoiceStarted, VoiceStopped
from wyoming.wake import Detection

from ..audio.pcm import SPEECH_FORMAT, AudioFormat
from ..buffers import BoundedQueue
from ..config import SatelliteConfig
from ..frontend.build import build_front_end
from ..frontend.stage import Block
from ..recording import Recorder, Recording
from ..wake.engine import WakeModelError
from ..wyoming_handler import BadRequest
from .devices import MicSource, SpeakerSink
from .handler import SatelliteHandler
from .hooks import run_hook
from .info import satellite_info
from .playback import Playback, Sound
from .state import State, StateMachine, Trigger
from .timers import Ringer, Timers

_LOGGER = logging.getLogger(__name__)
# A run whose mic delivers nothing for this long ends (chunks come every 100 ms), so HA is
# not left listening to a microphone that went away mid-command.
MIC_GAP_S = 2.0
# After the run's audio ended, HA's answer comes within this long or not at all.
ANSWER_WAIT_S = 30.0


@dataclass
class _Run:
    """The pipeline run that receives the mic audio."""

    ends_by: float  # monotonic: max_speech_s after it opened
    command_wait_until: float  # monotonic: a wake word's command must have begun by then
    recording: Recording | None
    chime: asyncio.Future[None] | None = None  # the awake sound; the mic is deaf until it ends
    command_began: bool = False  # the VAD heard the command after the wake word
    ha_listens: bool = False  # engine none: HA heard speech, so HA ends the audio


class Satellite:
    """The mic loop, the state machine and what HA's connection asks of the satellite."""

    def __init__(
        self,
        config: SatelliteConfig,
        name: str,
        mic: MicSource,
        speaker: SpeakerSink | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.mic = mic
        self.recorder = recorder  # keeps each run's audio when recordings are on
        self.front = build_front_end(config)  # raises WakeModelError
        self.machine = StateMachine()
        self.playback = Playback(speaker, config.mute_tail_ms)
        self.timers = Timers()
        self.ringer = Ringer(
            self.playback, config.sounds.timer_finished, config.timer_ring_s, self._ring_over
        )
        self._connection: SatelliteHandler | None = None
        self._run: _Run | None = None
        self._answer_wait: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Future[None]] = set()  # hooks, runs ended by a timer
        self._mic_gap: asyncio.TimerHandle | None = None  # armed while a run streams
        self._closed = False
        self.runs = 0  # pipeline runs started since the daemon started

    @property
    def speaker(self) -> SpeakerSink | None:
        return self.playback.speaker

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def info(self) -> Event:
        return satellite_info(self.config, self.name, self.front).event()

    def status(self) -> str:
        """HA's connection, the runs so far and the timers, for ``systemctl status``."""
        ha = "HA connected" if self._connection is not None else "waiting for HA"
        parts = [f"{ha}, pipeline runs: {self.runs}"]
        if self.ringer.ringing:
            parts.append("a timer is ringing")
        timers = self.timers.status()
        if timers:
            parts.append(timers)
        return "; ".join(parts)

    # --- the state machine ---------------------------------------------------------------

    async def _move(self, trigger: Trigger, why: str = "") -> bool:
        """Follow ``trigger``, acting on the states left and entered; False if ignored."""
        moved = self.machine.move(trigger)
        if moved is None:
            return False
        left, entered = moved
        await self._leave(left, why or trigger.value)
        await self._enter(entered)
        return True

    async def _leave(self, state: State, why: str) -> None:
        if state is State.STREAMING:
            await self._end_run(why)
        elif state is State.RINGING:
            self.ringer.stop()
        elif state is State.AWAITING_ANSWER and self._answer_wait is not None:
            self._answer_wait.cancel()
            self._answer_wait = None

    async def _enter(self, state: State) -> None:
        if state is State.STREAMING:
            await self._begin_run()
        elif state is State.RINGING:
            self.ringer.start()
        elif state is State.AWAITING_ANSWER:
            loop = asyncio.get_running_loop()
            self._answer_wait = loop.call_later(ANSWER_WAIT_S, self._answer_over)
        elif state in (State.IDLE, State.PAUSED):
            self.front.chain.reset()
            if state is State.IDLE and self._active() is None:
                await self._move(Trigger.STOPPED)  # a timer rang on after HA went away

    def _answer_over(self) -> None:
        self._answer_wait = None
        self._in_background(self._move(Trigger.ANSWER_OVER))

    def _ring_over(self) -> None:
        self._in_background(self._move(Trigger.RING_OVER))

    # --- connections -------------------------------------------------------------------

    def handler(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> SatelliteHandler:
        """A handler for a new HA connection (the server's handler factory)."""
        return SatelliteHandler(reader, writer, self)

    async def attach(self, handler: SatelliteHandler) -> None:
        """The newest HA connection wins: the previous one is closed."""
        previous, self._connection = self._connection, handler
        if previous is not None:
            _LOGGER.info("new HA connection from %s replaces %s", handler.peer, previous.peer)
            await self._move(Trigger.STOPPED, "HA reconnected")
            await previous.stop()

    async def started(self) -> None:
        await self._move(Trigger.STARTED)

    async def stopped(self, handler: SatelliteHandler, why: str) -> None:
        """HA paused the satellite or went away."""
        if self._connection is handler:
            await self._move(Trigger.STOPPED, why)

    async def detach(self, handler: SatelliteHandler) -> None:
        if self._connection is handler:
            await self.stopped(handler, "HA went away")
            self._connection = None
            _LOGGER.info("HA disconnected (%s)", handler.peer)

    def _active(self) -> SatelliteHandler | None:
        connection = self._connection
        return connection if connection is not None and connection.running else None

    # --- mic -> front end -> HA ----------------------------------------------------------

    async def run_mic(self) -> None:
        """Feed the mic through the front end until closed; a bug here is logged, not fatal."""
        while not self._closed:
            try:
                async for chunk in self.mic.chunks():
                    await self._take(chunk)
                    self._watch_mic_gap()
            except Exception:
                _LOGGER.exception("the mic loop failed; restarting it")
                await asyncio.sleep(1.0)

    async def _take(self, chunk: bytes) -> None:
        state = self.machine.state
        if state is State.PAUSED or state is State.PLAYING:
            return
        if self.playback.deaf:  # the satellite would hear itself (the awake chime included)
            self.front.chain.reset()
            return
        wake = self.front.wake
        if wake is not None:
            wake.listening = state is not State.STREAMING
        block = await self.front.chain.process(chunk)
        if self.machine.state is State.STREAMING:
            await self._stream(block)
        elif wake is None:
            await self._open_on_speech(block)
        elif block.detections:
            await self._on_wake_word(block)

    async def _on_wake_word(self, block: Block) -> None:
        name = block.detections[0]
        if self.machine.state is State.RINGING:
            _LOGGER.info("wake word %s: the timer stops ringing", name)
            await self._move(Trigger.WAKE)
            return
        connection = self._active()
        if connection is None or self.machine.next_state(Trigger.WAKE) is not State.STREAMING:
            return
        _LOGGER.info("wake word %s: starting a pipeline run", name)
        await connection.send(Detection(name=name, timestamp=block.position_ms).event())
        await self._move(Trigger.WAKE)
        run = self._run
        if run is not None:
            run.chime = self.playback.play_file(self.config.sounds.awake)
            self.front.vad.reset()  # the VAD now waits for the command

    async def _open_on_speech(self, block: Block) -> None:
        """Engine none: the VAD gate's speech opens a run, with its pre-roll."""
        for event in block.voice:
            if event.kind == "start":
                if self._active() is None or not await self._move(Trigger.WAKE):
                    return
                _LOGGER.info("speech detected: starting a pipeline run")
                await self._send_audio(event.audio)
            elif self._run is not None and event.audio:
                await self._send_audio(event.audio)
            if event.kind == "end" and self._run is not None:
                await self._move(Trigger.AUDIO_ENDED, f"end of speech ({event.reason})")

    async def _stream(self, block: Block) -> None:
        """A run is open: the audio goes to HA until the command ends."""
        run = self._run
        assert run is not None
        if self.front.wake is None and not run.ha_listens:
            await self._open_on_speech(block)  # the gate that opened the run ends it
            return
        await self._send_audio(block.audio)
        now = time.monotonic()
        ended = next((event for event in block.voice if event.kind == "end"), None)
        if any(event.kind == "start" for event in block.voice):
            run.command_began = True
        if now >= run.ends_by:
            await self._move(Trigger.AUDIO_ENDED, "max-length")
        elif run.ha_listens:
            return  # HA ends the audio
        elif ended is not None and run.command_began:
            await self._move(Trigger.AUDIO_ENDED, f"end of speech ({ended.reason})")
        elif not run.command_began and now >= run.command_wait_until:
            await self._move(Trigger.AUDIO_ENDED, "no command after the wake word")

    async def _send_audio(self, pcm: bytes) -> None:
        connection = self._active()
        if connection is None or self._run is None:
            return
        run = self._run
        if run.chime is not None and not run.chime.done():
            return
        fmt = SPEECH_FORMAT
        chunk = AudioChunk(rate=fmt.rate, width=fmt.width, channels=fmt.channels, audio=pcm)
        if run.recording is not None:
            run.recording.add(pcm)
        await connection.send(chunk.event())

    # --- runs ----------------------------------------------------------------------------

    async def _begin_run(self) -> None:
        """On entering STREAMING: ``run-pipeline`` to HA."""
        config = self.config
        now = time.monotonic()
        recording = None
        if self.recorder is not None:
            recording = self.recorder.start("satellite", SPEECH_FORMAT)
        self._run = _Run(
            ends_by=now + config.vad.max_speech_s,
            command_wait_until=now + config.wake.command_wait_s,
            recording=recording,
        )
        self.runs += 1
        local_wake = self.front.wake is not None
        start = PipelineStage.ASR if local_wake else PipelineStage(config.start_stage)
        end = PipelineStage.TTS if self.speaker is not None else PipelineStage.HANDLE
        connection = self._active()
        if connection is not None:
            await connection.send(
                RunPipeline(start_stage=start, end_stage=end, restart_on_end=False).event()
            )

    async def _end_run(self, why: str) -> None:
        """On leaving STREAMING: ``audio-stop`` to HA."""
        run, self._run = self._run, None
        self._watch_mic_gap()
        self.front.chain.reset()
        if run is None:
            return
        if run.recording is not None:
            run.recording.finish()
        connection = self._active()
        if connection is not None:
            _LOGGER.info("audio for the pipeline run ended: %s", why)
            await connection.send(AudioStop().event())

    def _watch_mic_gap(self) -> None:
        """While a run streams, each chunk pushes back the end of a mic that went quiet."""
        if self._mic_gap is not None:
            self._mic_gap.cancel()
            self._mic_gap = None
        if self._run is not None:
            loop = asyncio.get_running_loop()
            self._mic_gap = loop.call_later(MIC_GAP_S, self._on_mic_gap)

    def _on_mic_gap(self) -> None:
        self._mic_gap = None
        why = f"no audio from the microphone for {MIC_GAP_S:g} s"
        self._in_background(self._move(Trigger.AUDIO_ENDED, why))

    # --- lifecycle ---------------------------------------------------------------------

    async def reconfigure(self, config: SatelliteConfig) -> None:
        """Apply a reloaded config (same server address); HA stays connected."""
        old, self.config = self.config, config
        if (config.mic, config.vad, config.wake) != (old.mic, old.vad, old.wake):
            await self._move(Trigger.AUDIO_ENDED, "the settings changed")
            try:
                front = build_front_end(config)
            except WakeModelError as exc:
                _LOGGER.error("%s; keeping the previous wake word", exc)
            else:
                old_front, self.front = self.front, front
                await old_front.chain.close()
        if config.mic != old.mic:
            from ..audio.mic import Mic

            # The mic loop moves to the new mic when the old one's chunks end.
            old_mic, self.mic = self.mic, Mic(config.mic)
            _LOGGER.info("microphone: now %s", self.mic.description)
            await old_mic.close()
        if config.speaker != old.speaker:
            from ..audio.speaker import Speaker

            speaker = Speaker(config.speaker) if config.speaker is not None else None
            self.playback.switch_speaker(speaker)
        self.playback.mute_tail_ms = config.mute_tail_ms
        self.ringer.configure(config.sounds.timer_finished, config.timer_ring_s)

    async def drain(self, timeout: float) -> None:
        """Stop listening (HA gets ``audio-stop`` for a run in progress) and give the sound
        playing up to ``timeout`` seconds to finish."""
        self._closed = True
        await self.mic.close()
        await self._move(Trigger.AUDIO_ENDED, "shutting down")
        self.ringer.stop()
        await self.playback.wait_idle(timeout)

    async def close(self) -> None:
        self._closed = True
        self.ringer.stop()
        if self._answer_wait is not None:
            self._answer_wait.cancel()
        for task in self._background:
            task.cancel()
        await self.mic.close()
        await self.playback.close()
        await self.front.chain.close()

    # --- HA -> satellite ------------------------------------------------------------------

    async def on_ha_event(self, connection: SatelliteHandler, event: Event) -> None:
        """Events HA sends while the satellite is running, other than audio."""
        command = self.config.events.get(event.type)
        if command:
            self._in_background(run_hook(command, event))
        if Transcript.is_type(event.type) or VoiceStopped.is_type(event.type):
            _LOGGER.info("HA: %s %s", event.type, event.data)
            await self._move(Trigger.AUDIO_ENDED, event.type)
            if Transcript.is_type(event.type):
                self.playback.play_file(self.config.sounds.done)
        elif Error.is_type(event.type):
            # HA's errors include everyday ones (no wake word, nothing recognized).
            _LOGGER.info("HA: %s %s", event.type, event.data)
            await self._move(Trigger.AUDIO_ENDED, event.type)
            await self._move(Trigger.ANSWER_OVER)
        elif Detection.is_type(event.type) or VoiceStarted.is_type(event.type):
            _LOGGER.info("HA: %s %s", event.type, event.data)  # engine none: HA listens
            if self._run is not None and self.front.wake is None:
                self._run.ha_listens = True
            if Detection.is_type(event.type):
                self.playback.play_file(self.config.sounds.awake, deafen=False)
        elif not await self._on_timer(event):
            _LOGGER.info("HA: %s %s", event.type, event.data)

    async def _on_timer(self, event: Event) -> bool:
        """A timer event kept or rung; False for any other event."""
        try:
            if TimerStarted.is_type(event.type):
                self.timers.started(TimerStarted.from_event(event))
            elif TimerUpdated.is_type(event.type):
                self.timers.updated(TimerUpdated.from_event(event))
            elif TimerCancelled.is_type(event.type):
                self.timers.cancelled(str(TimerCancelled.from_event(event).id))
            elif TimerFinished.is_type(event.type):
                label = self.timers.finished(str(TimerFinished.from_event(event).id))
                _LOGGER.info("%s finished: ringing", label)
                await self._move(Trigger.TIMER_FINISHED, "a timer finished")
            else:
                return False
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"missing or unusable field ({type(exc).__name__}: {exc})") from None
        return True

    def start_sound(self, connection: SatelliteHandler, fmt: AudioFormat) -> Sound:
        """HA began streaming audio to play; ``played`` is sent when it has finished."""
        if self.machine.state in (State.IDLE, State.PAUSED):  # not an answer: announced
            self.playback.play_file(self.config.sounds.announce)
        sound = Sound(format=fmt, audio=BoundedQueue(connection.limits.max_buffer_bytes))
        self._in_background(self._move(Trigger.SOUND_STARTED, "HA's audio began"))

        async def heard() -> None:
            if connection.running:
                await connection.send(Played().event())
            await self._move(Trigger.PLAYED)

        self.playback.play_stream(sound, heard)
        return sound

    def _in_background(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
