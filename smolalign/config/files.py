"""Reading recipe YAML: booleans only from true/false, exponent floats as numbers, and one-line errors for
files that are not YAML mappings."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import UsageError


class RecipeLoader(yaml.SafeLoader):
    """YAML as people mean it in configs: only true/false are booleans (`save_strategy: no` stays "no"),
    and `1e-4` is a number."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def yaml_load(text: str):
    return yaml.load(text, Loader=RecipeLoader)


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"recipe '{path}' is not a text file (not UTF-8): give a YAML recipe") from error
    except OSError as error:
        raise UsageError(f"recipe '{path}' cannot be read ({error.strerror or type(error).__name__})") from error
    if "\x00" in text:
        raise UsageError(f"recipe '{path}' is a binary file: give a YAML recipe")
    try:
        loaded = yaml_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"recipe '{path}' is not valid YAML{where}: fix the syntax") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"recipe '{path}' must be a YAML mapping of sections (e.g. model, data, training)")
    return loaded
