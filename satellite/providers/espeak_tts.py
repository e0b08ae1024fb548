"""Offline text-to-speech with the espeak-ng program: the voice left when the cloud is gone.

Each text is spoken by its own ``espeak-ng --stdin --stdout`` process, whose WAV output is
streamed as it is written. Streamed text is spoken sentence by sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import struct
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from ..audio.pcm import AudioFormat, PcmConverter
from ..errors import ErrorCode, ProviderError
from ..provider_specs.espeak import EspeakConfig
from .base import CallClock, Deadlines, SynthesisOptions, TtsProvider, Voice
from .text import SentenceSplitter

_LOGGER = logging.getLogger(__name__)
T = TypeVar("T")

OUTPUT_FORMAT = AudioFormat(rate=22050, width=2, channels=1)  # what espeak-ng writes
_READ_BYTES = 4096  # about 0.1 s of audio
_REAP_SECONDS = 1.0  # for the pipes of a killed run to close
_STDERR_CHARS = 300  # of the program's complaint, in an error message
_INSTALL_HINT = "install it (apt install espeak-ng) or set providers.espeak.program to its path"
# espeak-ng names Mandarin "cmn"; Home Assistant (and the other providers) call it "zh".
_LANGUAGES = {"cmn": "zh"}
_REGION = re.compile(r"[a-z]{2}|[0-9]{3}", re.IGNORECASE)  # "us", "gb", "419"


def voice_languages(voice: str) -> tuple[str, ...]:
    """The language of an espeak-ng voice: its language code, plus the region when the
    second part names one. The variant (``+f3``) and other parts (dialects, scripts,
    private use) are dropped: en-us → en-US, en-gb-x-rp → en-GB, es-419 → es-419,
    cmn → zh, cmn-latn-pinyin → zh, yue → yue, de → de."""
    language, *parts = voice.split("+", 1)[0].lower().split("-")
    language = _LANGUAGES.get(language, language)
    if parts and _REGION.fullmatch(parts[0]):
        return (f"{language}-{parts[0].upper()}",)
    return (language,)


def _exit_error(program: str, voice: str, returncode: int, stderr: str) -> ProviderError:
    """The error for a run that ended with ``returncode`` != 0."""
    if "voice" in stderr.lower():  # "The specified espeak-ng voice does not exist."
        message = f"espeak-ng has no voice {voice!r} (see espeak-ng --voices): {stderr}"
    elif returncode < 0:
        message = f"{program} was killed by signal {-returncode}"
    else:
        message = f"{program} failed with exit code {returncode}: {stderr or 'no message'}"
    return ProviderError(ErrorCode.PROVIDER_FAILED, message)


class _Run:
    """One run of the program, in its own process group so that stopping it stops anything
    it started; every wait is bounded by the call's deadlines."""

    def __init__(self, process: asyncio.subprocess.Process, clock: CallClock) -> None:
        self._process = process
        self._clock = clock
        assert process.stderr is not None
        self._stderr = asyncio.ensure_future(process.stderr.read())

    @classmethod
    async def start(cls, program: str, args: list[str], text: str, clock: CallClock) -> _Run:
        pipe = asyncio.subprocess.PIPE
        try:
            process = await asyncio.create_subprocess_exec(
                program, *args, stdin=pipe, stdout=pipe, stderr=pipe, start_new_session=True
            )
        except OSError as exc:
            raise ProviderError(
                ErrorCode.PROVIDER_FAILED,
                f"cannot run {program!r} ({exc.strerror or exc}): {_INSTALL_HINT}",
            ) from None
        assert process.stdin is not None
        process.stdin.write(text.encode())
        process.stdin.close()
        return cls(process, clock)

    async def read(self, size: int) -> bytes:
        """Up to ``size`` bytes of its output; b"" at the end."""
        assert self._process.stdout is not None
        return await self._within_deadline(self._process.stdout.read(size))

    async def read_exactly(self, size: int) -> bytes:
        """Raises asyncio.IncompleteReadError if the output ends first."""
        assert self._process.stdout is not None
        return await self._within_deadline(self._process.stdout.readexactly(size))

    async def finish(self) -> tuple[int, str]:
        """Wait for it to exit: its exit code and what it wrote to stderr (trimmed)."""
        returncode = await self._within_deadline(self._process.wait())
        stderr = await self._within_deadline(self._stderr)
        return returncode, " ".join(stderr.decode(errors="replace").split())[:_STDERR_CHARS]

    async def stop(self) -> None:
        """Kill what is left of its process group and reap it.

        The wait also covers its pipes closing; a process that left the group could hold them
        open for as long as it likes, so it is not waited for beyond ``_REAP_SECONDS``.
        """
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        try:
            await asyncio.wait_for(self._process.wait(), _REAP_SECONDS)
        except TimeoutError:
            _LOGGER.warning("espeak-ng: a process it started still holds its output open")
        self._stderr.cancel()

    async def _within_deadline(self, waiting: Awaitable[T]) -> T:
        phase = self._clock.deadlines.first_result
        try:
            async with asyncio.timeout(self._clock.limit(phase)):
                return await waiting
        except TimeoutError:
            raise self._clock.timeout_error("espeak-ng", phase) from None


