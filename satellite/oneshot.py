"""The ``say``, ``transcribe`` and ``voices`` commands: one request to the configured
providers (failover lists included), outside the servers, with progress on stderr.

Provider failures propagate as ProviderError; anything the user can fix locally (a file,
the speaker, the arguments) is a CommandError. Providers are closed on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import time
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TextIO

from .audio.pcm import AudioFormat, PcmConverter
from .bridge import run_blocking
from .config import LoadedConfig
from .providers.base import AsrProvider, AsrResult, SynthesisOptions, TtsProvider, Voice
from .providers.registry import build_asr, build_tts
from .providers.text import one_piece

_PIECE_SECONDS = 0.1  # audio sent to the recognizer per call, as a live stream would
_CLOSE_SECONDS = 5.0  # releasing a provider's connections never holds the command longer


class CommandError(Exception):
    """A problem the user fixes locally: a file, the speaker, the arguments."""


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _chain(provider: AsrProvider | TtsProvider) -> str:
    return " -> ".join(member.name for member in provider.members)


def _ms(since: float) -> str:
    return f"{(time.monotonic() - since) * 1000:.0f} ms"


async def _close(provider: AsrProvider | TtsProvider) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_CLOSE_SECONDS):
            await provider.close()


# --- say -------------------------------------------------------------------------------


class _Measured:
    """Passes the provider's audio through, noting when it started and how much came."""

    def __init__(self, audio: AsyncIterator[bytes]) -> None:
        self._audio = audio
        self.bytes = 0
        self.first_at: float | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._audio:
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.bytes += len(chunk)
            yield chunk


async def say(loaded: LoadedConfig, text: str, voice: str | None, output: Path | None) -> None:
    """Speak ``text`` on the satellite's speaker, or into the WAV file ``output``."""
    speaker_config = loaded.config.satellite.speaker
    if output is None and speaker_config is None:
        raise CommandError(
            "no speaker is configured (satellite.speaker is null): use --output FILE.wav"
        )
    tts = build_tts(loaded)
    try:
        fmt = tts.audio_format
        shown_voice = voice or (tts.voices[0].name if tts.voices else "default")
        _progress(f"synthesizing with {_chain(tts)} {tts.model} voice {shown_voice}...")
        started = time.monotonic()
        audio = _Measured(tts.synthesize(one_piece(text), SynthesisOptions(voice=voice)))
        if output is not None:
            await _write_wav(output, fmt, audio.chunks())
            where = f"written to {output}"
        else:
            assert speaker_config is not None
            from .audio.speaker import Speaker, SpeakerError

            speaker = Speaker(speaker_config)
            try:
                await speaker.play(fmt, audio.chunks())
            except SpeakerError as exc:
                raise CommandError(f"the speaker failed: {exc}") from None
            finally:
                await speaker.close()
            where = f"played on {speaker.description}"
        first = (
            ""
            if audio.first_at is None
            else f" (first audio after {(audio.first_at - started) * 1000:.0f} ms)"
        )
        _progress(f"{fmt.seconds(audio.bytes):.1f} s of audio {where} in {_ms(started)}{first}")
    finally:
        await _close(tts)


async def _write_wav(path: Path, fmt: AudioFormat, audio: AsyncIterator[bytes]) -> None:
    """Write the audio as it comes; a failed synthesis leaves no partial file behind."""
    try:
        file = path.open("wb")  # here, not in a thread: a cancelled wait would leave it behind
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        # Closing writes the final header: a few bytes, in place.
        with file, wave.open(file, "wb") as wav:
            wav.setframerate(fmt.rate)
            wav.setsampwidth(fmt.width)
            wav.setnchannels(fmt.channels)
            async for chunk in audio:
                await run_blocking(wav.writeframes, chunk)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
        raise


# --- transcribe ------------------------------------------------------------------------


class _Partials:
    """Shows each new hypothesis on stderr: a line each, or one updating line on a TTY."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""

    def update(self, hypothesis: str) -> None:
        if hypothesis == self._last:
            return
        self._last = hypothesis
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write(f"\r\x1b[K{hypothesis[-width:]}")
        else:
            self._stream.write(f"{hypothesis}\n")
        self._stream.flush()

    def end(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def _read_wav(path: Path) -> tuple[AudioFormat, bytes]:
    try:
        with wave.open(str(path), "rb") as wav:
            fmt = AudioFormat(wav.getframerate(), wav.getsampwidth(), wav.getnchannels())
            return fmt, wav.readframes(wav.getnframes())
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (EOFError, wave.Error) as exc:
        raise CommandError(f"{path} is not a PCM WAV file: {exc}") from None


async def transcribe(
    loaded: LoadedConfig, path: Path, language: str | None, partials: bool
) -> AsrResult:
    """The transcript of a WAV file of any rate, width and channel count. Its audio is sent
    in pieces as a live stream would be, but without waiting between them."""
    fmt, audio = await run_blocking(_read_wav, path)
    asr = build_asr(loaded)
    try:
        try:
            converter = PcmConverter(fmt, asr.input_format)
        except ValueError as exc:
            raise CommandError(f"cannot use {path}: {exc}") from None
        _progress(
            f"transcribing {fmt.seconds(len(audio)):.1f} s of audio ({fmt.rate} Hz, "
            f"{8 * fmt.width}-bit, {fmt.channels} ch) with {_chain(asr)} {asr.model}..."
        )
        display = _Partials(sys.stderr) if partials else None
        piece = max(1, int(fmt.rate * _PIECE_SECONDS)) * fmt.frame_bytes

        async def pieces() -> AsyncIterator[bytes]:
            for offset in range(0, len(audio), piece):
                if pcm := converter.convert(audio[offset : offset + piece]):
                    yield pcm

        started = time.monotonic()
        try:
            on_partial = display.update if display is not None else None
            result, after_end = await asr.recognize(language, pieces(), on_partial)
        finally:
            if display is not None:
                display.end()
        _progress(
            f"transcript in {_ms(started)} ({after_end * 1000:.0f} ms after the end of audio)"
        )
        return result
    finally:
        await _close(asr)


# --- voices ----------------------------------------------------------------------------


def _speaks(voice: Voice, language: str) -> bool:
    """Whether the voice speaks ``language``; "zh" matches "zh-CN" and the other way round."""
    wanted = language.lower().replace("_", "-")
    for spoken in voice.languages:
        spoken = spoken.lower().replace("_", "-")
        if spoken == wanted or spoken.startswith(f"{wanted}-") or wanted.startswith(f"{spoken}-"):
            return True
    return False


async def voices(loaded: LoadedConfig, language: str | None) -> list[str]:
    """Table lines of the TTS voices, the default first and marked with ``*``."""
    tts = build_tts(loaded)
    try:
        rows = [
            (
                "*" if index == 0 else " ",
                voice.name,
                ", ".join(voice.languages),
                voice.provider or tts.name,
                voice.description,
            )
            for index, voice in enumerate(tts.voices)
            if language is None or _speaks(voice, language)
        ]
    finally:
        await _close(tts)
    if not rows:
        raise CommandError(f"no voice of {_chain(tts)} speaks {language}")
    header = (" ", "name", "languages", "provider", "description")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(4)]
    lines = []
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
    return lines
