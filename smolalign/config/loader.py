"""Recipes: YAML sections `model`, `data`, `training` (TRL's own config fields), optional `lora` (peft's).

One precedence, defaults < YAML < `key=value` overrides, and one validation pass that reports every problem at
once, with the nearest valid key for a typo, before any model or data is loaded.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..resources import resolve_recipe
from .files import read_yaml
from .overrides import deep_merge, parse_overrides, prefer_command_line_model
from .schema import Recipe, RecipeSchema
from .training import SCHEMAS
from .validation import validate


def anchor_paths(from_yaml: dict, recipe_dir: Path, keys: tuple[str, ...]) -> dict:
    """A relative path written in a recipe means relative to the recipe's folder when it exists there (so shipped
    recipes work from any directory, and a same-named folder where you stand never shadows the shipped one);
    otherwise it stays as written: relative to where you are (e.g. `runs/debug-sft`), or a hub id."""
    import copy

    def anchor(value):
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
            return value
        candidate = recipe_dir / value
        return str(candidate) if candidate.exists() else value

    def walk(node, parts):
        if not parts or node is None:
            return
        head, rest = parts[0], parts[1:]
        if head.endswith("[]"):
            items = node.get(head[:-2]) if isinstance(node, dict) else None
            for item in items if isinstance(items, list) else []:
                walk(item, rest)
        elif head == "*":
            for child in (node.values() if isinstance(node, dict) else []):
                walk(child, rest)
        elif isinstance(node, dict) and head in node:
            if rest:
                walk(node[head], rest)
            else:
                node[head] = anchor(node[head])

    out = copy.deepcopy(from_yaml)
    for key in keys:
        walk(out, key.split("."))
    return out


def load_recipe(name_or_path: str, kind: str, overrides: list[str] | None = None, defaults: dict | None = None,
                schema: RecipeSchema | None = None) -> Recipe:
    """Resolve, merge (defaults < YAML < overrides), validate and build a recipe for the command `kind`."""
    schema = schema or SCHEMAS[kind]
    path = resolve_recipe(name_or_path, schema.folder)
    from_yaml = anchor_paths(read_yaml(path), path.parent, schema.paths)
    declared = from_yaml.get(schema.marker)
    if schema.marker == "recipe" and declared is not None and declared != kind:
        raise UsageError(f"'{path}' is a {declared} recipe: run it with `smolalign {declared} {name_or_path}`")
    parsed = parse_overrides(overrides or [])
    from_files = prefer_command_line_model(deep_merge(defaults or {}, from_yaml), parsed)
    raw = deep_merge(from_files, parsed)
    written = deep_merge(prefer_command_line_model(from_yaml, parsed), parsed)
    checked, problems = validate(raw, schema)
    if problems:
        from ..redact import redact_text

        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise UsageError(redact_text(f"{count} in recipe {path}: " + "; ".join(problems)))
    sections = {}
    for name, cls in schema.sections.items():
        sections[name] = cls(**(checked.get(name) or {}))
    for name in schema.free:
        if name in checked:
            sections[name] = checked[name]
    return Recipe(
        kind=kind,
        model=sections.get("model"),
        data=sections.get("data"),
        training=checked.get("training") or {},
        lora=checked.get("lora"),
        path=str(path),
        raw=raw,
        sections=sections,
        settings=schema.settings(**checked["_settings"]) if schema.settings else None,
        schema=schema,
        written=written,
    )
