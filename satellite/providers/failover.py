"""Failover across providers listed in order, with a circuit breaker per provider.

A provider that fails before producing any output (no partial transcript, no audio) hands
the request to the next one: buffered ASR audio is replayed and TTS text is sent again.
A provider that fails after it has produced output ends the request with its error. A
provider that keeps failing is skipped for a cool-down, then one request probes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Generic, Literal, TypeVar

from ..audio.pcm import AudioFormat, PcmConverter
from ..config import FailoverConfig
from ..errors import ErrorCode, ProviderError
from .base import (
    AsrProvider,
    AsrResult,
    AsrSession,
    EncodedAudio,
    PartialCallback,
    SynthesisOptions,
    TtsProvider,
    Voice,
)
from .text import WholeText

_LOGGER = logging.getLogger(__name__)

# Audio kept for a replay: 60 s of 16 kHz mono s16, longer than any voice command.
MAX_REPLAY_BYTES = 60 * 32000

BreakerState = Literal["closed", "open", "half-open"]
P = TypeVar("P", AsrProvider, TtsProvider)


class CircuitBreaker:
    """Opens after ``failures`` consecutive failures; after ``cooldown_s`` one request probes.

    Every ``begin()`` that returned True is followed by exactly one of ``succeeded()``,
    ``failed()`` or ``abandoned()``.
    """

    def __init__(
        self, label: str, settings: FailoverConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.label = label
        self._threshold = settings.failures
        self._cooldown = settings.cooldown_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self._cooldown:
            return "half-open"
        return "open"

    def available(self) -> bool:
        """Whether a request may use the provider now (no side effect)."""
        state = self.state
        return state == "closed" or (state == "half-open" and not self._probing)

    def begin(self) -> bool:
        """Claim an attempt; in the half-open state only one attempt at a time is let through."""
        if not self.available():
            return False
        if self.state == "half-open":
            self._probing = True
        return True

    def succeeded(self) -> None:
        if self._opened_at is not None:
            _LOGGER.info("%s answers again: back in use", self.label)
        self._consecutive, self._opened_at, self._probing = 0, None, False

    def failed(self) -> None:
        self._consecutive += 1
        was_probing, self._probing = self._probing, False
        if was_probing or self._consecutive >= self._threshold:
            self._opened_at = self._clock()
            _LOGGER.warning(
                "%s failed %d times in a row: skipped for %g s",
                self.label,
                self._consecutive,
                self._cooldown,
            )

    def abandoned(self) -> None:
        """The attempt ended without a verdict (the client went away)."""
        self._probing = False


def _passes_over(error: ProviderError) -> bool:
    """Whether another provider might succeed where this one failed."""
    return error.code != ErrorCode.BAD_REQUEST


def _combined(role: str, errors: list[tuple[str, ProviderError]]) -> ProviderError:
    """One error for a request that every provider failed: the last code, every reason."""
    if not errors:
        return ProviderError(ErrorCode.INTERNAL, f"{role}: no provider configured")
    reasons = "; ".join(f"{name}: {error.message}" for name, error in errors)
    return ProviderError(errors[-1][1].code, f"every provider failed: {reasons}")


def _candidates(breakers: list[CircuitBreaker], first: int = 0) -> list[int]:
    """Indexes of the providers to try, in order: those whose breaker is not open; when every
    breaker is open, all of them (trying costs nothing when nothing else could answer)."""
    order = [first, *(i for i in range(len(breakers)) if i != first)]
    return [i for i in order if breakers[i].available()] or order


class _Chain(Generic[P]):
    """What both failover lists share: the providers in order, a breaker each."""

    def __init__(
        self, role: str, chain: list[P], settings: FailoverConfig, clock: Callable[[], float]
    ) -> None:
        self._chain = tuple(chain)
        self._breakers = [CircuitBreaker(f"{role} {p.name}", settings, clock) for p in chain]
        self.name = ",".join(p.name for p in chain)

    # What the list offers is read from its members each time: a member whose worker
    # process started late has only then said what it offers.
    @property
    def model(self) -> str:
        return self._chain[0].model

    @property
    def members(self) -> tuple[P, ...]:
        return self._chain

    def breaker(self, index: int) -> CircuitBreaker:
        return self._breakers[index]

    async def prepare(self) -> None:
        await asyncio.gather(*(p.prepare() for p in self._chain))

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self._chain), return_exceptions=True)


def _provider_error(role: str, name: str, exc: Exception) -> ProviderError:
    """What a provider raised, as a ProviderError. Anything else (a bug, or an SDK raising
    what it documents nowhere) is logged with its traceback and then failed over like any
    provider failure, so the request still gets an answer."""
    if isinstance(exc, ProviderError):
        return exc
    _LOGGER.error("%s %s: unexpected failure", role, name, exc_info=exc)
    return ProviderError(ErrorCode.INTERNAL, "internal error")


def _log_failover(role: str, name: str, error: ProviderError) -> None:
    _LOGGER.warning(
        "%s %s failed before any output [%s]: %s", role, name, error.code, error.message
    )


# --- speech to text ----------------------------------------------------------


class FailoverAsr(_Chain[AsrProvider], AsrProvider):
    """ASR providers tried in order; the audio of an utterance is kept for a replay."""

    def __init__(
        self,
        chain: list[AsrProvider],
        settings: FailoverConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len({p.input_format for p in chain}) != 1:
            raise ValueError("ASR providers of a failover list must take the same audio format")
        super().__init__("ASR", chain, settings, clock)
        self.input_format = chain[0].input_format

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(lang for p in self.members for lang in p.languages))

    async def open(
        self, language: str | None, on_partial: PartialCallback | None = None
    ) -> AsrSession:
        session = _FailoverAsrSession(self, language, on_partial)
        await session.start()
        return session


class _FailoverAsrSession(AsrSession):
    def __init__(
        self, owner: FailoverAsr, language: str | None, on_partial: PartialCallback | None
    ) -> None:
        self._owner = owner
        self._language = language
        self._on_partial = on_partial
        self._audio: list[bytes] = []
        self._audio_bytes = 0
        self._replayable = True
        self._produced = False  # the current provider has reported a partial to the client
        self._errors: list[tuple[str, ProviderError]] = []
        self._order = iter(_candidates(owner._breakers))
        self._index = -1
        self._session: AsrSession | None = None

    def _partial(self, text: str) -> None:
        self._produced = True
        if self._on_partial is not None:
            self._on_partial(text)

    async def start(self) -> None:
        """Open the first provider that connects, replaying any audio kept so far."""
        for index in self._order:
            breaker = self._owner.breaker(index)
            breaker.begin()  # when every breaker is open, this is not a probe
            self._index, self._produced = index, False
            try:
                # Hypotheses the client never sees are no output: without a listener the
                # provider is not asked for them, and a failure later still fails over.
                listener = self._partial if self._on_partial is not None else None
                self._session = await self._owner.members[index].open(self._language, listener)
                for pcm in self._audio:
                    await self._session.send(pcm)
                return
            except Exception as exc:
                await self._failed(exc)
            except BaseException:
                breaker.abandoned()
                raise
        raise _combined("ASR", self._errors)

    async def _failed(self, exc: Exception) -> None:
        """Record a failure of the current provider; raise unless the next one may take over."""
        name = self._owner.members[self._index].name
        error = _provider_error("ASR", name, exc)
        self._owner.breaker(self._index).failed()
        session, self._session = self._session, None
        if session is not None:
            await session.cancel()
        if self._produced or not self._replayable or not _passes_over(error):
            raise error
        self._errors.append((name, error))
        _log_failover("ASR", name, error)

    async def send(self, pcm: bytes) -> None:
        if self._replayable:
            self._audio.append(pcm)
            self._audio_bytes += len(pcm)
            if self._audio_bytes > MAX_REPLAY_BYTES:
                self._replayable, self._audio = False, []
        if self._session is None:
            await self.start()
            return
        try:
            await self._session.send(pcm)
        except Exception as exc:
            await self._failed(exc)
            await self.start()

    async def finish(self) -> AsrResult:
        while True:
            if self._session is None:
                await self.start()
            assert self._session is not None
            try:
                result = await self._session.finish()
            except Exception as exc:
                await self._failed(exc)
                continue
            self._owner.breaker(self._index).succeeded()
            name = self._owner.members[self._index].name
            if self._errors:
                _LOGGER.info("ASR answered by %s", name)
            return dataclasses.replace(result, provider=name)

    async def cancel(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            self._owner.breaker(self._index).abandoned()
            await session.cancel()


# --- text to speech ----------------------------------------------------------


class _Recording:
    """The text of one request, read once from its source and replayable from the start.

    A single task pulls the source, so a provider that stops reading (it failed, its reader
    was cancelled) never disturbs the source for the next provider.
    """

    def __init__(self, source: AsyncIterator[str]) -> None:
        self._whole = source.text if isinstance(source, WholeText) else None
        self._pieces: list[str] = []
        self._ended = False
        self._changed = asyncio.Event()
        self._pump = None if self._whole is not None else asyncio.ensure_future(self._read(source))

    async def _read(self, source: AsyncIterator[str]) -> None:
        try:
            async for piece in source:
                self._pieces.append(piece)
                self._changed.set()
        finally:
            self._ended = True
            self._changed.set()

    def replay(self) -> AsyncIterator[str]:
        """The text from the start: whole again when it came whole."""
        return self._replay() if self._whole is None else WholeText(self._whole)

    async def _replay(self) -> AsyncIterator[str]:
        index = 0
        while True:
            while index < len(self._pieces):
                yield self._pieces[index]
                index += 1
            if self._ended:
                pump = self._pump  # there is one: a whole text is never replayed here
                if pump is not None and pump.done() and not pump.cancelled():
                    pump.result()  # the source's own failure, if any
                return
            self._changed.clear()
            await self._changed.wait()

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()


class FailoverTts(_Chain[TtsProvider], TtsProvider):
    """TTS providers tried in order; audio is converted to the first provider's format."""

    def __init__(
        self,
        chain: list[TtsProvider],
        settings: FailoverConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("TTS", chain, settings, clock)

    @property
    def audio_format(self) -> AudioFormat:
        return self.members[0].audio_format

    @property
    def voices(self) -> tuple[Voice, ...]:
        voices: dict[str, Voice] = {}
        for provider in self.members:
            for voice in provider.voices:
                voices.setdefault(voice.name, dataclasses.replace(voice, provider=provider.name))
        return tuple(voices.values())

    def _owner_of(self, voice: str | None) -> int | None:
        for index, provider in enumerate(self.members):
            if any(v.name == voice for v in provider.voices):
                return index
        return None

    async def synthesize(
        self, text: AsyncIterator[str], options: SynthesisOptions
    ) -> AsyncIterator[bytes]:
        recording = _Recording(text)
        try:
            speaking = self._first_to_speak(
                options,
                lambda provider, its_options: provider.synthesize(recording.replay(), its_options),
                convert=True,
            )
            async with contextlib.aclosing(speaking):
                async for pcm in speaking:
                    yield pcm
        finally:
            recording.close()

    def encoded_formats(self) -> frozenset[EncodedAudio]:
        """What every provider of the list encodes itself: whichever speaks, the format holds."""
        return frozenset.intersection(*(provider.encoded_formats() for provider in self.members))

    def synthesize_encoded(
        self, text: str, options: SynthesisOptions, encoding: EncodedAudio
    ) -> AsyncIterator[bytes]:
        """The stream of whichever provider speaks, at its own rate."""
        return self._first_to_speak(
            options,
            lambda provider, its_options: provider.synthesize_encoded(text, its_options, encoding),
            convert=False,
        )

    async def _first_to_speak(
        self,
        options: SynthesisOptions,
        speak: Callable[[TtsProvider, SynthesisOptions], AsyncIterator[bytes]],
        convert: bool,
    ) -> AsyncIterator[bytes]:
        """The audio ``speak`` gets from the first provider that produces some; ``convert``:
        PCM converted to the first provider's format."""
        owner = self._owner_of(options.voice)
        errors: list[tuple[str, ProviderError]] = []
        for index in _candidates(self._breakers, owner or 0):
            provider, breaker = self._chain[index], self._breakers[index]
            # A voice goes to the provider that has it (the first one for unknown voices).
            mine = index == owner or (owner is None and index == 0)
            its_options = dataclasses.replace(options, voice=options.voice if mine else None)
            converter = PcmConverter(provider.audio_format, self.audio_format) if convert else None
            breaker.begin()  # when every breaker is open, this is not a probe
            produced = False
            try:  # closed with this generator: the provider stops when the client goes
                audio = speak(provider, its_options)
                async with contextlib.aclosing(audio):
                    async for chunk in audio:
                        if not produced and options.on_speaker is not None:
                            options.on_speaker(provider.name, its_options.voice)
                        produced = True
                        yield chunk if converter is None else converter.convert(chunk)
            except Exception as exc:
                error = _provider_error("TTS", provider.name, exc)
                breaker.failed()
                if produced or not _passes_over(error):
                    if error is exc:
                        raise
                    raise error from exc
                errors.append((provider.name, error))
                _log_failover("TTS", provider.name, error)
                continue
            except BaseException:
                breaker.abandoned()
                raise
            breaker.succeeded()
            if errors:
                _LOGGER.info("TTS answered by %s", provider.name)
            return
        raise _combined("TTS", errors)
