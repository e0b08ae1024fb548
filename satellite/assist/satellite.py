"""The satellite role: mic -> VAD gate -> Home Assistant, and HA's audio -> speaker.

HA connects to the satellite (it is the TCP client). Only the newest connection is served.
Voiced audio opens a pipeline run (``run-pipeline`` then ``audio-chunk``s, the pre-roll
first); the run's audio ends with ``audio-stop`` when HA reports the transcript (or the end
of speech), or when the gate's hangover expires. While anything plays, the mic is gated so
the satellite never hears itself. A config reload applies without dropping HA: a run in
progress keeps its gate, and a new mic or speaker takes over from the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event
from wyoming.info import Attribution, Describe, Info
from wyoming.info import Satellite as SatelliteInfo
from wyoming.ping import Ping, Pong
from wyoming.pipeline import PipelineStage, RunPipeline
from wyoming.satellite import PauseSatellite, RunSatellite
from wyoming.snd import Played

from .. import __version__
from ..audio.mic import Mic
from ..audio.pcm import SPEECH_FORMAT, AudioFormat
from ..audio.speaker import Speaker, SpeakerError
from ..audio.vad import GateEvent, VadGate
from ..buffers import BoundedQueue, BufferFull
from ..config import SatelliteConfig
from ..recording import Recorder, Recording
from ..wyoming_handler import GuardedHandler, audio_format_of

_LOGGER = logging.getLogger(__name__)
_ATTRIBUTION = Attribution(name="voice-satellite", url="https://github.com/voice-satellite")
# Events HA sends during a run that are only worth a log line (and an optional hook).
_LOGGED_EVENTS = {
    "transcribe",
    "synthesize",
    "timer-started",
    "timer-updated",
    "timer-cancelled",
}
_END_OF_SPEECH_EVENTS = {"transcript", "voice-stopped", "error"}
# A run whose mic delivers nothing for this long ends (chunks come every 100 ms), so HA is
# not left listening to a microphone that went away mid-command.
MIC_GAP_S = 2.0


def satellite_info(config: SatelliteConfig, name: str) -> Info:
    return Info(
        satellite=SatelliteInfo(
            name=name,
            description=f"voice-satellite {name}",
            attribution=_ATTRIBUTION,
            installed=True,
            version=__version__,
            area=config.area,
            has_vad=True,
        )
    )


@dataclass
class _Sound:
    """One sound HA streams to the satellite (TTS answer or announcement)."""

    format: AudioFormat
    audio: BoundedQueue[bytes]  # what waits for the speaker

    def chunks(self) -> AsyncIterator[bytes]:
        return self.audio.pieces()


class Satellite:
    """State shared by every HA connection: the mic loop, the gate, playback and muting."""

    def __init__(
        self,
        config: SatelliteConfig,
        name: str,
        mic: Mic,
        speaker: Speaker | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.config = config
        self.name = name
        self.mic = mic
        self.speaker = speaker
        self.recorder = recorder  # keeps each run's audio when recordings are on
        self._recording: Recording | None = None  # the audio of the current run
        self.info = satellite_info(config, name).event()
        self.gate = VadGate(config.vad)
        self._gate_vad = config.vad  # the settings self.gate was built with
        self._connection: SatelliteHandler | None = None
        self._streaming = False  # a pipeline run is receiving our audio
        # Once HA has heard the wake word or speech, HA (not our gate) ends the audio: a
        # pause after the wake word must not cut the command. Bounded by max_speech_s.
        self._ha_listens_until: float | None = None
        self._playing = 0  # sounds in progress
        self._muted_until = 0.0  # monotonic time the mic stays gated until
        self._playback_tail: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # hooks, runs ended by a timer
        self._mic_gap: asyncio.TimerHandle | None = None  # armed while a run streams
        self._closed = False
        self.runs = 0  # pipeline runs started since the daemon started

    def status(self) -> str:
        """HA's connection and the runs so far, for ``systemctl status``."""
        ha = "HA connected" if self._connection is not None else "waiting for HA"
        return f"{ha}, pipeline runs: {self.runs}"

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
            self._forget_run()
            await previous.stop()

    def detach(self, handler: SatelliteHandler) -> None:
        if self._connection is handler:
            self._connection = None
            self._forget_run()
            _LOGGER.info("HA disconnected (%s)", handler.peer)

    def _active(self) -> SatelliteHandler | None:
        connection = self._connection
        return connection if connection is not None and connection.running else None

    # --- mic -> HA ---------------------------------------------------------------------

    async def run_mic(self) -> None:
        """Feed the mic through the gate until closed; a bug here is logged, not fatal."""
        while not self._closed:
            try:
                await self._gate_mic()
            except Exception:
                _LOGGER.exception("the mic loop failed; restarting it")
                await asyncio.sleep(1.0)

    async def _gate_mic(self) -> None:
        async for chunk in self.mic.chunks():
            await self._take(chunk)
            self._watch_mic_gap()

    async def _take(self, chunk: bytes) -> None:
        connection = self._active()
        if connection is None or self._mic_gated():
            if self.gate.active or self._streaming:
                await self.end_run(connection, "the mic was gated")
            self.gate.reset()
        elif self._ha_listens_until is None:
            for event in self.gate.process(chunk):
                await self._forward(connection, event)
        elif time.monotonic() < self._ha_listens_until:
            await self._send_audio(connection, chunk)
        else:
            await self.end_run(connection, "max-length while HA listened")

    def _watch_mic_gap(self) -> None:
        """While a run streams, each chunk pushes back the end of a mic that went quiet."""
        if self._mic_gap is not None:
            self._mic_gap.cancel()
            self._mic_gap = None
        if self._streaming:
            loop = asyncio.get_running_loop()
            self._mic_gap = loop.call_later(MIC_GAP_S, self._on_mic_gap)

    def _on_mic_gap(self) -> None:
        self._mic_gap = None
        why = f"no audio from the microphone for {MIC_GAP_S:g} s"
        self._in_background(self.end_run(self._active(), why))

    def _mic_gated(self) -> bool:
        return self._playing > 0 or time.monotonic() < self._muted_until

    async def _forward(self, connection: SatelliteHandler, event: GateEvent) -> None:
        if event.kind == "start":
            self._streaming = True
            self.runs += 1
            if self.recorder is not None:
                self._recording = self.recorder.start("satellite", SPEECH_FORMAT)
            end_stage = PipelineStage.TTS if self.speaker is not None else PipelineStage.HANDLE
            _LOGGER.info("speech detected: starting a pipeline run (%s)", self.config.start_stage)
            await connection.send(
                RunPipeline(
                    start_stage=PipelineStage(self.config.start_stage),
                    end_stage=end_stage,
                    restart_on_end=False,
                ).event()
            )
        if event.audio and self._streaming:
            await self._send_audio(connection, event.audio)
        if event.kind == "end":
            await self.end_run(connection, f"end of speech ({event.reason})")

    async def _send_audio(self, connection: SatelliteHandler, pcm: bytes) -> None:
        fmt = SPEECH_FORMAT
        chunk = AudioChunk(rate=fmt.rate, width=fmt.width, channels=fmt.channels, audio=pcm)
        if self._recording is not None:
            self._recording.add(pcm)
        await connection.send(chunk.event())

    async def end_run(self, connection: SatelliteHandler | None, why: str) -> None:
        """Stop streaming the current run's audio (``audio-stop``) and re-arm the gate."""
        was_streaming = self._streaming
        self._forget_run()
        if was_streaming and connection is not None:
            _LOGGER.info("audio for the pipeline run ended: %s", why)
            await connection.send(AudioStop().event())

    def _forget_run(self) -> None:
        """No run receives our audio any more: the gate decides again from fresh audio."""
        self._streaming = False
        self._watch_mic_gap()
        self._ha_listens_until = None
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.finish()
        if self._gate_vad != self.config.vad:  # a reload changed the VAD settings
            self.gate, self._gate_vad = VadGate(self.config.vad), self.config.vad
        else:
            self.gate.reset()

    # --- lifecycle ---------------------------------------------------------------------

    async def reconfigure(self, config: SatelliteConfig) -> None:
        """Apply a reloaded config (same server address); HA stays connected."""
        old, self.config = self.config, config
        self.info = satellite_info(config, self.name).event()
        if not self._streaming:
            self._forget_run()  # else the run ends with the gate it started with
        if config.mic != old.mic:
            # The mic loop moves to the new mic when the old one's chunks end.
            old_mic, self.mic = self.mic, Mic(config.mic)
            _LOGGER.info("microphone: now %s", self.mic.description)
            await self.end_run(self._active(), "the microphone changed")
            await old_mic.close()
        if config.speaker != old.speaker:
            old_speaker = self.speaker
            self.speaker = Speaker(config.speaker) if config.speaker is not None else None
            if old_speaker is not None:  # after the sounds already playing on it
                self._play_in_order(old_speaker.close())

    async def drain(self, timeout: float) -> None:
        """Stop listening (HA gets ``audio-stop`` for a run in progress) and give the sound
        playing up to ``timeout`` seconds to finish."""
        self._closed = True
        await self.mic.close()
        await self.end_run(self._active(), "shutting down")
        if self._playback_tail is not None and timeout > 0:
            await asyncio.wait({self._playback_tail}, timeout=timeout)

    # --- HA -> satellite ------------------------------------------------------------------

    async def on_ha_event(self, connection: SatelliteHandler, event: Event) -> None:
        """Events HA sends while the satellite is running."""
        self.run_hook(event)
        if event.type in _END_OF_SPEECH_EVENTS:
            # HA's errors include everyday ones (no wake word, nothing recognized).
            _LOGGER.info("HA: %s %s", event.type, event.data)
            await self.end_run(connection, event.type)
            if event.type == "transcript" and self.config.sounds.done is not None:
                self.play_file(self.config.sounds.done)
        elif event.type in ("detection", "voice-started"):
            _LOGGER.info("HA: %s %s", event.type, event.data)
            if self._streaming and self._ha_listens_until is None:
                self._ha_listens_until = time.monotonic() + self.config.vad.max_speech_s
            if event.type == "detection" and self.config.sounds.awake is not None:
                self.play_file(self.config.sounds.awake, gate_mic=False)
        elif event.type == "timer-finished":
            _LOGGER.info("timer finished: %s", event.data.get("id"))
            if self.config.sounds.timer_finished is not None:
                self.play_file(self.config.sounds.timer_finished)
        elif event.type in _LOGGED_EVENTS:
            _LOGGER.info("HA: %s %s", event.type, event.data)

    def start_sound(self, connection: SatelliteHandler, fmt: AudioFormat) -> _Sound:
        """HA began streaming audio to play; ``played`` is sent when it has finished."""
        sound = _Sound(format=fmt, audio=BoundedQueue(connection.limits.max_buffer_bytes))
        self._play_in_order(self._play_sound(connection, sound))
        return sound

    async def _play_sound(self, connection: SatelliteHandler, sound: _Sound) -> None:
        if self.speaker is None:
            async for _ in sound.chunks():  # nothing to play it on: just let it pass
                pass
        else:
            await self._play(self.speaker.play(sound.format, sound.chunks()))
        if connection.running:
            await connection.send(Played().event())

    def play_file(self, path: Path, gate_mic: bool = True) -> None:
        if self.speaker is not None:
            self._play_in_order(self._play(self.speaker.play_file(path), gate_mic))

    def _play_in_order(self, work: Coroutine[Any, Any, None]) -> None:
        """Sounds play one after another, in the order they came."""
        previous = self._playback_tail

        async def after_previous() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            await work

        self._playback_tail = asyncio.ensure_future(after_previous())

    async def _play(self, playing: Awaitable[None], gate_mic: bool = True) -> None:
        """Play with the mic gated (plus the configured tail); a failure is only logged."""
        self._playing += gate_mic
        try:
            await playing
        except SpeakerError as exc:
            _LOGGER.warning("speaker failed: %s", exc)
        finally:
            self._playing -= gate_mic
            if gate_mic:
                tail = self.config.mute_tail_ms / 1000
                self._muted_until = max(self._muted_until, time.monotonic() + tail)

    # --- hooks ---------------------------------------------------------------------------

    def run_hook(self, event: Event) -> None:
        """Run the command configured for this event type, with its data as JSON on stdin."""
        command = self.config.events.get(event.type)
        if command:
            self._in_background(_run_command(command, event))

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        self._closed = True
        for task in [*self._background, self._playback_tail]:
            if task is not None:
                task.cancel()
        await self.mic.close()
        if self.speaker is not None:
            await self.speaker.close()


