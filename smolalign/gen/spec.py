"""Generation specs: what `data_gen/*.yaml` may hold, checked by the same loader as the training recipes.

Each subset (gen/subsets/<name>.py) declares its own top-level settings (so `styles=` on magpie-ultra is an unknown
key with a did-you-mean, not a silently ignored one), its own sections and its own checks; the sections it shares
are in sections.py (`llm`, `seeds`, `output`, `decontaminate`, `ray`) and quality/spec.py (`labels`, `safety`,
`reward`, `near_dedup`, `minhash`, `filters`). Every value is checked before anything is written or any model is
loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import RecipeSchema, load_recipe, read_yaml
from ..errors import UsageError
from ..resources import resolve_recipe, shipped_dir
from .quality.spec import check_quality
from .sections import (DecontaminateSection, LLMSection, OutputSection, RaySection, check_llm, check_shared,
                       filled)
from .subsets import SUBSETS, subset_module

__all__ = ["LLMSection", "fingerprint_fields", "list_subsets", "llm_fingerprint", "load_spec", "schema_for"]

BASE_SECTIONS = {"llm": LLMSection, "output": OutputSection, "decontaminate": DecontaminateSection, "ray": RaySection}


def _check(subset: str, checked: dict) -> list[str]:
    """Problems that no single field's type can show; every one is reported at once. Each check reads the values
    over their dataclass's defaults."""
    module = subset_module(subset)
    checked = {**checked, "_settings": filled(module.Settings, checked.get("_settings"))}
    problems = check_shared(checked)
    if "labels" in module.sections():
        from ..config.typecheck import field_types

        problems += check_quality(subset, checked, field_types(LLMSection), check_llm)
    return problems + module.check(checked["_settings"], checked)


def schema_for(subset: str) -> RecipeSchema:
    module = subset_module(subset)
    paths = ("llm.model", "llm.tokenizer", "seeds.dataset", "decontaminate.against", "labels.llm.model",
             "safety.llm.model", "safety.model", "reward.model", "near_dedup.model", *module.PATHS)
    return RecipeSchema(kind="gen", sections={**BASE_SECTIONS, **module.sections()}, settings=module.Settings,
                        check=lambda checked: _check(subset, checked), paths=paths, folder="data_gen",
                        marker="subset")


def list_subsets() -> list[str]:
    """One line per shipped spec: name and what it makes (the spec's first comment line)."""
    lines = []
    for path in sorted(shipped_dir("data_gen").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        lines.append(f"{path.stem:<20} {first}")
    return lines


def load_spec(name_or_path: str, overrides: list[str], shortcuts: dict):
    """The resolved spec (a config.Recipe): defaults < YAML < flags < key=value overrides."""
    path = resolve_recipe(name_or_path, "data_gen")
    subset = read_yaml(path).get("subset")
    if subset not in SUBSETS:
        names = ", ".join(SUBSETS)
        raise UsageError(f"spec '{path}' has subset: {subset!r}, which is not one of {names}: set `subset:` in the "
                         f"file")
    flags = [f"{key}={_yaml_scalar(value)}" for key, value in shortcuts.items() if value is not None]
    recipe = load_recipe(str(path), subset, flags + list(overrides), schema=schema_for(subset))
    if recipe.sections["output"].dir is None:
        recipe.sections["output"].dir = str(Path("data") / subset)
    return recipe


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json

        return json.dumps(value)  # quoted, so a model named 'null' or '1e-3' stays a string
    return str(value)


# how an LLM is reached, not what it writes: a rerun may change them (the server's address may move)
NOT_FINGERPRINTED = ("base_url", "api_key_env", "batch_size", "max_retries", "timeout", "device", "dtype")


def llm_fingerprint(llm: LLMSection) -> dict:
    return {k: v for k, v in dataclasses.asdict(llm).items() if k not in NOT_FINGERPRINTED}


def fingerprint_fields(recipe) -> dict:
    """What decides the rows: a rerun into the same directory must match it. The quality passes have their own
    fingerprints (quality/passes.py), so changing a label or a threshold never asks for the rows again."""
    llm = llm_fingerprint(recipe.sections["llm"])
    return {"subset": recipe.kind, "settings": dataclasses.asdict(recipe.settings), "llm": llm,
            "label": None, "shard_size": recipe.sections["output"].shard_size,
            **subset_module(recipe.kind).fingerprint(recipe)}
