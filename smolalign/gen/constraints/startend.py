"""The startend:* checkers, (response, kwargs, prompt) -> bool: an end phrase, or quotation marks around it all."""

from __future__ import annotations


def _quotation(response: str) -> bool:
    text = response.strip()
    return len(text) > 1 and ((text[0], text[-1]) in {('"', '"'), ("\u201c", "\u201d")})


CHECKS = {
    "startend:end_checker": lambda r, kw, p: r.strip().lower().endswith(kw["end_phrase"].strip().lower()),
    "startend:quotation": lambda r, kw, p: _quotation(r),
}
