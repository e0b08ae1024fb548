"""What every speech provider offers."""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..audio.pcm import SPEECH_FORMAT, AudioFormat
from ..errors import ErrorCode, ProviderError


class PhaseSeconds(Protocol):
    """A provider's configured timeouts (its ``timeouts`` section)."""

    connect: float
    first_result: float
    total: float


@dataclass(frozen=True)
class Deadlines:
    """Seconds allowed for each phase of one provider call."""

    connect: float = 5.0  # until the provider session is open
    first_result: float = 10.0  # from the end of input (ASR) / first text (TTS) to first output
    total: float = 60.0  # the whole call

    @classmethod
    def from_timeouts(cls, timeouts: PhaseSeconds) -> Deadlines:
        return cls(timeouts.connect, timeouts.first_result, timeouts.total)


@dataclass(frozen=True)
class Credentials:
    """A provider key and, when it is missing, how the user supplies it."""

    key: str
    hint: str  # e.g. "set the environment variable DASHSCOPE_API_KEY (...)"

    def __repr__(self) -> str:
        return f"Credentials(key={'***' if self.key else ''!r}, hint={self.hint!r})"

    def require(self, provider_label: str) -> str:
        """The key, or ProviderError(MISSING_CREDENTIALS) naming how to set it."""
        if not self.key:
            raise ProviderError(
                ErrorCode.MISSING_CREDENTIALS, f"no {provider_label} key: {self.hint}"
            )
        return self.key


@dataclass(frozen=True)
class Voice:
    """A TTS voice as advertised to Home Assistant."""

    name: str
    languages: tuple[str, ...]
    description: str = ""
    provider: str = ""  # set by a failover chain: which of its providers speaks it


# Told, once audio starts, which provider speaks and in which voice (None: its default).
SpeakerCallback = Callable[[str, str | None], None]


@dataclass(frozen=True)
class SynthesisOptions:
    """Per-request TTS settings from the Wyoming client."""

    voice: str | None = None
    ssml: bool = False
    on_speaker: SpeakerCallback | None = None  # a failover chain names the member speaking


class EncodedAudio(StrEnum):
    """A compressed format some providers produce themselves: a whole file's bytes."""

    MP3 = "MP3"
    OGG_OPUS = "Ogg Opus"


@dataclass(frozen=True)
class AsrResult:
    """What one utterance was recognized as."""

    text: str  # every final phrase joined ("" if nothing was said)
    confidence: float | None = None  # 0-1, the phrases' mean, where the service reports it
    language: str | None = None  # the language the service identified, where it says
    provider: str = ""  # the provider that answered: set by ``AsrProvider.recognize``


# Receives the whole hypothesis so far (every final phrase and the current partial, joined)
# each time it changes; called on the event loop, must not block.
PartialCallback = Callable[[str], None]


class AsrSession(ABC):
    """One utterance being recognized. Audio is 16 kHz mono s16le (``SPEECH_FORMAT``)."""

    @abstractmethod
    async def send(self, pcm: bytes) -> None:
        """Stream audio to the provider as it arrives (never blocks on the network)."""

    @abstractmethod
    async def finish(self) -> AsrResult:
        """End the audio and return what was recognized."""

    @abstractmethod
    async def cancel(self) -> None:
        """Abandon the utterance and release the connection; never raises."""


class AsrProvider(ABC):
    """A speech-to-text service."""

    name: str  # "dashscope", "azure": the provider key in config
    input_format: AudioFormat = SPEECH_FORMAT
    model: str  # model name shown in Home Assistant
    languages: tuple[str, ...]  # advertised; each is accepted verbatim in ``transcribe``

    @property
    def members(self) -> tuple[AsrProvider, ...]:
        """The providers doing the work: this one, or each link of a failover chain."""
        return (self,)

    @abstractmethod
    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        """Connect and start recognizing; ``language`` as HA sent it (None: default)."""

    async def prepare(self) -> None:
        """Get ready for the first request (import, pre-connect); never raises."""

    async def close(self) -> None:
        """Release anything held between requests."""

    async def recognize(
        self,
        language: str | None,
        audio: AsyncIterable[bytes],
        on_partial: PartialCallback | None = None,
    ) -> tuple[AsrResult, float]:
        """One utterance, streamed as ``audio`` yields it: what was recognized (naming the
        provider that answered), and the seconds the provider took after the end of the
        audio. A failure cancels the session."""
        session = await self.open(language, on_partial)
        try:
            async for pcm in audio:
                await session.send(pcm)
            audio_ended = time.monotonic()
            result = await session.finish()
        except BaseException:
            await session.cancel()
            raise
        if not result.provider:  # a failover list's session names its member
            result = dataclasses.replace(result, provider=self.name)
        return result, time.monotonic() - audio_ended


