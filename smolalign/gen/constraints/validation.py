"""Whether a row's labels can be checked: each id known, its kwargs of the right kinds, and no two instructions
in conflict.

The kwargs are accepted as IFEval's `build_description` accepts them where it keeps them as given: counts of 0,
any one character as a `letter` ("#" too), an id repeated in a row. They are rejected where IFEval raises (a
language outside its 30 codes, repeat_prompt without prompt_to_repeat, a relation it does not know, a keyword
that is not a valid regular expression, an unknown kwarg) and also where IFEval would not check what the label
says, which is where it draws a random value instead: a kwarg left out, a negative count, a `letter` of two
characters, nth_paragraph outside 1..num_paragraphs. Deliberately stricter than IFEval, since a label like
that is a labelling mistake: a count that is a bool or a float, a keyword list given as one string, an empty
string (IFEval's check would then always pass), and a negative capital_frequency (which IFEval would keep).
(IFEval's evaluation also drops every falsy kwarg before `build_description`, so a count of 0 is random
there; here it means what it says: "less than 0" never holds, "at least 0" always does.)

Conflicts are ours, not IFEval's (its evaluation checks none): rows that could not be answered well are no
use as training data. `validate_instructions` rejects a row carrying both sides of one:
- english_capital <-> english_lowercase; either <-> constrained_response (its fixed phrase is mixed case).
- json_format <-> every id that imposes text structure outside JSON: two_responses, repeat_prompt, title,
  postscript, number_bullet_lists, number_highlighted_sections, multiple_sections, number_paragraphs,
  nth_paragraph_first_word, constrained_response, end_checker, quotation.
- two_responses <-> repeat_prompt, constrained_response; repeat_prompt <-> quotation; quotation <-> end_checker.
- number_paragraphs (`***` dividers) <-> nth_paragraph_first_word (blank-line paragraphs).
- By kwargs: response_language other than "en" <-> english_capital / english_lowercase; english_lowercase <->
  capital_word_frequency "at least"; english_capital <-> capital_word_frequency "less than"; a keyword both
  required (existence, frequency "at least") and forbidden; the same keyword or letter counted twice with
  "less than a" and "at least b" where b >= a.
"""

from __future__ import annotations

import re

from .registry import _SPECS
from .text import LANGUAGES, RELATIONS

_KIND_HELP = {"count": "a whole number, 0 or more", "relation": "'less than' or 'at least'",
              "text": "a non-empty string", "word": "one word", "words": "a non-empty list of non-empty strings",
              "letter": "one character", "language": "one of the codes " + ", ".join(LANGUAGES)}


def _kind_ok(kind: str, value) -> bool:
    if kind == "count":
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind == "relation":
        return value in RELATIONS
    if kind in ("text", "word"):  # "word" says what to write; IFEval takes any string (several words never match)
        return isinstance(value, str) and bool(value.strip())
    if kind == "words":
        return isinstance(value, list) and bool(value) and all(isinstance(w, str) and w.strip() for w in value)
    if kind == "letter":
        return isinstance(value, str) and len(value) == 1 and not value.isspace()
    if kind == "language":
        return value in LANGUAGES
    raise AssertionError(kind)


def _clean(kwargs: dict) -> dict:
    """Labels often list every IFEval kwarg with null for the unused ones: nulls mean "not given"."""
    return {k: v for k, v in kwargs.items() if v is not None}


# ---- validation and conflicts -------------------------------------------------------------------------------

def _pairs(*groups: tuple[str, tuple[str, ...]]) -> frozenset[frozenset[str]]:
    return frozenset(frozenset((a, b)) for a, others in groups for b in others)


_EC, _EL = "change_case:english_capital", "change_case:english_lowercase"
_JSON, _TWO, _REPEAT = "detectable_format:json_format", "combination:two_responses", "combination:repeat_prompt"
_CONSTRAINED, _QUOTE, _END = "detectable_format:constrained_response", "startend:quotation", "startend:end_checker"
CONFLICTS = _pairs(
    (_EC, (_EL, _CONSTRAINED)),
    (_EL, (_CONSTRAINED,)),
    (_JSON, (_TWO, _REPEAT, "detectable_format:title", "detectable_content:postscript",
             "detectable_format:number_bullet_lists", "detectable_format:number_highlighted_sections",
             "detectable_format:multiple_sections", "length_constraints:number_paragraphs",
             "length_constraints:nth_paragraph_first_word", _CONSTRAINED, _END, _QUOTE)),
    (_TWO, (_REPEAT, _CONSTRAINED)),
    (_REPEAT, (_QUOTE,)),
    (_QUOTE, (_END,)),
    ("length_constraints:number_paragraphs", ("length_constraints:nth_paragraph_first_word",)),
)


