"""The language:* checker, (response, kwargs, strict) -> bool: the response is in the asked language."""

from __future__ import annotations

from .text import is_language

CHECKS = {
    "language:response_language": lambda r, kw, s: is_language(r, kw["language"], s),
}
