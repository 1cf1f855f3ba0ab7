"""What the judge answers: one {rationale, rating} per rated text, as JSON under `ratings_schema`, and how it is
read (`parse_ratings`). The rationale is bounded, so a complete answer fits the judge's `max_new_tokens`
(`judge_tokens`, checked with the spec)."""

from __future__ import annotations

import json

RATINGS = [1, 2, 3, 4, 5]
RATIONALE_CHARS = 80
"""A rationale's bound: at worst one token a character, so a complete answer for 4 texts fits 512 new tokens."""


def judge_tokens(count: int) -> int:
    """New tokens that hold the judge's answer for `count` texts whatever its tokens: the braces, and per text its
    key, its rationale (at worst a token a character) and its rating."""
    return 8 + count * (RATIONALE_CHARS + 24)


def ratings_schema(count: int) -> dict:
    """One {rationale, rating} per text, the rationale first (the judge says why, then rates) and bounded, so a
    complete answer fits the judge's max_new_tokens."""
    rationale = {"type": "string", "minLength": 3, "maxLength": RATIONALE_CHARS}
    text = {"type": "object", "properties": {"rationale": rationale, "rating": {"enum": RATINGS}},
            "required": ["rationale", "rating"], "additionalProperties": False}
    names = [f"text_{i + 1}" for i in range(count)]
    return {"type": "object", "properties": {name: text for name in names}, "required": names,
            "additionalProperties": False}


def parse_ratings(answer, count: int) -> tuple[list, list]:
    """(ratings, rationales) of `count` texts from the judge's JSON; None where a text's rating does not parse."""
    try:
        data = json.loads(answer) if isinstance(answer, str) else None
    except ValueError:
        data = None
    ratings, rationales = [], []
    for i in range(count):
        text = data.get(f"text_{i + 1}") if isinstance(data, dict) else None
        rating = text.get("rating") if isinstance(text, dict) else None
        ratings.append(rating if rating in RATINGS else None)
        rationales.append(text.get("rationale") if isinstance(text, dict) else None)
    return ratings, rationales
