"""Live transcripts, for a client that takes them.

Such a client gets ``transcript-start``, a ``transcript-chunk`` per new piece of the
hypothesis, and ``transcript-stop`` after the final ``transcript``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from wyoming.asr import Transcript, TranscriptChunk, TranscriptStart, TranscriptStop
from wyoming.event import Event

from ..providers.base import AsrResult
from ..providers.text import stable_prefix


def transcript_event(result: AsrResult, requested: str | None) -> Event:
    """The final ``transcript``: the language the service identified, else the one asked for."""
    return Transcript(text=result.text, language=result.language or requested).event()


class LiveTranscript:
    """The hypotheses of one utterance, sent as ``transcript-start`` and ``-chunk`` events.

    Chunks only ever append, and carry only text that two successive hypotheses agree on
    (providers revise the tail of a hypothesis as they hear more). Should text already sent
    be revised anyway, chunks pause until the hypothesis extends it again; the final
    ``transcript`` is authoritative.
    """

    def __init__(self, write: Callable[[Event], Awaitable[None]], language: str | None) -> None:
        self._write = write
        self._language = language
        self._sent = ""
        self._started = False
        self._previous = ""  # the last hypothesis
        self._latest = ""  # its stable part
        self._changed = asyncio.Event()
        self._writer = asyncio.ensure_future(self._write_changes())

    def update(self, hypothesis: str) -> None:
        """The provider's partial callback (on the event loop; never blocks)."""
        self._latest = stable_prefix(self._previous, hypothesis)
        self._previous = hypothesis
        self._changed.set()

    async def _write_changes(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            await self._extend(self._latest)

    async def _extend(self, hypothesis: str) -> None:
        if not self._started:
            self._started = True
            await self._write(TranscriptStart(language=self._language).event())
        if len(hypothesis) > len(self._sent) and hypothesis.startswith(self._sent):
            chunk, self._sent = hypothesis[len(self._sent) :], hypothesis
            await self._write(TranscriptChunk(text=chunk).event())

    async def stop(self) -> None:
        """Stop following the hypotheses (the writer is idle or finishing a write)."""
        self._writer.cancel()
        await asyncio.gather(self._writer, return_exceptions=True)

    async def finish(self, result: AsrResult | None) -> None:
        """Close the stream: the rest of the final ``result`` (None after a failure, when the
        ``error`` has been sent), then ``transcript-stop``."""
        await self.stop()
        if result is not None:
            await self._extend(result.text)
            await self._write(transcript_event(result, self._language))
        if self._started:
            await self._write(TranscriptStop().event())
