"""The change_case:* and punctuation:* checkers, (response, kwargs, strict) -> bool: words in capitals, the whole
answer in one case, no commas."""

from __future__ import annotations

from .text import _compare, is_language
from .tokens import word_tokenize


def _one_case(response: str, upper: bool, strict: bool) -> bool:
    """Python's isupper()/islower() (at least one cased letter, none of the other case), then English by
    langdetect. IFEval detects on the text as written, and langdetect, whose profiles are learnt from ordinary
    text, takes much French in capitals for English; the strict reading detects on the lower-cased text."""
    if not (response.isupper() if upper else response.islower()):
        return False
    return is_language(response.lower() if strict else response, "en", strict)


CHECKS = {
    # nltk's word tokens: "STATE-OF-THE-ART" is one word, "DON'T" two ("DO", "N'T"), "," none
    "change_case:capital_word_frequency": lambda r, kw, s: _compare(
        sum(1 for w in word_tokenize(r) if w.isupper()), kw["capital_relation"], kw["capital_frequency"]),
    "change_case:english_capital": lambda r, kw, s: _one_case(r, upper=True, strict=s),
    "change_case:english_lowercase": lambda r, kw, s: _one_case(r, upper=False, strict=s),
    # IFEval looks for the ASCII comma only; the strict reading also refuses the full-width comma of CJK text
    "punctuation:no_comma": lambda r, kw, s: "," not in r and not (s and "\uff0c" in r),
}
