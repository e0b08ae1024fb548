"""The ``say``, ``transcribe`` and ``voices`` commands: requests to the configured providers
(failover lists included), outside the servers, with progress on stderr.

Provider failures propagate as ProviderError; anything the user can fix locally (a file,
the speaker, the arguments) is a CommandError or an AudioFileError. ``transcribe`` reports
each file's failure and goes on with the next. Providers are closed on every way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from .audio.files import (
    AudioFile,
    AudioFileError,
    audio_seconds,
    check_writable,
    codec_label,
    read_audio,
    write_audio,
    write_encoded,
)
from .audio.pcm import PcmConverter
from .bridge import run_blocking
from .config import LoadedConfig
from .config_base import AUTO_LANGUAGE
from .errors import ProviderError
from .provider_table import PROVIDERS
from .providers.base import (
    AsrProvider,
    EncodedAudio,
    PartialCallback,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from .providers.registry import build_asr, build_tts
from .providers.text import WholeText

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


class _Speaking:
    """Which provider and voice speak: the first's, until a failover chain names another."""

    def __init__(self, tts: TtsProvider, voice: str | None) -> None:
        self._members = {member.name: member for member in tts.members}
        self.provider = tts.members[0].name
        self.voice = voice or _default_voice(tts.members[0])

    def changed(self, provider: str, voice: str | None) -> None:
        self.provider = provider
        self.voice = voice or _default_voice(self._members[provider])


def _default_voice(tts: TtsProvider) -> str:
    return tts.voices[0].name if tts.voices else "default"


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


# The encoding a provider may produce itself for a file of each extension. An Ogg Opus
# stream is a valid .ogg file too (RFC 7845), though .ogg encoded here is Vorbis.
_PROVIDER_ENCODED = {
    ".mp3": EncodedAudio.MP3,
    ".ogg": EncodedAudio.OGG_OPUS,
    ".opus": EncodedAudio.OGG_OPUS,
}


async def _write(
    tts: TtsProvider, text: str, options: SynthesisOptions, output: Path, spoken: _Speaking
) -> tuple[_Measured, float | None, str]:
    """Write the file as the provider encodes it when it can produce the file's encoding,
    else encode its PCM here: the audio, its seconds, and who encoded it."""
    encoding = _PROVIDER_ENCODED.get(output.suffix.lower())
    if encoding is not None and encoding in tts.encoded_formats():
        audio = _Measured(tts.synthesize_encoded(text, options, encoding))
        await write_encoded(output, audio.chunks())
        seconds = await run_blocking(audio_seconds, output)
        return audio, seconds, f"{encoding} from {spoken.provider}"
    audio = _Measured(tts.synthesize(WholeText(text), options))
    await write_audio(output, tts.audio_format, audio.chunks())
    return audio, tts.audio_format.seconds(audio.bytes), f"{codec_label(output)} encoded here"


async def say(loaded: LoadedConfig, text: str, voice: str | None, output: Path | None) -> None:
    """Speak ``text`` on the satellite's speaker, or into the audio file ``output`` (its
    extension names the codec; checked before anything is synthesized). A file the provider
    can encode itself (MP3, Ogg Opus at its rate) is written as the provider sends it;
    any other is encoded here from its PCM."""
    speaker_config = loaded.config.satellite.speaker
    if output is None and speaker_config is None:
        raise CommandError(
            "no speaker is configured (satellite.speaker is null): use --output FILE.wav"
        )
    started = time.monotonic()
    if output is not None:
        check_writable(output)
    tts = build_tts(loaded)
    try:
        if voice is not None and all(known.name != voice for known in tts.voices):
            first = tts.members[0].name  # a voice no member offers goes to the first
            section = getattr(loaded.config.providers, first)
            problem = PROVIDERS[first].voice_check(section, voice)
            if problem:
                raise CommandError(
                    f"--voice {voice!r} {problem}; 'voice-satellite voices' lists the voices"
                )
        fmt = tts.audio_format
        spoken = _Speaking(tts, voice)
        _progress(f"synthesizing with {_chain(tts)} {tts.model} voice {spoken.voice}...")
        options = SynthesisOptions(voice=voice, on_speaker=spoken.changed)
        seconds: float | None
        if output is not None:
            audio, seconds, encoded = await _write(tts, text, options, output, spoken)
            where = f"written to {output} ({encoded})"
        else:
            assert speaker_config is not None
            from .audio.speaker import Speaker, SpeakerError

            audio = _Measured(tts.synthesize(WholeText(text), options))
            device = Speaker(speaker_config)
            try:
                await device.play(fmt, audio.chunks())
            except SpeakerError as exc:
                raise CommandError(f"the speaker failed: {exc}") from None
            finally:
                await device.close()
            seconds = fmt.seconds(audio.bytes)
            where = f"played on {device.description}"
        first = (
            ""
            if audio.first_at is None
            else f" (first audio after {(audio.first_at - started) * 1000:.0f} ms)"
        )
        length = "" if seconds is None else f"{seconds:.1f} s of "
        _progress(
            f"{length}audio from {spoken.provider} voice {spoken.voice} {where}; "
            f"the command took {_ms(started)}{first}"
        )
    finally:
        await _close(tts)