async def _read_wav_format(run: _Run) -> AudioFormat:
    """Read the WAV header up to the start of the data chunk and return its format.

    espeak-ng writes the header before it knows the length: the RIFF and data sizes are
    placeholders, so the data chunk is read until the output ends.
    """
    riff = await run.read_exactly(12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WAVE":
        raise _not_wav("it does not start with a RIFF/WAVE header")
    fmt: AudioFormat | None = None
    while True:
        chunk, size = struct.unpack("<4sI", await run.read_exactly(8))
        if chunk == b"data":
            if fmt is None:
                raise _not_wav("its data chunk comes before a fmt chunk")
            return fmt
        body = await run.read_exactly(size + size % 2)  # chunks are padded to even sizes
        if chunk == b"fmt ":
            if size < 16:
                raise _not_wav("its fmt chunk is too short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag != 1:
                raise _not_wav(f"its samples are not PCM (format tag {tag})")
            fmt = AudioFormat(rate=rate, width=bits // 8, channels=channels)


def _not_wav(why: str) -> ProviderError:
    return ProviderError(ErrorCode.PROVIDER_FAILED, f"espeak-ng output is not a usable WAV: {why}")


async def _texts(text: AsyncIterator[str]) -> AsyncIterator[str]:
    """Plain text to speak, one run each: each sentence as soon as it is complete, and all
    that is left at once when the text has ended, so text given in one piece is one run.

    The next piece is read ahead while the current sentences are spoken.
    """
    splitter = SentenceSplitter()
    sentences: list[str] = []
    upcoming = asyncio.ensure_future(anext(text, None))
    try:
        while (piece := await upcoming) is not None:
            sentences += splitter.feed(piece)
            upcoming = asyncio.ensure_future(anext(text, None))
            await asyncio.sleep(0)  # a source that has already ended says so now
            if upcoming.done() and upcoming.result() is None:
                continue  # the text is complete: what is left is spoken as one
            for sentence in sentences:
                yield sentence
            sentences = []
        rest = " ".join([*sentences, *splitter.flush()])
        if rest:
            yield rest
    finally:
        upcoming.cancel()  # the rest of the text is not wanted
        upcoming.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.wait({upcoming})


async def _document(text: AsyncIterator[str]) -> AsyncIterator[str]:
    """An SSML document, spoken whole once all of it has arrived."""
    document = "".join([piece async for piece in text])
    if document.strip():
        yield document


class EspeakTtsProvider(TtsProvider):
    name = "espeak"
    model = "espeak-ng"
    audio_format = OUTPUT_FORMAT

    def __init__(self, config: EspeakConfig, default_voice: str | None) -> None:
        self._config = config
        self._voice = default_voice or config.voice
        self.voices = tuple(
            Voice(name=name, languages=voice_languages(name), description=f"espeak-ng {name}")
            for name in dict.fromkeys((self._voice, *config.voices))
        )

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        voice = options.voice or self._voice
        args = self._arguments(voice, options.ssml)
        clock: CallClock | None = None
        texts = _document(text) if options.ssml else _texts(text)
        async with contextlib.aclosing(texts):
            async for piece in texts:
                # The clock starts when the program is first run.
                clock = clock or CallClock(Deadlines.from_timeouts(self._config.timeouts))
                async with contextlib.aclosing(self._speak(piece, args, voice, clock)) as audio:
                    async for pcm in audio:
                        yield pcm

    async def prepare(self) -> None:
        """Check that the program runs; warn how to install it if not."""
        clock = CallClock(Deadlines.from_timeouts(self._config.timeouts))
        try:
            run = await _Run.start(self._config.program, ["--version"], "", clock)
            try:
                returncode, stderr = await run.finish()
            finally:
                await run.stop()
            if returncode != 0:
                raise _exit_error(self._config.program, self._voice, returncode, stderr)
        except ProviderError as exc:
            _LOGGER.warning("the offline voice will not work: %s", exc.message)

    def _arguments(self, voice: str, ssml: bool) -> list[str]:
        config = self._config
        args = ["-v", voice, "-s", str(config.speed), "-p", str(config.pitch)]
        args += ["-a", str(config.amplitude), "--stdin", "--stdout"]
        return [*args, "-m"] if ssml else args

    async def _speak(
        self, text: str, args: list[str], voice: str, clock: CallClock
    ) -> AsyncIterator[bytes]:
        """The PCM of one run speaking ``text``; the run is always stopped."""
        run = await _Run.start(self._config.program, args, text, clock)
        try:
            async with contextlib.aclosing(self._output(run, voice)) as audio:
                async for pcm in audio:
                    yield pcm
        finally:
            await run.stop()

    async def _output(self, run: _Run, voice: str) -> AsyncIterator[bytes]:
        """The PCM of a run, as it is written; raises if the run fails."""
        try:
            fmt: AudioFormat | None = await _read_wav_format(run)
        except asyncio.IncompleteReadError:
            fmt = None  # it wrote no (whole) header: its exit code tells why
        if fmt is not None:
            if fmt != self.audio_format:
                raise ProviderError(
                    ErrorCode.INTERNAL, f"espeak-ng wrote {fmt}, expected {self.audio_format}"
                )
            frames = PcmConverter(fmt, fmt)  # same format: only keeps partial frames for later
            while data := await run.read(_READ_BYTES):
                if pcm := frames.convert(data):
                    yield pcm
        returncode, stderr = await run.finish()
        if returncode != 0:
            raise _exit_error(self._config.program, voice, returncode, stderr)
        if fmt is None:
            raise ProviderError(
                ErrorCode.PROVIDER_FAILED, f"{self._config.program} wrote no WAV header"
            )
