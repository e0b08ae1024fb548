"""The VAD gate: which audio opens a run, what each run streams and when it ends."""

from __future__ import annotations

import itertools
import time

import pytest
import webrtcvad

from satellite.audio.vad import GateEvent, VadGate
from satellite.config import VadConfig
from tests.audio.speech import BYTES_PER_SECOND, mix, noise, silence, speech_pcm

COMMAND = "turn on the kitchen light"
LONG = "turn on the kitchen light and tell me the weather for tomorrow please"
MS = BYTES_PER_SECOND // 1000  # bytes per millisecond


def feed(gate: VadGate, pcm: bytes, chunk: int = 3200) -> list[GateEvent]:
    """Feed ``pcm`` in chunks; checks ``active`` against the events after every call."""
    events: list[GateEvent] = []
    for i in range(0, len(pcm), chunk):
        new = gate.process(pcm[i : i + chunk])
        if new:
            assert gate.active == (new[-1].kind != "end")
        events += new
    return events


def runs(events: list[GateEvent]) -> list[tuple[bytes, str]]:
    """Each run's audio (start + audio events joined) and its end reason ("" if open)."""
    result: list[tuple[bytes, str]] = []
    for event in events:
        if event.kind == "start":
            assert not result or result[-1][1], "a run started before the previous one ended"
            result.append((event.audio, ""))
        else:
            assert result and not result[-1][1], f"{event.kind} outside a run"
            audio, _ = result[-1]
            assert event.kind == "end" or event.audio, "an empty audio event"
            assert event.kind == "audio" or not event.audio, "an end with audio"
            result[-1] = (audio + event.audio, event.reason)
    return result


def slice_offset(pcm: bytes, audio: bytes) -> int:
    """Where ``audio`` lies in ``pcm``: it must be one contiguous slice, nothing lost or doubled."""
    offset = pcm.find(audio)
    assert offset >= 0, "the run's audio is not a contiguous slice of the input"
    return offset


@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
@pytest.mark.parametrize("background", ["silence", "noise -50 dBFS", "noise -40 dBFS"])
def test_silence_and_low_noise_emit_nothing(aggressiveness: int, background: str):
    pcm = {
        "silence": silence(10),
        "noise -50 dBFS": noise(10, rms=0.003),
        "noise -40 dBFS": noise(10, rms=0.01),
    }[background]
    gate = VadGate(VadConfig(aggressiveness=aggressiveness))
    assert feed(gate, pcm) == []
    assert not gate.active


def test_one_command_is_one_run_with_preroll_and_hangover():
    config = VadConfig()
    spoken = speech_pcm(COMMAND)
    pcm = speech_pcm(COMMAND, 1.0, 1.0)
    onset, speech_end = BYTES_PER_SECOND, BYTES_PER_SECOND + len(spoken)

    events = feed(VadGate(config), pcm)

    assert [e.kind for e in events[:1] + events[-1:]] == ["start", "end"]
    assert {e.kind for e in events[1:-1]} == {"audio"}
    [(audio, reason)] = runs(events)
    assert reason == "silence"
    offset = slice_offset(pcm, audio)
    # The frame holding the onset may start before it; no more than that is added.
    assert onset - (config.preroll_ms + config.frame_ms) * MS < offset
    assert offset <= onset - config.preroll_ms * MS, "the pre-roll is missing"
    end = offset + len(audio)
    # webrtcvad's decisions outlast a sound by up to ~120 ms; the gate works in whole frames.
    assert (
        speech_end + config.hangover_ms * MS <= end <= speech_end + (config.hangover_ms + 200) * MS
    )


def test_two_commands_two_seconds_apart_are_two_runs():
    first, second = speech_pcm(COMMAND, 1.0, 2.0), speech_pcm("what time is it", 0.0, 1.0)
    pcm = first + second

    found = runs(feed(VadGate(VadConfig()), pcm))

    assert [reason for _, reason in found] == ["silence", "silence"]
    (audio1, _), (audio2, _) = found
    end1 = slice_offset(pcm, audio1) + len(audio1)
    assert end1 < len(first) - 1000 * MS < slice_offset(pcm, audio2)
    assert slice_offset(pcm, audio2) + len(audio2) > len(first) + len(speech_pcm("what time is it"))


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_odd_chunks_give_the_same_runs_as_whole_frames(frame_ms: int):
    config = VadConfig(frame_ms=frame_ms)
    pcm = speech_pcm(COMMAND, 1.0, 1.5) + speech_pcm("what time is it", 0.0, 1.0)

    whole = runs(feed(VadGate(config), pcm, chunk=4 * frame_ms * MS))
    gate, events, position = VadGate(config), [], 0
    for size in itertools.cycle([1, 333, 2, 1001, 17, 4095]):
        events += gate.process(pcm[position : position + size])
        position += size
        if position >= len(pcm):
            break

    assert len(whole) == 2
    assert runs(events) == whole


def test_max_length_cuts_a_long_utterance():
    config = VadConfig(max_speech_s=1.0)
    pcm = speech_pcm(LONG, 1.0, 1.0)

    found = runs(feed(VadGate(config), pcm))

    audio, reason = found[0]
    assert reason == "max-length"
    frame = config.frame_ms * MS
    assert BYTES_PER_SECOND <= len(audio) < BYTES_PER_SECOND + frame
    # Still speaking: the rest opens new runs, each cut at the same length.
    assert len(found) >= 2
    assert all(len(audio) < BYTES_PER_SECOND + frame for audio, _ in found)


