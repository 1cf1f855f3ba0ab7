"""The length_constraints:* checkers, (response, kwargs, prompt) -> bool: sentences, paragraphs and words."""

from __future__ import annotations

import re

from .text import _blank_line_paragraphs, _compare, _divided_paragraphs, count_words, split_sentences


def _nth_first_word(response: str, kw: dict) -> bool:
    """Exactly num_paragraphs blank-line paragraphs, and the nth starts with first_word (case and punctuation
    around the word ignored)."""
    paragraphs = _blank_line_paragraphs(response)
    if len(paragraphs) != kw["num_paragraphs"]:
        return False
    first = re.sub(r"^\W+|\W+$", "", paragraphs[kw["nth_paragraph"] - 1].split()[0])
    return first.lower() == kw["first_word"].strip().lower()


CHECKS = {
    "length_constraints:number_sentences": lambda r, kw, p: _compare(
        len(split_sentences(r)), kw["relation"], kw["num_sentences"]),
    "length_constraints:number_paragraphs": lambda r, kw, p: len(_divided_paragraphs(r) or ()) == kw["num_paragraphs"],
    "length_constraints:number_words": lambda r, kw, p: _compare(count_words(r), kw["relation"], kw["num_words"]),
    "length_constraints:nth_paragraph_first_word": lambda r, kw, p: _nth_first_word(r, kw),
}
