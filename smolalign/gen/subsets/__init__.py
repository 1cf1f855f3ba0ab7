"""The subsets gen makes, one module each, and the one table from a subset's name to its module.

A subset's module declares, top to bottom:
- `Settings`: its top-level spec keys (a dataclass over sections.Common), and `sections()`: its spec sections
  beyond the shared `llm`, `output`, `decontaminate` and `ray` (e.g. `seeds`, the quality passes');
- `check(settings, checked) -> problems`: what no field's type can show (values over their defaults);
- `ROUTES` (magpie, chat): the kinds of call its generator makes; `STRUCTURED`: whether it decodes JSON;
- `read_seeds(recipe)` and `plan_rows(recipe, seeds)`: the inputs of every requested row, from the spec alone;
- `add_steps(recipe, source, backends, replicas)`: its distilabel steps after `source`, returning the last;
- `interpret(recipe, row, error) -> Outcome`: one answered row -> its rows (or a failed or filtered row);
- `fingerprint(recipe)`: what else decides its rows (beyond settings and `llm`), and `PATHS`: its path keys.
Optional: `models(recipe)` and `backends(recipe, found)` (more models to load, by key: their devices and backends
are checked before any write), `count_kept(rows)` (more counts), `tally` and `write` (a dataset that is not
SmolTalk's conversations: ultrafeedback's preference pairs) and `TRAIN_WITH` (the command the summary suggests).

Only light modules are imported here; each subset imports distilabel inside `add_steps`.
"""

from __future__ import annotations

import importlib

from .common import Outcome

SUBSETS = {"magpie-ultra": "magpie_ultra", "smol-constraints": "smol_constraints", "smol-rewrite": "smol_rewrite",
           "smol-summarization": "smol_summarization", "ultrafeedback": "ultrafeedback"}

__all__ = ["SUBSETS", "Outcome", "add_steps", "interpret", "plan_rows", "read_seeds", "subset_module"]


def subset_module(name: str):
    return importlib.import_module(f"{__name__}.{SUBSETS[name]}")


def read_seeds(recipe):
    """The subset's seed inputs (None for a subset without seeds)."""
    return subset_module(recipe.kind).read_seeds(recipe)


def plan_rows(recipe, seeds) -> list[dict]:
    """Deterministic inputs for every requested row, from the spec (and seeds) alone."""
    return subset_module(recipe.kind).plan_rows(recipe, seeds)


def add_steps(recipe, source, backends: dict, replicas: int = 1):
    """Attach the subset's tasks after `source` (inside a `with Pipeline()` block); returns the last step."""
    return subset_module(recipe.kind).add_steps(recipe, source, backends, replicas)


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    """One pipeline output row -> Outcome. `error` is what the run logged when a batch failed (or None)."""
    return subset_module(recipe.kind).interpret(recipe, row, error)