def test_reset_during_speech_returns_to_idle_and_the_next_speech_opens_a_new_run():
    gate = VadGate(VadConfig())
    before = speech_pcm(LONG, 1.0, 0.0)
    assert runs(feed(gate, before[: len(before) * 2 // 3]))[0][1] == ""
    assert gate.active

    gate.reset()

    assert not gate.active
    assert feed(gate, silence(1.0)) == []
    after = speech_pcm(COMMAND, 0.0, 1.0)
    [(audio, reason)] = runs(feed(gate, after))
    assert reason == "silence"
    slice_offset(silence(1.0) + after, audio)  # a fresh pre-roll: no audio from before reset()


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_every_frame_size_and_aggressiveness_opens_one_run(frame_ms: int, aggressiveness: int):
    config = VadConfig(frame_ms=frame_ms, aggressiveness=aggressiveness)
    pcm = speech_pcm(COMMAND, 1.0, 1.0)

    [(audio, reason)] = runs(feed(VadGate(config), pcm, chunk=1000))

    assert reason == "silence"
    assert len(audio) >= len(speech_pcm(COMMAND)) + config.hangover_ms * MS
    assert slice_offset(pcm, audio) % (frame_ms * MS) == 0


def test_speech_over_background_noise_opens_one_run():
    pcm = mix(speech_pcm(COMMAND, 1.0, 1.0), noise(4.5, rms=0.01, seed=7))
    assert [reason for _, reason in runs(feed(VadGate(VadConfig()), pcm))] == ["silence"]


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
@pytest.mark.parametrize("aggressiveness", [0, 1, 2, 3])
def test_a_click_shorter_than_min_speech_does_not_open_the_gate(frame_ms: int, aggressiveness: int):
    # One loud 30 ms burst. webrtcvad reports it as 90-150 ms of voice (its decisions outlast
    # a sound), and the gate can only count what the detector reports: that is what must stay
    # below min_speech_ms. It does at the default 150 ms, except modes 0-1 with 30 ms frames.
    click = silence(1.2) + noise(0.03, rms=0.3, seed=5) + silence(1.0)
    size = frame_ms * MS
    vad = webrtcvad.Vad(aggressiveness)
    heard_ms = frame_ms * sum(
        vad.is_speech(click[i : i + size], 16000) for i in range(0, len(click), size)
    )
    min_speech_ms = max(VadConfig().min_speech_ms, heard_ms + frame_ms)
    assert min_speech_ms <= 180
    config = VadConfig(
        frame_ms=frame_ms, aggressiveness=aggressiveness, min_speech_ms=min_speech_ms
    )
    assert feed(VadGate(config), click) == []
    # The detector does hear it: the min_speech_ms rule alone keeps the gate shut.
    at_threshold = config.model_copy(update={"min_speech_ms": heard_ms})
    assert [e.kind for e in feed(VadGate(at_threshold), click)][:1] == ["start"]


class ScriptedVad:
    """Stands in for webrtcvad: a frame is voiced when its first byte is 1."""

    def is_speech(self, frame: bytes, rate: int) -> bool:
        return frame[0] == 1


def scripted(pattern: str, config: VadConfig) -> tuple[bytes, list[GateEvent]]:
    """Frames voiced ("1") or unvoiced ("0") as in ``pattern``, each frame tagged by its index."""
    size = config.frame_ms * MS
    pcm = b"".join(
        bytes([int(flag), index % 251]) * (size // 2) for index, flag in enumerate(pattern)
    )
    gate = VadGate(config)
    gate._vad = ScriptedVad()  # type: ignore[assignment]
    return pcm, feed(gate, pcm, chunk=size)


def test_short_unvoiced_gaps_do_not_restart_the_count():
    # 30 ms frames: 150 ms is 5 voiced frames, the window is the last 10 frames.
    config = VadConfig(preroll_ms=90, min_speech_ms=150, hangover_ms=90)
    pcm, events = scripted("0000000" + "1101101" + "1000", config)
    size = config.frame_ms * MS
    assert events[0] == GateEvent("start", pcm[4 * size : 14 * size])  # 3 pre-roll frames
    assert events[-1] == GateEvent("end", reason="silence")
    assert b"".join(e.audio for e in events) == pcm[4 * size :]

    _, sparse = scripted("0000" + "1000" * 20, config)
    assert sparse == []


def test_the_run_ends_after_exactly_the_hangover():
    config = VadConfig(preroll_ms=0, min_speech_ms=60, hangover_ms=240)
    pcm, events = scripted("00" + "11" + "1" * 5 + "0" * 7 + "1" + "0" * 8 + "0" * 5, config)
    size = config.frame_ms * MS
    [(audio, reason)] = runs(events)
    assert reason == "silence"
    assert audio == pcm[2 * size : (2 + 2 + 5 + 7 + 1 + 8) * size]


def test_sixty_seconds_of_audio_take_well_under_a_second():
    minute = (speech_pcm(LONG, 0.5, 1.5) * 12)[: 60 * BYTES_PER_SECOND]
    gate = VadGate(VadConfig(frame_ms=10))
    started = time.process_time()
    events = feed(gate, minute, chunk=1024)
    assert time.process_time() - started < 2.0  # a sanity bound, not a benchmark
    assert len(runs(events)) >= 10
