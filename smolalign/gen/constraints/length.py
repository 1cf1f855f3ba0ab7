"""The length_constraints:* checkers, (response, kwargs, strict) -> bool: sentences, paragraphs and words."""

from __future__ import annotations

import itertools
import re

from .text import _compare, count_words
from .tokens import split_sentences


def _divided(response: str, strict: bool) -> int | None:
    """Paragraphs between `***` dividers; None when one between two dividers is empty. IFEval splits on `***`
    anywhere (with one space either side), so `****` or `***bold italic***` divide too; strict: a divider is a
    line of its own."""
    divider = r"(?m)^[ \t]*\*\*\*[ \t]*$" if strict else r"\s?\*\*\*\s?"
    parts = re.split(divider, response)
    if any(not p.strip() for p in parts[1:-1]):
        return None
    return sum(1 for p in parts if p.strip())


def _nth_first_word(response: str, kw: dict) -> bool:
    """Paragraphs are what "\\n\\n" separates; the non-empty ones must number num_paragraphs, and paragraph
    nth_paragraph (counted over all pieces, empty ones too) starts with first_word. The first word is the first
    whitespace token, quotes stripped from its start, cut at the first . , ? ! ' or " and lower-cased, so
    "Hello," is "hello" but "**Hello**" is "**hello**"."""
    paragraphs = response.split("\n\n")
    count = sum(1 for p in paragraphs if p.strip())
    if kw["nth_paragraph"] > count or not paragraphs[kw["nth_paragraph"] - 1].strip():
        return False
    word = paragraphs[kw["nth_paragraph"] - 1].split()[0].lstrip("'").lstrip('"')
    first = "".join(itertools.takewhile(lambda ch: ch not in ".,?!'\"", word)).lower()
    return count == kw["num_paragraphs"] and first == kw["first_word"].lower()


CHECKS = {
    "length_constraints:number_sentences": lambda r, kw, s: _compare(
        len(split_sentences(r)), kw["relation"], kw["num_sentences"]),
    "length_constraints:number_paragraphs": lambda r, kw, s: _divided(r, s) == kw["num_paragraphs"],
    "length_constraints:number_words": lambda r, kw, s: _compare(count_words(r), kw["relation"], kw["num_words"]),
    "length_constraints:nth_paragraph_first_word": lambda r, kw, s: _nth_first_word(r, kw),
}
