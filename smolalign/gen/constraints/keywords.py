"""The keywords:* checkers, (response, kwargs, prompt) -> bool: required, counted and forbidden words, letters."""

from __future__ import annotations

from .text import _compare, _occurrences

CHECKS = {
    "keywords:existence": lambda r, kw, p: all(_occurrences(r, k) for k in kw["keywords"]),
    "keywords:frequency": lambda r, kw, p: _compare(_occurrences(r, kw["keyword"]), kw["relation"], kw["frequency"]),
    "keywords:forbidden_words": lambda r, kw, p: not any(_occurrences(r, w) for w in kw["forbidden_words"]),
    "keywords:letter_frequency": lambda r, kw, p: _compare(
        r.lower().count(kw["letter"].lower()), kw["let_relation"], kw["let_frequency"]),
}
