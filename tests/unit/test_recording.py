"""Debug recordings: the files a user finds in ``recordings.dir``, and what the speech
endpoint records of each transcription."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import stat
import wave
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
from wyoming.client import AsyncTcpClient
from wyoming.server import AsyncServer

from satellite.audio.pcm import SPEECH_FORMAT, AudioFormat
from satellite.config import RecordingsConfig
from satellite.recording import MAX_SECONDS, Recorder
from satellite.speech.info import build_info
from satellite.speech.requests import SpeechEndpoint, SpeechService
from satellite.speech.server import SpeechHandler
from tests.providers.common import wait_for
from tests.unit.test_speech_server import ScriptedAsr, ScriptedTts
from tests.wyoming_client import connect, read_until, send_utterance

NAME = re.compile(r"^(\d{8}T\d{6}\.\d{3}Z)-(satellite|asr)(-\d+)?\.wav$")


def wav_of(path: Path) -> tuple[tuple[int, int, int], bytes]:
    with wave.open(str(path), "rb") as wav:
        fmt = (wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
        return fmt, wav.readframes(wav.getnframes())


def tone(seconds: float, fmt: AudioFormat = SPEECH_FORMAT, step: int = 7) -> bytes:
    return bytes((i * step) % 251 for i in range(int(seconds * fmt.rate) * fmt.frame_bytes))


def ours(directory: Path) -> list[str]:
    return sorted(name for name in (p.name for p in directory.iterdir()) if NAME.match(name))


async def test_recordings_are_off_without_a_dir():
    assert Recorder(RecordingsConfig()).start("asr", SPEECH_FORMAT) is None


async def test_a_recording_is_a_private_wav_named_by_time_and_kind(tmp_path: Path):
    directory = tmp_path / "new" / "recordings"
    recorder = Recorder(RecordingsConfig(dir=directory, keep=5))
    fmt = AudioFormat(24000, 2, 2)
    recording = recorder.start("asr", fmt)
    assert recording is not None
    audio = tone(0.5, fmt)
    for offset in range(0, len(audio), 1000):
        recording.add(audio[offset : offset + 1000])
    path = await recording.save()
    assert path is not None and path.parent == directory
    assert NAME.match(path.name) and path.name.endswith("Z-asr.wav")
    assert wav_of(path) == ((24000, 2, 2), audio)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert await recording.save() is None  # saved once
    assert ours(directory) == [path.name]


async def test_only_the_newest_are_kept_and_other_files_are_left_alone(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "20200101T000000.000Z-mine.wav.bak").write_text("mine too")
    (tmp_path / "keep-me.wav").write_bytes(b"RIFF")
    recorder = Recorder(RecordingsConfig(dir=tmp_path, keep=3))
    saved = []
    for number in range(5):
        recording = recorder.start("satellite" if number % 2 else "asr", SPEECH_FORMAT)
        assert recording is not None
        recording.add(tone(0.1, step=number + 1))
        saved.append(await recording.save())
        await asyncio.sleep(0.002)  # a new millisecond: names sort by start time
    assert ours(tmp_path) == sorted(path.name for path in saved[-3:] if path is not None)
    for path in saved[-3:]:
        assert path is not None and path.exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "20200101T000000.000Z-mine.wav.bak").exists()
    assert (tmp_path / "keep-me.wav").exists()


async def test_recordings_started_together_do_not_overwrite_each_other(tmp_path: Path):
    recorder = Recorder(RecordingsConfig(dir=tmp_path, keep=10))
    recordings = [recorder.start("asr", SPEECH_FORMAT) for _ in range(3)]
    for number, recording in enumerate(recordings):
        assert recording is not None
        recording.add(tone(0.1, step=number + 2))
    paths = await asyncio.gather(*(r.save() for r in recordings if r is not None))
    assert len({p.name for p in paths if p is not None}) == 3
    contents = {wav_of(p)[1] for p in paths if p is not None}
    assert contents == {tone(0.1, step=n + 2) for n in range(3)}


async def test_memory_is_bounded_to_a_minute(tmp_path: Path):
    fmt = AudioFormat(8000, 1, 1)
    recording = Recorder(RecordingsConfig(dir=tmp_path)).start("satellite", fmt)
    assert recording is not None
    second = tone(1.0, fmt)
    for _ in range(int(MAX_SECONDS) + 30):
        recording.add(second)
    path = await recording.save()
    assert path is not None
    assert wav_of(path)[1] == second * int(MAX_SECONDS)


async def test_an_unwritable_dir_is_a_warning_not_a_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the directory should be")
    recording = Recorder(RecordingsConfig(dir=blocker / "recordings")).start("asr", SPEECH_FORMAT)
    assert recording is not None
    recording.add(tone(0.1))
    with caplog.at_level(logging.WARNING, logger="satellite.recording"):
        assert await recording.save() is None
    [record] = caplog.records
    assert record.getMessage().startswith(f"cannot save the recording {recording.name}: ")


@contextlib.asynccontextmanager
async def speech_endpoint(asr: ScriptedAsr, recorder: Recorder) -> AsyncIterator[AsyncTcpClient]:
    """A client of a speech endpoint whose provider is ``asr``."""
    tts = ScriptedTts()
    service = SpeechService(asr=asr, tts=tts, info=build_info(asr, tts).event())
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = AsyncServer.from_uri(f"tcp://127.0.0.1:{port}")
    await server.start(partial(SpeechHandler, endpoint=SpeechEndpoint(service, recorder)))
    try:
        client = await connect(port)
        yield client
        await client.disconnect()
    finally:
        await server.stop()


async def transcribe(client: AsyncTcpClient, audio: bytes) -> None:
    await send_utterance(client, audio, chunk_bytes=1234)
    assert (await read_until(client, "transcript"))[-1].type == "transcript"


async def test_the_speech_endpoint_records_what_the_provider_received(tmp_path: Path):
    asr = ScriptedAsr()
    recorder = Recorder(RecordingsConfig(dir=tmp_path, keep=2))
    async with speech_endpoint(asr, recorder) as client:
        for seconds in (0.6, 0.8, 1.0):
            before = set(ours(tmp_path))
            await transcribe(client, tone(seconds))
            assert await wait_for(lambda seen=before: not set(ours(tmp_path)) <= seen)
    files = ours(tmp_path)
    assert len(files) == 2 and all(name.endswith("-asr.wav") for name in files)
    assert [wav_of(tmp_path / name) for name in files] == [
        ((16000, 2, 1), received) for received in asr.received[-2:]
    ]
    assert len(asr.received[-1]) == len(tone(1.0))


async def test_the_asr_recording_is_in_the_providers_format(tmp_path: Path):
    asr = ScriptedAsr()
    asr.input_format = AudioFormat(8000, 2, 1)
    async with speech_endpoint(asr, Recorder(RecordingsConfig(dir=tmp_path))) as client:
        await transcribe(client, tone(0.5))
        assert await wait_for(lambda: len(ours(tmp_path)) == 1)
    [name] = ours(tmp_path)
    [received] = asr.received
    assert abs(len(received) - 8000) <= 4  # 0.5 s at 8 kHz
    assert wav_of(tmp_path / name) == ((8000, 2, 1), received)
