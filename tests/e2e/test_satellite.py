"""Home Assistant's side of the satellite protocol against the daemon process.

The mic is a file (paced in real time by the daemon) or a command; the speaker is a
file sink. The test client plays HA: it connects, sends ``run-satellite`` and answers
pipeline runs with TTS audio.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event
from wyoming.info import Describe, Info
from wyoming.ping import Ping
from wyoming.satellite import RunSatellite

from tests.audio.alsa import use_file_alsa
from tests.audio.speech import silence, speech_pcm, write_wav
from tests.e2e.daemon import Daemon
from tests.wyoming_client import connect, read

LEAD_SILENCE_S = 3.0  # the daemon starts and HA connects before the speech begins
PREROLL_MS = 300


def file_mic(path: Path) -> str:
    return f'{{backend: file, file: "{path}"}}'


def file_speaker(path: Path) -> str:
    return f'{{backend: file, file: "{path}"}}'


def satellite_config(mic: str, speaker: str, hangover_ms: int = 600) -> str:
    return f"""
zeroconf: false
speech: {{enabled: false}}
satellite:
  enabled: true
  uri: LISTEN_URI
  name: Test Satellite
  area: Kitchen
  start_stage: asr
  wake: {{engine: none}}
  mute_tail_ms: 200
  mic: {mic}
  speaker: {speaker}
  vad: {{aggressiveness: 2, preroll_ms: {PREROLL_MS}, hangover_ms: {hangover_ms}}}
