"""The offline espeak-ng provider, against the real program (apt install espeak-ng) and small
stand-in programs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from satellite.audio.pcm import AudioFormat
from satellite.config_base import Timeouts
from satellite.errors import ErrorCode
from satellite.provider_specs.espeak import EspeakConfig
from satellite.providers.base import SynthesisOptions
from satellite.providers.espeak_tts import EspeakTtsProvider, voice_languages
from tests.providers.common import failure, pieces, wait_for

pytestmark = pytest.mark.timeout(30)

FORMAT = AudioFormat(rate=22050, width=2, channels=1)
PLAIN = SynthesisOptions()
FIRST = "The first sentence is here."
SECOND = "And the second one follows."
MANDARIN = "今天天气很好。我们去公园散步吧。"
TIGHT = Timeouts(connect=2, first_result=0.5, total=20)


def provider(default_voice: str | None = None, **fields: Any) -> EspeakTtsProvider:
    return EspeakTtsProvider(EspeakConfig(**fields), default_voice)


async def speak(
    tts: EspeakTtsProvider, text: AsyncIterator[str], options: SynthesisOptions = PLAIN
) -> bytes:
    return b"".join([pcm async for pcm in tts.synthesize(text, options)])


def reference(text: str, *args: str) -> bytes:
    """The PCM espeak-ng makes of ``text`` given as an argument (its WAV header is 44 bytes)."""
    wav = subprocess.run(
        ["espeak-ng", *args, "--stdout", text], check=True, capture_output=True
    ).stdout
    assert wav[:4] == b"RIFF" and wav[36:40] == b"data"
    return wav[44:]


def seconds(pcm: bytes) -> float:
    return FORMAT.seconds(len(pcm))


def loudness(pcm: bytes) -> float:
    """RMS of s16 samples (full scale 32768)."""
    return float(np.sqrt(np.mean(np.frombuffer(pcm, "<i2").astype(np.float64) ** 2)))


def program(tmp_path: Path, body: str) -> str:
    """An executable Python script standing in for espeak-ng."""
    return _executable(tmp_path, f"#!{sys.executable}\nimport sys, time\n{body}")


def shell_program(tmp_path: Path, body: str) -> str:
    """A shell script standing in for espeak-ng: it starts fast enough for tight deadlines."""
    return _executable(tmp_path, f"#!/bin/sh\n{body}")


def _executable(tmp_path: Path, text: str) -> str:
    path = tmp_path / "fake-espeak"
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def printf(data: bytes) -> str:
    """A shell command writing ``data`` to stdout."""
    return "printf '" + "".join(f"\\{byte:03o}" for byte in data) + "'"


def wav_header(rate: int = 22050, data_size: int = 0x7FFFF000) -> bytes:
    """A streaming WAV header: placeholder sizes, and a LIST chunk before the data."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    listing = b"INFOISFT" + struct.pack("<I", 5) + b"test\0\0"
    return (
        b"RIFF"
        + struct.pack("<I", 0x7FFFF024)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"LIST"
        + struct.pack("<I", len(listing))
        + listing
        + b"data"
        + struct.pack("<I", data_size)
    )


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def stalling_program(tmp_path: Path, pids: Path, audio_first: bool) -> str:
    """A stand-in that records its PID and its child's, optionally writes some audio, and then
    waits for a child that sleeps: stopping only the program would leave the child behind."""
    audio = f"{printf(wav_header())}; head -c 8820 /dev/zero" if audio_first else ""
    return shell_program(tmp_path, f'sleep 30 &\necho "$$ $!" > {pids}\n{audio}\nwait\n')


def recorded_pids(path: Path) -> list[int]:
    return [int(pid) for pid in path.read_text().split()]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def assert_stopped(pids: list[int], fds_before: set[str]) -> None:
    """The program is gone and reaped (no zombie), its child is gone, no pipe is left open."""
    program_pid, child_pid = pids
    assert not Path(f"/proc/{program_pid}").exists()
    assert await wait_for(lambda: not alive(child_pid), 2.0)
    assert await wait_for(lambda: open_fds() <= fds_before, 2.0)


# --- speaking ----------------------------------------------------------------


async def test_english_is_spoken_as_22050_hz_mono_s16_of_plausible_length():
    tts = provider()
    assert tts.audio_format == FORMAT
    short = await speak(tts, pieces("Hello."))
    long = await speak(tts, pieces(f"{FIRST} {SECOND} It is a fine day to go for a walk."))
    assert 0.3 < seconds(short) < 1.5
    assert 3.0 < seconds(long) < 8.0
    assert loudness(long) > 1000  # speech, not silence
    assert long == reference(f"{FIRST} {SECOND} It is a fine day to go for a walk.", "-v", "en-us")


async def test_mandarin_is_spoken_with_the_cmn_voice():
    audio = await speak(provider(voice="cmn"), pieces(MANDARIN))
    assert 2.0 < seconds(audio) < 8.0
    assert loudness(audio) > 1000
    assert audio == reference(MANDARIN, "-v", "cmn")


