"""Debug recordings of the satellite's pipeline runs, with the daemon process and a client
playing Home Assistant."""

from __future__ import annotations

import time
import wave
from pathlib import Path

from tests.audio.speech import silence, speech_pcm, write_wav
from tests.e2e.daemon import Daemon
from tests.e2e.test_satellite import (
    LEAD_SILENCE_S,
    collect_run,
    file_mic,
    file_speaker,
    satellite_config,
    start_ha,
)


def recordings_in(directory: Path) -> list[Path]:
    return sorted(directory.glob("*Z-satellite.wav"))


def wait_for_new_file(directory: Path, known: set[str], timeout: float = 5.0) -> Path:
    """The recording that appears in ``directory`` beyond the ``known`` names."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [path for path in recordings_in(directory) if path.name not in known]
        if new:
            [path] = new
            known.add(path.name)
            return path
        time.sleep(0.05)
    raise AssertionError(f"no new recording in {directory}")


def audio_of(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (16000, 2, 1)
        return wav.readframes(wav.getnframes())


async def test_the_newest_runs_are_recorded_as_ha_received_them(tmp_path: Path):
    commands = ["turn on the kitchen light", "what time is it", "open the blinds"]
    mic_pcm = silence(LEAD_SILENCE_S)
    for command in commands:
        mic_pcm += speech_pcm(command) + silence(1.5)
    write_wav(tmp_path / "mic.wav", mic_pcm + silence(20))
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "notes.txt").write_text("not a recording")
    config = satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(tmp_path / "spk.raw"))
    config += f'recordings: {{dir: "{recordings}", keep: 2}}\n'
    daemon = Daemon(tmp_path, config)
    try:
        client = await start_ha(daemon)
        heard, known = [], set()
        for _ in commands:
            _, audio = await collect_run(client, timeout=15)
            heard.append(audio)
            recording = wait_for_new_file(recordings, known)
            assert audio_of(recording) == audio  # from the pre-roll to audio-stop, exactly
        await client.disconnect()
    finally:
        assert daemon.stop() == 0, daemon.logs()
    assert [audio_of(path) for path in recordings_in(recordings)] == heard[-2:]
    assert (recordings / "notes.txt").read_text() == "not a recording"
    assert len(list(recordings.iterdir())) == 3  # two recordings and the notes, nothing else