"""


async def start_ha(daemon: Daemon) -> AsyncTcpClient:
    daemon.wait_listening()
    client = await connect(daemon.port)
    await client.write_event(RunSatellite().event())
    return client


async def collect_run(client: AsyncTcpClient, timeout: float) -> tuple[Event, bytes]:
    """Waits for run-pipeline, then gathers its audio up to audio-stop."""
    run = await read(client, timeout)
    assert run.type == "run-pipeline", run
    audio = bytearray()
    while (event := await read(client, 10)).type != "audio-stop":
        assert event.type == "audio-chunk", event
        assert (event.data["rate"], event.data["width"], event.data["channels"]) == (16000, 2, 1)
        audio += event.payload or b""
    return run, bytes(audio)


async def expect_nothing(client: AsyncTcpClient, seconds: float) -> None:
    with pytest.raises(asyncio.TimeoutError):
        event = await asyncio.wait_for(client.read_event(), seconds)
        pytest.fail(f"unexpected {event}")


async def send_tts(client: AsyncTcpClient, pcm: bytes, rate: int = 22050) -> None:
    """HA streams TTS audio faster than real time, with float timestamps."""
    await client.write_event(AudioStart(rate=rate, width=2, channels=1, timestamp=0.0).event())
    for start in range(0, len(pcm), 2048):
        chunk = AudioChunk(rate=rate, width=2, channels=1, audio=pcm[start : start + 2048])
        chunk.timestamp = start / (rate * 2)  # type: ignore[assignment]
        await client.write_event(chunk.event())
    await client.write_event(AudioStop(timestamp=len(pcm) / (rate * 2)).event())  # type: ignore[arg-type]


def tone(seconds: float, rate: int = 22050) -> bytes:
    return bytes((i * 37) % 256 for i in range(int(seconds * rate) * 2))


@pytest.mark.parametrize("backend", ["file", "pyaudio"])
async def test_speech_opens_one_run_with_preroll_and_tts_is_played(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
):
    spoken = speech_pcm("turn on the kitchen light", 0.0, 0.0)
    mic_pcm = silence(LEAD_SILENCE_S) + spoken + silence(20)
    if backend == "file":
        write_wav(tmp_path / "mic.wav", mic_pcm)
        sink = tmp_path / "speaker.raw"
        config = satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(sink))
    else:  # real PyAudio -> PortAudio -> ALSA, through a file-backed ALSA device
        alsa = use_file_alsa(tmp_path, monkeypatch, mic_pcm)
        sink = alsa.sink
        config = satellite_config("{backend: pyaudio}", "{backend: pyaudio}")
    daemon = Daemon(tmp_path, config)
    try:
        client = await start_ha(daemon)
        await client.write_event(Describe().event())
        info = Info.from_event(await read(client))
        assert info.satellite is not None and info.satellite.name == "Test Satellite"
        assert info.satellite.area == "Kitchen" and not info.asr and not info.tts

        run, audio = await collect_run(client, timeout=15)
        assert run.data["start_stage"] == "asr" and run.data["end_stage"] == "tts"
        offset = mic_pcm.find(audio)
        assert offset >= 0, "the streamed audio is not a contiguous slice of the mic audio"
        onset = len(silence(LEAD_SILENCE_S))
        assert offset <= onset - PREROLL_MS * 32, "the pre-roll is missing"
        assert offset + len(audio) >= onset + len(spoken), "the end of the speech is missing"

        answer = tone(1.5)
        sent_at = time.monotonic()
        await send_tts(client, answer)
        played = await read(client, 10)
        assert played.type == "played"
        assert time.monotonic() - sent_at >= 1.4  # played only once the sound had finished
        assert sink.read_bytes() == answer

        await expect_nothing(client, 2.0)  # silence sends nothing
        await client.disconnect()
    finally:
        assert daemon.stop() == 0, daemon.logs()


async def test_mic_is_gated_while_the_speaker_plays(tmp_path: Path):
    first = speech_pcm("what time is it", 0.0, 0.0)
    second = speech_pcm("this should not be heard by home assistant", 0.0, 0.0)
    mic_pcm = silence(LEAD_SILENCE_S) + first + silence(1.5) + second + silence(20)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    daemon = Daemon(
        tmp_path,
        satellite_config(
            f'{{backend: file, file: "{tmp_path}/mic.wav"}}',
            file_speaker(tmp_path / "spk.raw"),
            500,
        ),
    )
    try:
        client = await start_ha(daemon)
        await collect_run(client, timeout=15)
        # The answer plays over the second utterance: the satellite must not hear it.
        await send_tts(client, tone(6.0))
        assert (await read(client, 15)).type == "played"
        await expect_nothing(client, 2.0)
        await client.disconnect()
    finally:
        assert daemon.stop() == 0, daemon.logs()


async def test_ping_describe_and_newest_connection_wins(tmp_path: Path):
    write_wav(tmp_path / "mic.wav", silence(1))
    daemon = Daemon(
        tmp_path,
        satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(tmp_path / "spk.raw")),
    )
    try:
        first = await start_ha(daemon)
        for text in ("a", "b", "c"):
            started = time.monotonic()
            await first.write_event(Ping(text=text).event())
            pong = await read(first, 2)
            assert (pong.type, pong.data.get("text")) == ("pong", text)
            assert time.monotonic() - started < 1.0

        probe = await connect(daemon.port)  # HA reading the info on a short connection
        await probe.write_event(Describe().event())
        assert (await read(probe)).type == "info"
        await probe.disconnect()
        await first.write_event(Ping(text="still here").event())
        assert (await read(first)).data.get("text") == "still here"

        second = await start_ha(daemon)  # HA restarted: the new connection replaces the old
        await second.write_event(Describe().event())
        assert (await read(second)).type == "info"
        assert await asyncio.wait_for(first.read_event(), 5) is None  # the old one is closed

        await second.disconnect()
        third = await start_ha(daemon)  # and after a drop, HA reconnects
        await third.write_event(Ping(text="again").event())
        assert (await read(third)).type == "pong"
        await third.disconnect()
    finally:
        assert daemon.stop() == 0, daemon.logs()


async def test_vanished_mic_recovers(tmp_path: Path):
    speech = silence(LEAD_SILENCE_S) + speech_pcm("open the blinds", 0.0, 0.0) + silence(1.5)
    (tmp_path / "speech.raw").write_bytes(speech)
    # The "device" delivers one utterance, then vanishes; the daemon starts it again.
    mic = f"{{backend: command, command: 'pv -qL 32000 {tmp_path}/speech.raw'}}"
    daemon = Daemon(tmp_path, satellite_config(mic, file_speaker(tmp_path / "spk.raw"), 500))
    try:
        client = await start_ha(daemon)
        runs = 0
        deadline = time.monotonic() + 20
        while runs < 2 and time.monotonic() < deadline:
            await collect_run(client, timeout=15)
            runs += 1
        assert runs == 2
        await client.disconnect()
        assert "mic" in daemon.logs().lower()
    finally:
        assert daemon.stop() == 0, daemon.logs()


async def test_the_daemon_hears_its_wake_word_and_streams_the_command(tmp_path: Path):
    from tests.audio.wake_fixtures import wake_phrase

    wake, command = wake_phrase("okay nabu"), speech_pcm("what time is it", 0.0, 0.0)
    noise_before = speech_pcm("this is not for home assistant", 0.0, 0.0)
    mic_pcm = (
        silence(LEAD_SILENCE_S) + noise_before + silence(1.0) + wake + silence(0.5) + command
    ) + silence(20)
    write_wav(tmp_path / "mic.wav", mic_pcm)
    config = satellite_config(file_mic(tmp_path / "mic.wav"), file_speaker(tmp_path / "spk.raw"))
    config = config.replace("  wake: {engine: none}\n", "  wake: {engine: micro}\n")
    daemon = Daemon(tmp_path, config)
    try:
        client = await start_ha(daemon)
        detection = await read(client, 20)
        assert (detection.type, detection.data["name"]) == ("detection", "okay_nabu")
        run, audio = await collect_run(client, timeout=5)
        assert run.data["start_stage"] == "asr"
        offset = mic_pcm.find(audio)
        wake_end = len(silence(LEAD_SILENCE_S) + noise_before + silence(1.0) + wake)
        assert offset >= wake_end - 3200, "audio from before the wake word reached HA"
        assert offset + len(audio) >= wake_end + len(silence(0.5) + command)
        await expect_nothing(client, 2.0)
        await client.disconnect()
        assert "wake word micro (okay_nabu)" in daemon.logs()
    finally:
        assert daemon.stop() == 0, daemon.logs()
