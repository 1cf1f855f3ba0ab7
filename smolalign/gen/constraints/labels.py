"""Labelling: the prompt an LLM answers to name a query's constraints, the JSON schema its answer is decoded under,
and the parser for its answer (which also reads free text, from a server that ignores the schema)."""

from __future__ import annotations

import json
import re

from .registry import _SPECS
from .text import LANGUAGES, RELATIONS
from .validation import _KIND_HELP

MAX_INSTRUCTIONS = 3  # a query with more checkable constraints is rare; the bound keeps every answer short
# each kwarg kind as JSON: bounded strings, so a complete answer fits label.max_new_tokens (counts are bounded by
# structured.py, since a schema's integer bounds do not reach the decoder)
_KIND_SCHEMA = {
    "count": {"type": "integer"},
    "relation": {"enum": list(RELATIONS)},
    "text": {"type": "string", "minLength": 1, "maxLength": 60},
    "word": {"type": "string", "pattern": "^[A-Za-z][A-Za-z'-]{0,29}$"},
    "words": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z][A-Za-z' -]{0,29}$"},
              "minItems": 1, "maxItems": 3},
    "letter": {"type": "string", "pattern": "^[A-Za-z]$"},
    "language": {"enum": sorted(LANGUAGES)},
}


def _instruction_schema(iid: str) -> dict:
    kwargs = {name: _KIND_SCHEMA[kind] for name, kind in _SPECS[iid].kwargs.items()}
    return {"type": "object", "required": ["id", "kwargs"], "additionalProperties": False,
            "properties": {"id": {"const": iid}, "kwargs": {"type": "object", "properties": kwargs,
                                                            "required": list(kwargs), "additionalProperties": False}}}


LABELS_SCHEMA = {"type": "object", "required": ["instructions"], "additionalProperties": False, "properties": {
    "instructions": {"type": "array", "minItems": 1, "maxItems": MAX_INSTRUCTIONS,
                     "items": {"anyOf": [_instruction_schema(iid) for iid in _SPECS]}}}}
"""What a labelling answer must look like: one to three known ids, each with exactly its kwargs of the right kinds
(a query with none is filtered either way: "no instructions")."""


def _catalogue() -> str:
    lines = []
    for iid, spec in _SPECS.items():
        args = ", ".join(f"{n}: {_KIND_HELP[k]}" for n, k in spec.kwargs.items())
        lines.append(f"- {iid}: {spec.meaning}." + (f" kwargs: {args}." if args else " kwargs: {}."))
    return "\n".join(lines)


LABELLING_PROMPT = (
    "Read the user query below and find every constraint on the form of the answer that a program could "
    "check. Map each one to an instruction id from this list and fill in its kwargs from the query:\n\n"
    + _catalogue() + "\n\n"
    "Use only these ids and kwarg names; leave out constraints that fit none of them, and never invent a "
    "constraint the query does not state. Relations are 'less than' (fewer than N) or 'at least' (N or more). "
    "Answer with JSON only, in this shape:\n"
    '{"instructions": [{"id": "length_constraints:number_words", "kwargs": {"num_words": 100, '
    '"relation": "less than"}}, {"id": "punctuation:no_comma", "kwargs": {}}]}\n'
    'If the query states no such constraint, answer {"instructions": []}.\n\n'
    "User query:\n{query}"
)


def labelling_prompt(query: str) -> str:
    """LABELLING_PROMPT for one query (the JSON braces in it rule out str.format)."""
    return LABELLING_PROMPT.replace("{query}", query)


def _as_labels(data) -> tuple[list[str], list[dict]]:
    """Accepts {"instructions": [{"id", "kwargs"}]}, a bare list of those, or IFEval's own
    {"instruction_id_list": [...], "kwargs": [...]}."""
    if isinstance(data, dict) and "instruction_id_list" in data:
        ids, kwargs = data["instruction_id_list"], data.get("kwargs") or [{} for _ in data["instruction_id_list"]]
        if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
            raise ValueError("instruction_id_list and kwargs must be lists of the same length")
        items = [{"id": i, "kwargs": k} for i, k in zip(ids, kwargs)]
    elif isinstance(data, dict) and "instructions" in data:
        items = data["instructions"]
    elif isinstance(data, list):
        items = data
    else:
        raise ValueError("JSON has no 'instructions' list")
    if not isinstance(items, list):
        raise ValueError("'instructions' is not a list")
    ids, kwargs = [], []
    for n, item in enumerate(items, 1):
        iid = item.get("id", item.get("instruction_id")) if isinstance(item, dict) else None
        if not isinstance(iid, str):
            raise ValueError(f"instruction {n} has no string 'id'")
        kw = item.get("kwargs") or {}
        if not isinstance(kw, dict):
            raise ValueError(f"instruction {n} has kwargs that are not an object")
        ids.append(iid)
        kwargs.append(kw)
    return ids, kwargs


def parse_constraint_labels(text: str) -> tuple[list[str], list[dict]]:
    """(ids, kwargs) from an LLM's answer to LABELLING_PROMPT: plain JSON, a ```json fence, or JSON inside
    prose (the first JSON value of a known shape wins). ValueError with a short reason otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty answer")
    candidates = [m.group(1) for m in re.finditer(r"```(?:json|JSON)?[ \t]*\n(.*?)```", text, flags=re.DOTALL)]
    candidates.append(text.strip())
    reason = "no JSON found"
    for candidate in candidates:
        try:
            return _as_labels(json.loads(candidate))
        except json.JSONDecodeError:
            continue
        except ValueError as error:  # the first JSON of the wrong shape says best what was wrong
            reason = str(error) if reason == "no JSON found" else reason
    decoder = json.JSONDecoder()
    for match in list(re.finditer(r"[\[{]", text))[:200]:  # JSON embedded in prose: try each opening bracket
        try:
            data, _ = decoder.raw_decode(text, match.start())
            return _as_labels(data)
        except json.JSONDecodeError:
            continue
        except ValueError as error:  # the first JSON of the wrong shape says best what was wrong
            reason = str(error) if reason == "no JSON found" else reason
    raise ValueError(f"unparseable labels: {reason}")