class TtsProvider(ABC):
    """A text-to-speech service."""

    name: str
    audio_format: AudioFormat  # format of every chunk ``synthesize`` yields
    model: str  # model or engine name shown in Home Assistant
    voices: tuple[Voice, ...]  # advertised; the first is the default

    @property
    def members(self) -> tuple[TtsProvider, ...]:
        """The providers doing the work: this one, or each link of a failover chain."""
        return (self,)

    @abstractmethod
    def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        """Speak text that arrives in pieces, yielding audio as the provider produces it.

        Raises ProviderError on failure. The iterator ends when ``text`` is exhausted
        and all its audio has been yielded.
        """

    def encoded_formats(self) -> frozenset[EncodedAudio]:
        """What ``synthesize_encoded`` produces at ``audio_format.rate``: none unless the
        service encodes itself."""
        return frozenset()

    def synthesize_encoded(
        self, text: str, options: SynthesisOptions, encoding: EncodedAudio
    ) -> AsyncIterator[bytes]:
        """Speak a whole, non-blank text as one stream of ``encoding`` (one of
        ``encoded_formats()``) at ``audio_format.rate``: the bytes of a file, as they come.

        Raises ProviderError on failure.
        """
        raise ValueError(f"{self.name} does not produce {encoding} itself")

    async def prepare(self) -> None:
        """Get ready for the first request (import, pre-connect); never raises."""

    async def close(self) -> None:
        """Release anything held between requests."""


# asyncio may end a wait up to its clock's resolution before the deadline asked for.
_TIMER_SLACK_SECONDS = 0.01


class CallClock:
    """The deadlines of one provider call: each wait gets its phase limit, capped by the total."""

    def __init__(self, deadlines: Deadlines, slack: float = 0.0) -> None:
        """``slack`` extends every limit, for a caller that must let the callee's own
        deadline fire first."""
        self.deadlines = deadlines
        self._slack = slack
        self._start = time.monotonic()
        self._end = self._start + deadlines.total + slack

    def limit(self, phase_seconds: float) -> float:
        """Seconds to wait now for a phase allowed ``phase_seconds``."""
        return max(0.0, min(phase_seconds + self._slack, self._end - time.monotonic()))

    def left_of(self, phase_seconds: float) -> float:
        """Seconds left of a phase that began with the call (the connect phase)."""
        return self.limit(phase_seconds - (time.monotonic() - self._start))

    def remaining(self) -> float:
        """Seconds left of the whole call."""
        return max(0.0, self._end - time.monotonic())

    def output_phase(self, waiting_since: float | None, output_started: bool) -> float:
        """The phase of a wait for output: ``first_result`` from ``waiting_since`` (when the
        input went out) until the first output comes, else ``total``."""
        if waiting_since is not None and not output_started:
            return self.deadlines.first_result
        return self.deadlines.total

    def output_limit(self, waiting_since: float | None, output_started: bool) -> float:
        """Seconds to wait now for the next output (see ``output_phase``)."""
        if waiting_since is None or output_started:
            return self.limit(self.deadlines.total)
        return self.limit(self.deadlines.first_result - (time.monotonic() - waiting_since))

    def timeout_error(self, what: str, phase_seconds: float) -> ProviderError:
        """The error for a wait that ran out: blames the total deadline when that was hit."""
        if self._end - time.monotonic() <= _TIMER_SLACK_SECONDS:
            return ProviderError(
                ErrorCode.TIMEOUT, f"{what}: not finished within {self.deadlines.total:g} s"
            )
        return ProviderError(ErrorCode.TIMEOUT, f"{what}: no answer within {phase_seconds:g} s")