async def test_text_in_one_piece_is_spoken_by_one_run():
    audio = await speak(provider(), pieces(f"{FIRST} {SECOND}"))
    assert audio == reference(f"{FIRST} {SECOND}", "-v", "en-us")
    # Not sentence by sentence, which sounds different.
    assert audio != reference(FIRST, "-v", "en-us") + reference(SECOND, "-v", "en-us")


async def test_streamed_sentences_are_spoken_while_the_text_still_arrives():
    first_audio = reference(FIRST, "-v", "en-us")
    more_text = asyncio.Event()
    text_waiting = False

    async def text() -> AsyncIterator[str]:
        nonlocal text_waiting
        yield "The first "
        yield "sentence is here. And"
        text_waiting = True
        await more_text.wait()
        text_waiting = False
        yield " the second one follows."

    audio = b""
    async with asyncio.timeout(10):  # without streaming this waits forever
        async for pcm in provider().synthesize(text(), PLAIN):
            audio += pcm
            if len(audio) >= len(first_audio) and not more_text.is_set():
                assert text_waiting  # the whole first sentence was heard before the rest
                more_text.set()
    assert audio == first_audio + reference(SECOND, "-v", "en-us")


async def test_no_text_is_no_audio():
    assert await speak(provider(), pieces("", "  ", "\n")) == b""


async def test_requested_voice_and_default_voice_are_used():
    german = reference(FIRST, "-v", "de")
    assert await speak(provider(), pieces(FIRST), SynthesisOptions(voice="de")) == german
    assert await speak(provider("de"), pieces(FIRST)) == german
    assert german != reference(FIRST, "-v", "en-us")


async def test_speed_pitch_and_amplitude_change_the_speech():
    fast = await speak(provider(speed=350), pieces(FIRST, " ", SECOND))
    slow = await speak(provider(speed=120), pieces(FIRST, " ", SECOND))
    assert seconds(fast) < 0.6 * seconds(slow)
    quiet = await speak(provider(amplitude=20), pieces(FIRST))
    normal = await speak(provider(), pieces(FIRST))
    assert loudness(quiet) < 0.4 * loudness(normal)
    assert await speak(provider(pitch=90), pieces(FIRST)) != normal


async def test_ssml_is_interpreted_not_read_out():
    plain = await speak(provider(), pieces("Hello world"))
    ssml = await speak(
        provider(),
        pieces('<speak>Hello <break time="1500ms"/>', " world</speak>"),
        SynthesisOptions(ssml=True),
    )
    assert 1.2 < seconds(ssml) - seconds(plain) < 2.2  # the pause, and no tags spoken


# --- the WAV stream ----------------------------------------------------------


async def test_wav_sizes_are_not_trusted_and_only_whole_samples_are_yielded(tmp_path):
    # The data chunk claims 0 bytes; the audio comes in odd-sized bursts.
    audio = bytes(range(256)) * 80
    writes = [audio[i : i + 4097] for i in range(0, len(audio), 4097)]
    fake = program(
        tmp_path,
        f"sys.stdin.read()\n"
        f"out = sys.stdout.buffer\n"
        f"out.write({wav_header(data_size=0)!r}); out.flush()\n"
        f"for data in {writes!r}:\n"
        f"    out.write(data); out.flush(); time.sleep(0.01)\n",
    )
    chunks = [pcm async for pcm in provider(program=fake).synthesize(pieces("Hi."), PLAIN)]
    assert b"".join(chunks) == audio
    assert len(chunks) > 1
    assert all(len(chunk) % 2 == 0 for chunk in chunks)


async def test_an_unexpected_format_is_an_internal_error(tmp_path):
    fake = program(tmp_path, f"sys.stdout.buffer.write({wav_header(rate=16000) + bytes(400)!r})")
    error, _ = await failure(speak(provider(program=fake), pieces("Hi.")))
    assert error.code == ErrorCode.INTERNAL
    assert "16000" in error.message and "22050" in error.message


async def test_output_that_is_not_wav_fails(tmp_path):
    fake = program(tmp_path, "sys.stdout.write('usage: fake-espeak [options]\\n' * 3)")
    error, _ = await failure(speak(provider(program=fake), pieces("Hi.")))
    assert error.code == ErrorCode.PROVIDER_FAILED
    assert "not a usable WAV" in error.message


# --- failures ----------------------------------------------------------------


async def test_an_unknown_voice_names_the_voice_and_how_to_list_voices():
    error, _ = await failure(speak(provider(), pieces(FIRST), SynthesisOptions(voice="xx-nope")))
    assert error.code == ErrorCode.PROVIDER_FAILED
    assert "'xx-nope'" in error.message
    assert "espeak-ng --voices" in error.message


async def test_a_missing_program_says_how_to_install_it(tmp_path):
    error, _ = await failure(speak(provider(program=str(tmp_path / "nothing")), pieces(FIRST)))
    assert error.code == ErrorCode.PROVIDER_FAILED
    assert "apt install espeak-ng" in error.message
    assert "providers.espeak.program" in error.message


