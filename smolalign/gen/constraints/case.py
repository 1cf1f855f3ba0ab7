"""The change_case:* and punctuation:* checkers, (response, kwargs, prompt) -> bool: capital words, the whole
answer in one case, no commas."""

from __future__ import annotations

import re

from .text import _WORD, _compare, detect_language


def _case(response: str, upper: bool) -> bool:
    """All letters in one case, at least one letter, and English (detected on the lower-cased text, as
    langdetect's profiles are learnt from ordinary text)."""
    if not re.search(r"[^\W\d_]", response) or response != (response.upper() if upper else response.lower()):
        return False
    return detect_language(response.lower()) == "en"


CHECKS = {
    "change_case:capital_word_frequency": lambda r, kw, p: _compare(
        sum(1 for w in _WORD.findall(r) if w.isupper()), kw["capital_relation"], kw["capital_frequency"]),
    "change_case:english_capital": lambda r, kw, p: _case(r, upper=True),
    "change_case:english_lowercase": lambda r, kw, p: _case(r, upper=False),
    "punctuation:no_comma": lambda r, kw, p: "," not in r and "\uff0c" not in r,
}
