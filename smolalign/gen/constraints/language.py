"""The language:* checker, (response, kwargs, prompt) -> bool: the response is in the asked language."""

from __future__ import annotations

from .text import detect_language

CHECKS = {
    "language:response_language": lambda r, kw, p: detect_language(r) == kw["language"].lower().split("-")[0],
}