def _kwargs_problem(iid: str, kwargs) -> str | None:
    if not isinstance(kwargs, dict):
        return f"{iid}: kwargs must be an object, got {type(kwargs).__name__}"
    spec, given = _SPECS[iid], _clean(kwargs)
    unexpected = sorted(given.keys() - spec.kwargs.keys())
    if unexpected:
        return f"{iid}: unexpected kwarg '{unexpected[0]}' (takes {', '.join(spec.kwargs) or 'none'})"
    for name, kind in spec.kwargs.items():
        if name not in given:
            return f"{iid}: missing kwarg '{name}' ({_KIND_HELP[kind]})"
        if not _kind_ok(kind, given[name]):
            return f"{iid}: kwarg '{name}' must be {_KIND_HELP[kind]}, got {given[name]!r}"
    if iid == "length_constraints:nth_paragraph_first_word" and not 1 <= given["nth_paragraph"] <= given[
            "num_paragraphs"]:
        return f"{iid}: nth_paragraph {given['nth_paragraph']} is not within 1..{given['num_paragraphs']}"
    for pattern in spec.patterns(given):
        try:
            re.compile(pattern)
        except re.error as error:
            return f"{iid}: {pattern!r} is not a valid regular expression ({error})"
    return None


def _conflict(ids: list[str], kwargs: list[dict]) -> str | None:
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            if frozenset((a, b)) in CONFLICTS:
                return f"conflicting instructions: {a} and {b}"
    by_id: dict[str, list[dict]] = {}
    for iid, kw in zip(ids, kwargs):
        by_id.setdefault(iid, []).append(_clean(kw))
    one = {iid: kws[0] for iid, kws in by_id.items()}
    language = one.get("language:response_language", {}).get("language", "en").lower()
    if language != "en" and (_EC in one or _EL in one):
        return f"conflicting instructions: response_language '{language}' and an English-only case rule"
    capital = one.get("change_case:capital_word_frequency", {}).get("capital_relation")
    if (_EL in one and capital == "at least") or (_EC in one and capital == "less than"):
        return f"conflicting instructions: capital_word_frequency '{capital}' and the case of the whole answer"
    forbidden = {w.lower() for kw in by_id.get("keywords:forbidden_words", []) for w in kw["forbidden_words"]}
    required = {k.lower() for kw in by_id.get("keywords:existence", []) for k in kw["keywords"]}
    required |= {kw["keyword"].lower() for kw in by_id.get("keywords:frequency", []) if kw["relation"] == "at least"}
    if required & forbidden:
        return f"conflicting instructions: {sorted(required & forbidden)[0]!r} is both required and forbidden"
    for iid, target, count, relation in (("keywords:frequency", "keyword", "frequency", "relation"),
                                         ("keywords:letter_frequency", "letter", "let_frequency", "let_relation")):
        bounds: dict[str, dict[str, int]] = {}
        for kw in by_id.get(iid, []):
            bounds.setdefault(kw[target].lower(), {})[kw[relation]] = kw[count]
        for name, b in bounds.items():
            if "less than" in b and "at least" in b and b["at least"] >= b["less than"]:
                return (f"conflicting instructions: {iid} '{name}' at least {b['at least']} "
                        f"and less than {b['less than']}")
    return None


def validate_instructions(ids: list[str], kwargs: list[dict]) -> str | None:
    """None when the labels can be checked; otherwise the first reason they cannot (a row to drop)."""
    if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
        return "instruction ids and kwargs must be two lists of the same length"
    if not ids:
        return "no instructions"
    for iid, kw in zip(ids, kwargs):
        if iid not in _SPECS:
            return f"unknown instruction id {iid!r}"
        problem = _kwargs_problem(iid, kw)
        if problem:
            return problem
    return _conflict(ids, kwargs)