async def test_a_failing_program_reports_its_stderr(tmp_path):
    fake = program(
        tmp_path,
        "sys.stderr.write('espeak-ng: cannot open the sound data\\n  (phontab)\\n'); sys.exit(3)",
    )
    error, _ = await failure(speak(provider(program=fake), pieces(FIRST)))
    assert error.code == ErrorCode.PROVIDER_FAILED
    assert "exit code 3" in error.message
    assert "cannot open the sound data (phontab)" in error.message


async def test_a_silent_program_times_out_and_is_stopped_with_its_children(tmp_path):
    pids, fds = tmp_path / "pids", open_fds()
    fake = stalling_program(tmp_path, pids, audio_first=False)
    error, took = await failure(speak(provider(program=fake, timeouts=TIGHT), pieces(FIRST)))
    assert error.code == ErrorCode.TIMEOUT
    assert took < 1.5
    await assert_stopped(recorded_pids(pids), fds)


async def test_a_program_that_never_finishes_hits_the_total_deadline(tmp_path):
    # A trickle of audio (for 10 s) keeps each read within first_result; the call is too long.
    fake = shell_program(
        tmp_path,
        f"{printf(wav_header())}\nfor _ in $(seq 100); do head -c 200 /dev/zero; sleep 0.1; done\n",
    )
    timeouts = Timeouts(connect=2, first_result=0.5, total=1.0)
    started = time.monotonic()
    error, _ = await failure(speak(provider(program=fake, timeouts=timeouts), pieces(FIRST)))
    assert error.code == ErrorCode.TIMEOUT
    assert "not finished within 1 s" in error.message
    assert time.monotonic() - started < 2.0


async def test_a_process_that_escaped_the_group_cannot_hang_the_call(tmp_path, caplog):
    # The program stalls, and a child in a session of its own keeps its output open.
    pids, fds = tmp_path / "pids", open_fds()
    fake = shell_program(
        tmp_path,
        f"setsid sleep 30 &\necho $! > {pids}\n{printf(wav_header() + bytes(400))}\nsleep 30\n",
    )
    try:
        error, took = await failure(speak(provider(program=fake, timeouts=TIGHT), pieces(FIRST)))
    finally:
        [escaped] = recorded_pids(pids)
        os.kill(escaped, signal.SIGKILL)
    assert error.code == ErrorCode.TIMEOUT
    assert took < 2.5
    assert any("still holds its output open" in r.getMessage() for r in caplog.records)
    # Once that process is gone, the pipes close.
    assert await wait_for(lambda: open_fds() <= fds, 2.0)


async def test_closing_the_audio_early_stops_the_program(tmp_path):
    pids, fds = tmp_path / "pids", open_fds()
    fake = stalling_program(tmp_path, pids, audio_first=True)
    audio = provider(program=fake).synthesize(pieces(FIRST), PLAIN)
    assert await anext(audio)
    assert all(alive(pid) for pid in recorded_pids(pids))
    await audio.aclose()
    await assert_stopped(recorded_pids(pids), fds)


async def test_cancelling_the_request_stops_the_program(tmp_path):
    pids, fds = tmp_path / "pids", open_fds()
    fake = stalling_program(tmp_path, pids, audio_first=True)
    heard = asyncio.Event()

    async def listen() -> None:
        async for _ in provider(program=fake).synthesize(pieces(FIRST), PLAIN):
            heard.set()

    task = asyncio.ensure_future(listen())
    await asyncio.wait_for(heard.wait(), 5)
    assert all(alive(pid) for pid in recorded_pids(pids))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_stopped(recorded_pids(pids), fds)


# --- voices and readiness ----------------------------------------------------


@pytest.mark.parametrize(
    ("voice", "language"),
    [
        ("en-us", "en-US"),
        ("en-gb-x-rp", "en-GB"),
        ("en-us+f3", "en-US"),
        ("es-419", "es-419"),
        ("cmn", "zh"),
        ("cmn-latn-pinyin", "zh"),
        ("yue", "yue"),
        ("de", "de"),
    ],
)
def test_voice_language(voice, language):
    assert voice_languages(voice) == (language,)


def test_the_configured_voice_is_advertised_first():
    tts = provider(voice="cmn", voices=("en-us", "cmn", "yue"))
    assert [(v.name, v.languages, v.description) for v in tts.voices] == [
        ("cmn", ("zh",), "espeak-ng cmn"),
        ("en-us", ("en-US",), "espeak-ng en-us"),
        ("yue", ("yue",), "espeak-ng yue"),
    ]
    assert [v.name for v in provider("de", voices=("en-us",)).voices] == ["de", "en-us"]
    assert (tts.name, tts.model) == ("espeak", "espeak-ng")


async def test_prepare_is_quiet_when_the_program_runs(caplog):
    caplog.set_level(logging.WARNING)
    await provider().prepare()
    assert caplog.records == []


async def test_prepare_warns_how_to_install_a_missing_program(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    await provider(program=str(tmp_path / "nothing")).prepare()
    [warning] = [r.getMessage() for r in caplog.records]
    assert "apt install espeak-ng" in warning
    assert "providers.espeak.program" in warning
