"""One validation pass over a recipe: every key type-checked against its dataclass or library class, every
problem collected, and the nearest valid key suggested for a typo."""

from __future__ import annotations

import difflib

from .schema import RecipeSchema, lora_fields, training_class
from .typecheck import _MISSING, coerce, field_types, type_name


def suggest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not match:  # a bare field name without its section: match on the last part
        last = {c.rsplit(".", 1)[-1]: c for c in candidates}
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(last), n=1, cutoff=0.75)
        match = [last[hit[0]]] if hit else []
    return f" (did you mean {match[0]}?)" if match else ""


def check_fields(prefix: str, values: dict, types: dict, problems: list[str], candidates: list[str]) -> dict:
    checked = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if key not in types:
            problems.append(f"unknown key {name}{suggest(name, candidates)}")
            continue
        result = coerce(value, types[key])
        if result is _MISSING:
            problems.append(f"{name}={value!r} has the wrong type: expected {type_name(types[key])}")
            continue
        checked[key] = result
    return checked


def section_types(schema: RecipeSchema, with_lora: bool) -> dict[str, dict]:
    types = {name: field_types(cls) for name, cls in schema.sections.items()}
    if schema.training:
        types["training"] = field_types(training_class(schema.training))
    if with_lora and schema.lora:
        types["lora"] = lora_fields()
    return types


def validate(raw: dict, schema: RecipeSchema) -> tuple[dict, list[str]]:
    """Type-check every section; return the checked values and the list of every problem found."""
    problems: list[str] = []
    types = section_types(schema, with_lora=raw.get("lora") is not None)
    top = field_types(schema.settings) if schema.settings else {}
    candidates = [f"{section}.{name}" for section, fields in types.items() for name in fields]
    candidates += list(top) + list(schema.free)
    checked: dict = {}
    settings = {}
    for key, value in raw.items():
        if key == schema.marker:
            continue
        if key in schema.free:
            checked[key] = value
            continue
        if key in top:
            result = coerce(value, top[key])
            if result is _MISSING:
                problems.append(f"{key}={value!r} has the wrong type: expected {type_name(top[key])}")
            else:
                settings[key] = result
            continue
        if key not in types:
            what = "section or key" if top else "section"
            problems.append(f"unknown {what} {key}{suggest(key, candidates + list(types))}")
            continue
        if value is None:
            checked[key] = None
            continue
        if not isinstance(value, dict):
            problems.append(f"section {key} must be a mapping, got {type(value).__name__}")
            continue
        checked[key] = check_fields(key, value, types[key], problems, candidates)
    if schema.settings:
        checked["_settings"] = settings
    if schema.check is not None:
        problems.extend(schema.check(checked))
    return checked, problems
