"""The keywords:* checkers, (response, kwargs, strict) -> bool: required, counted and forbidden words, letters.

IFEval takes a keyword as a regular expression searched case-insensitively, so a plain word is found inside
longer words ("cat" in "category"); a forbidden word is the same with `\\b` on both sides. The strict reading
takes each keyword literally, as a whole word or phrase.
"""

from __future__ import annotations

import re
from collections import Counter

from .text import _compare, _whole_words


def forbidden_pattern(word: str) -> str:
    return r"\b" + word + r"\b"


def _count(text: str, keyword: str, strict: bool) -> int:
    return _whole_words(text, keyword) if strict else len(re.findall(keyword, text, flags=re.IGNORECASE))


def _forbidden(text: str, word: str, strict: bool) -> bool:
    if strict:
        return _whole_words(text, word) > 0
    return re.search(forbidden_pattern(word), text, flags=re.IGNORECASE) is not None


CHECKS = {
    "keywords:existence": lambda r, kw, s: all(_count(r, k, s) for k in kw["keywords"]),
    "keywords:frequency": lambda r, kw, s: _compare(_count(r, kw["keyword"].strip(), s), kw["relation"],
                                                    kw["frequency"]),
    "keywords:forbidden_words": lambda r, kw, s: not any(_forbidden(r, w, s) for w in kw["forbidden_words"]),
    # the letter and the text compared in lower case, one character at a time
    "keywords:letter_frequency": lambda r, kw, s: _compare(
        Counter(r.lower())[kw["letter"].lower()], kw["let_relation"], kw["let_frequency"]),
}
