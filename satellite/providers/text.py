"""Text helpers shared by the providers."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from statistics import fmean

from .base import AsrResult

# Han, kana, CJK punctuation and full-width forms: scripts written without spaces between
# words or sentences (Hangul is spaced, so it is not included).
_CJK = re.compile(
    r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)

# Where a sentence ends: Western punctuation before a space, CJK punctuation, a line break.
_SENTENCE_END = re.compile(r"[.!?;](?=\s)|[。！？；]|\n")


def join_phrases(phrases: list[str]) -> str:
    """Join recognized phrases with a space, except where either side of the join is CJK."""
    text = ""
    for phrase in (p.strip() for p in phrases):
        if phrase:
            if text and not (_CJK.match(text[-1]) or _CJK.match(phrase[0])):
                text += " "
            text += phrase
    return text


class SentenceSplitter:
    """Cuts streamed text into sentences as soon as each one is complete."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, piece: str) -> list[str]:
        self._buffer += piece
        sentences: list[str] = []
        start = 0
        for match in _SENTENCE_END.finditer(self._buffer):
            sentences.append(self._buffer[start : match.end()].strip())
            start = match.end()
        self._buffer = self._buffer[start:]
        return [s for s in sentences if s]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer.strip(), ""
        return [rest] if rest else []


class Hypothesis:
    """The running text of one utterance: its final phrases and the current partial one.

    ``on_change`` gets the whole text (finals and partial joined) whenever it changes.
    """

    def __init__(self, on_change: Callable[[str], None] | None) -> None:
        self._on_change = on_change
        self._finals: list[str] = []
        self._confidences: list[float] = []
        self._language: str | None = None
        self._partial = ""
        self._reported = ""

    @property
    def result(self) -> AsrResult:
        """The final phrases joined, their mean confidence and the last language identified."""
        confidence = fmean(self._confidences) if self._confidences else None
        return AsrResult(join_phrases(self._finals), confidence, self._language)

    def partial(self, text: str) -> None:
        self._partial = text
        self._report()

    def final(
        self, text: str, confidence: float | None = None, language: str | None = None
    ) -> None:
        self._finals.append(text)
        if confidence is not None:
            self._confidences.append(confidence)
        self._language = language or self._language
        self._partial = ""
        self._report()

    def _report(self) -> None:
        current = join_phrases([*self._finals, self._partial])
        if current != self._reported and self._on_change is not None:
            self._reported = current
            self._on_change(current)


def stable_prefix(previous: str, current: str) -> str:
    """The start two successive hypotheses agree on, cut back to a word boundary in spaced
    scripts: the part of a live transcript unlikely to be revised."""
    length = 0
    for a, b in zip(previous, current, strict=False):
        if a != b:
            break
        length += 1
    prefix = current[:length]
    if length < len(current) and length < len(previous) and prefix and not _CJK.match(prefix[-1]):
        prefix = prefix[: prefix.rfind(" ") + 1]  # the last word may still change
    return prefix


class WholeText(AsyncIterator[str]):
    """A text that arrives whole, for interfaces that take streamed text. Its ``text`` lets
    whoever passes it on (failover, a worker's stand-in) hand it over whole, with no
    piece-by-piece streaming."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._given = False

    async def __anext__(self) -> str:
        if self._given:
            raise StopAsyncIteration
        self._given = True
        return self.text

    async def aclose(self) -> None:
        self._given = True