# --- transcribe ------------------------------------------------------------------------

UNUSABLE_FILE = "unusable-file"  # the code of a file that could not be used (--json)


@dataclass(frozen=True)
class Transcript:
    """What one file was heard as; ``--json`` prints these fields."""

    file: str
    text: str
    language: str | None  # identified, else the one asked for, else the provider's default
    confidence: float | None
    provider: str  # the provider that answered (a failover list's member)
    seconds: float  # the recognition's wall time


@dataclass(frozen=True)
class Failure:
    """A file left without a transcript; ``--json`` prints these fields."""

    file: str
    error: str
    code: str  # the provider's error code, or UNUSABLE_FILE

    def line(self, named: bool) -> str:
        """The error as printed on stderr; ``named``: a provider's error names the file."""
        if self.code == UNUSABLE_FILE:  # its message names the file
            return f"error: {self.error}"
        return f"error [{self.code}]: {f'{self.file}: ' if named else ''}{self.error}"


class _Partials:
    """Shows each new hypothesis on stderr: a line each, or one updating line on a TTY."""

    def __init__(self, stream: TextIO, prefix: str = "") -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._prefix = prefix
        self._last = ""

    def update(self, hypothesis: str) -> None:
        if hypothesis == self._last:
            return
        self._last = hypothesis
        if self._tty:
            width = shutil.get_terminal_size().columns - 1
            self._stream.write(f"\r\x1b[K{hypothesis[-width:]}")
        else:
            self._stream.write(f"{self._prefix}{hypothesis}\n")
        self._stream.flush()

    def end(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


class _Bar:
    """One updating line on a terminal: files done of the total, the current file's name and
    what is heard in it so far."""

    _CELLS = 20

    def __init__(self, stream: TextIO, total: int) -> None:
        self._stream = stream
        self._total = total

    def show(self, done: int, name: str, heard: str = "") -> None:
        filled = self._CELLS * done // self._total
        line = f"[{'#' * filled}{'-' * (self._CELLS - filled)}] {done}/{self._total} {name}"
        width = shutil.get_terminal_size().columns - 1
        room = width - len(line) - 2
        if heard and room > 0:
            line = f"{line}: {heard[-room:]}"
        self._write(f"\r\x1b[K{line[:width]}")

    def clear(self) -> None:
        self._write("\r\x1b[K")

    def _write(self, text: str) -> None:
        self._stream.write(text)
        self._stream.flush()


def _pieces(audio: AudioFile, converter: PcmConverter) -> AsyncIterator[bytes]:
    """The file's audio in the recognizer's format, in pieces as a live stream would send."""
    piece = max(1, int(audio.fmt.rate * _PIECE_SECONDS)) * audio.fmt.frame_bytes

    async def pieces() -> AsyncIterator[bytes]:
        for offset in range(0, len(audio.pcm), piece):
            if pcm := converter.convert(audio.pcm[offset : offset + piece]):
                yield pcm

    return pieces()


class _Transcriber:
    """Files transcribed one after another by one provider, which keeps its connections
    warm between them. With one file its details go to stderr; with more, a progress bar
    on a terminal, else a line per file."""

    def __init__(
        self,
        asr: AsrProvider,
        paths: list[Path],
        language: str | None,
        partials: bool,
        default_language: str | None,
    ) -> None:
        self._asr = asr
        self._paths = paths
        self._language = language
        self._default_language = language or default_language
        self._partials = partials
        self._many = len(paths) > 1
        self._bar = _Bar(sys.stderr, len(paths)) if self._many and sys.stderr.isatty() else None

    async def run(self, emit: Callable[[Transcript | Failure], None]) -> list[Failure]:
        if self._many:
            asr = self._asr
            _progress(f"transcribing {len(self._paths)} files with {_chain(asr)} {asr.model}...")
        failures: list[Failure] = []
        started = time.monotonic()
        for done, path in enumerate(self._paths):
            if self._bar is not None:
                self._bar.show(done, path.name)
            outcome: Transcript | Failure
            try:
                outcome = await self._transcript(done, path)
            except (AudioFileError, CommandError) as exc:
                outcome = Failure(str(path), str(exc), UNUSABLE_FILE)
            except ProviderError as exc:
                outcome = Failure(str(path), exc.message, exc.code)
            finally:
                if self._bar is not None:
                    self._bar.clear()
            if isinstance(outcome, Failure):
                failures.append(outcome)
                _progress(outcome.line(named=self._many))
            emit(outcome)
        if self._many:
            _progress(
                f"{len(self._paths) - len(failures)} of {len(self._paths)} files transcribed "
                f"in {time.monotonic() - started:.1f} s"
            )
        return failures

    async def _transcript(self, done: int, path: Path) -> Transcript:
        asr = self._asr
        audio = await run_blocking(read_audio, path)
        fmt = audio.fmt
        try:
            converter = PcmConverter(fmt, asr.input_format)
        except ValueError as exc:
            raise CommandError(f"cannot use {path}: {exc}") from None
        described = (
            f"{fmt.seconds(len(audio.pcm)):.1f} s of audio "
            f"({audio.kind}, {fmt.rate} Hz, {fmt.channels} ch)"
        )
        if not self._many:
            _progress(f"transcribing {described} with {_chain(asr)} {asr.model}...")
        display: _Partials | None = None
        on_partial: PartialCallback | None = None
        if self._partials and self._bar is not None:
            on_partial = functools.partial(self._bar.show, done, path.name)
        elif self._partials:
            display = _Partials(sys.stderr, f"{path}: " if self._many else "")
            on_partial = display.update
        started = time.monotonic()
        try:
            result, after_end = await asr.recognize(
                self._language, _pieces(audio, converter), on_partial
            )
        finally:
            if display is not None:
                display.end()
        seconds = time.monotonic() - started
        if not self._many:
            _progress(
                f"transcript in {_ms(started)} ({after_end * 1000:.0f} ms after the end of audio)"
            )
        elif self._bar is None:
            _progress(
                f"[{done + 1}/{len(self._paths)}] {path}: {described}, transcript from "
                f"{result.provider} in {_ms(started)}"
            )
        return Transcript(
            file=str(path),
            text=result.text,
            language=result.language or self._default_language,
            confidence=result.confidence,
            provider=result.provider,
            seconds=round(seconds, 3),
        )


async def transcribe(
    loaded: LoadedConfig,
    paths: list[Path],
    language: str | None,
    partials: bool,
    emit: Callable[[Transcript | Failure], None],
) -> list[Failure]:
    """Transcribe audio files (WAV, MP3, FLAC, OGG; any rate and channels), each streamed
    in pieces as a live stream would be, without waiting between them. ``emit`` gets each
    file's outcome as soon as it is known; a file that fails does not stop the others.
    Returns the failures."""
    asr = build_asr(loaded)
    try:
        identifying = loaded.config.speech.asr.language == AUTO_LANGUAGE
        default = None if identifying or not asr.languages else asr.languages[0]
        return await _Transcriber(asr, paths, language, partials, default).run(emit)
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
