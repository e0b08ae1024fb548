"""Text helpers shared by the providers."""

from __future__ import annotations

import re

# Han, kana, CJK punctuation and full-width forms: scripts written without spaces between
# words or sentences (Hangul is spaced, so it is not included).
_CJK = re.compile(
    r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef\U00020000-\U0003ffff]"
)


def join_phrases(phrases: list[str]) -> str:
    """Join recognized phrases with a space, except where either side of the join is CJK."""
    text = ""
    for phrase in (p.strip() for p in phrases):
        if phrase:
            if text and not (_CJK.match(text[-1]) or _CJK.match(phrase[0])):
                text += " "
            text += phrase
    return text
