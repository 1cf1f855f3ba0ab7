"""The startend:* checkers, (response, kwargs, strict) -> bool: an end phrase, or quotation marks around it all."""

from __future__ import annotations


def _ends_with(response: str, phrase: str) -> bool:
    """Case-insensitive, after stripping space and then double quotes from the response (a quoted answer may
    end with the phrase inside its closing quote)."""
    return response.strip().strip('"').lower().endswith(phrase.strip().lower())


def _quotation(response: str) -> bool:
    """Straight double quotes first and last, around at least one more character."""
    text = response.strip()
    return len(text) > 1 and text[0] == '"' and text[-1] == '"'


CHECKS = {
    "startend:end_checker": lambda r, kw, s: _ends_with(r, kw["end_phrase"]),
    "startend:quotation": lambda r, kw, s: _quotation(r),
}
