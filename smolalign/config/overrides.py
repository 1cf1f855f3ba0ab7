"""`key=value` overrides and the merge of defaults < YAML < command line."""

from __future__ import annotations

import yaml

from ..errors import UsageError
from .files import yaml_load


def parse_overrides(items: list[str]) -> dict:
    """`a.b=value` strings into a nested dict; values are YAML (so `true`, `[1, 2]`, `{x: 1}` work)."""
    nested: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"override '{item}' is not key=value: write e.g. training.learning_rate=1e-4")
        try:
            value = yaml_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UsageError(f"override '{item}' sets inside '{part}', which is not a section")
        target[parts[-1]] = value
    return nested


def deep_merge(base: dict, top: dict) -> dict:
    """Later wins; mappings merge key by key (lists are replaced whole)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def prefer_command_line_model(from_file: dict, overrides: dict) -> dict:
    """`model.name_or_path=DIR` on the command line replaces the file's preset (and its tokenizer), and
    `model.preset=X` replaces the file's name_or_path: the command line names the model, whole."""
    model_over = overrides.get("model") if isinstance(overrides.get("model"), dict) else {}
    model_file = from_file.get("model") if isinstance(from_file.get("model"), dict) else None
    if not model_over or model_file is None:
        return from_file
    model_file = dict(model_file)
    if model_over.get("name_or_path") and "preset" not in model_over:
        model_file.pop("preset", None)
        if "tokenizer" not in model_over:
            model_file.pop("tokenizer", None)
    if model_over.get("preset") and "name_or_path" not in model_over:
        model_file.pop("name_or_path", None)
    return {**from_file, "model": model_file}