async def _run_command(command: str, event: Event, timeout: float = 30.0) -> None:
    try:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL
        )
        data = json.dumps(event.data, ensure_ascii=False).encode()
        async with asyncio.timeout(timeout):
            await process.communicate(data)
    except TimeoutError:
        _LOGGER.warning("event command for %s ran over %g s; stopped", event.type, timeout)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    except OSError as exc:
        _LOGGER.warning("event command for %s failed: %s", event.type, exc)
    else:
        if process.returncode:
            _LOGGER.warning("event command for %s exited with %s", event.type, process.returncode)


class SatelliteHandler(GuardedHandler):
    """One HA connection to the satellite."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        satellite: Satellite,
    ) -> None:
        super().__init__(reader, writer)
        self.satellite = satellite
        self.running = False  # run-satellite received, not paused
        self._attached = False
        self._sound: _Sound | None = None
        self._write_lock = asyncio.Lock()

    async def send(self, event: Event) -> None:
        """Write to HA; a broken connection only ends this connection."""
        try:
            async with self._write_lock:
                await self.write_event(event)
        except ConnectionError as exc:
            _LOGGER.info("cannot reach HA (%s): %s", self.peer, exc)
            self.running = False

    async def dispatch(self, event: Event) -> None:
        if Describe.is_type(event.type):
            await self.send(self.satellite.info)
        elif Ping.is_type(event.type):
            await self.send(Pong(text=Ping.from_event(event).text).event())
        elif RunSatellite.is_type(event.type):
            # Only the connection that runs the satellite takes it over: HA also opens
            # short connections just to read its info.
            if not self._attached:
                self._attached = True
                await self.satellite.attach(self)
            if not self.running:
                _LOGGER.info("HA (%s) started the satellite", self.peer)
            self.running = True
        elif PauseSatellite.is_type(event.type):
            _LOGGER.info("HA (%s) paused the satellite", self.peer)
            self.running = False
            await self.satellite.end_run(self, "paused")
        elif AudioStart.is_type(event.type):
            self._end_sound()
            fmt = AudioFormat(*audio_format_of(event.data))
            self._sound = self.satellite.start_sound(self, fmt)
        elif AudioChunk.is_type(event.type):
            if self._sound is None:  # audio without audio-start: take its format
                fmt = AudioFormat(*audio_format_of(event.data))
                self._sound = self.satellite.start_sound(self, fmt)
            if event.payload:
                self._queue_sound(self._sound, event.payload)
        elif AudioStop.is_type(event.type):
            self._end_sound()
        else:
            await self.satellite.on_ha_event(self, event)

    def _queue_sound(self, sound: _Sound, pcm: bytes) -> None:
        try:
            sound.audio.put(pcm)
        except BufferFull as exc:  # HA sends faster than the speaker plays, without bound
            _LOGGER.warning(
                "audio from HA (%s): %s for the speaker; the rest of this sound is dropped",
                self.peer,
                exc,
            )

    def _end_sound(self) -> None:
        if self._sound is not None:
            self._sound.audio.end()
            self._sound = None

    async def disconnect(self) -> None:
        self.running = False
        self._end_sound()  # what arrived still plays; ``played`` is not sent to a closed socket
        self.satellite.detach(self)
