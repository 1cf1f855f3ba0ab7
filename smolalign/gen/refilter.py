"""`smolalign gen SUBSET --output DIR --refilter KEY=VALUE ...`: DIR's committed rows and pass values tallied again
with other thresholds, asking no model anything.

The spec is DIR's own (recipe.yaml) with the new overrides on top. What decides the rows (the plan's fingerprint) and
every pass (its fingerprint, quality/passes.py) must be unchanged and fully committed: a change that would need a
model (another judge, a new reward model, more rows) is refused in one line, naming what changed, before anything
is written. What may change: filters.*, the deduplication thresholds (near_dedup.threshold and k, minhash.*,
output.dedup), decontamination, and how a model would be reached (e.g. llm.base_url), which nothing here uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..errors import UsageError
from ..outputs import output_lock
from ..runinfo import RECIPE_FILE, RUN_FILE
from .finish import finish, plan_fingerprint, previous_plan
from .spec import fingerprint_fields, load_spec


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        return {k: v for key, sub in value.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): value}


def _stored_run(out_dir: Path) -> dict:
    record = out_dir / RUN_FILE
    try:
        info = json.loads(record.read_text()) if record.is_file() and (out_dir / RECIPE_FILE).is_file() else None
    except (OSError, ValueError):
        info = None
    if not info or info.get("command") != "gen":
        raise UsageError(f"--refilter: '{out_dir}' holds no gen run ({RUN_FILE} and {RECIPE_FILE} missing): give "
                         f"the --output DIR of a finished `smolalign gen` run")
    if info.get("status") != "complete":
        raise UsageError(f"--refilter: the gen run in '{out_dir}' is not finished (status {info.get('status')}): run "
                         f"the same command without --refilter to finish it first")
    return info


def run_refilter(subset: str, overrides: list[str], shortcuts: dict, print_config: bool = False) -> dict:
    from .quality.checks import need_packages
    from .quality.passes import read_passes
    from .shards import ShardStore
    from .subsets import plan_rows, read_seeds

    out_dir = Path(shortcuts.get("output.dir") or Path("data") / subset).expanduser()
    info = _stored_run(out_dir)
    stored_path = str(out_dir / RECIPE_FILE)
    stored = load_spec(stored_path, [], {})
    if subset not in (stored.kind, stored_path):
        raise UsageError(f"--refilter: '{out_dir}' holds a {stored.kind} run, not {subset}: run `smolalign gen "
                         f"{stored.kind} --output {out_dir} --refilter ...`")
    recipe = load_spec(stored_path, overrides, {**shortcuts, "output.dir": str(out_dir)})
    if print_config:
        print(recipe.to_yaml(), end="")
        return {}
    rows = plan_rows(recipe, read_seeds(recipe))
    plan = previous_plan(out_dir)
    if not plan or plan.get("fingerprint") != plan_fingerprint(recipe, rows):
        old, new = _flat(fingerprint_fields(stored)), _flat(fingerprint_fields(recipe))
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k)) or ["the seed texts"]
        raise UsageError(f"--refilter asks no model, but {', '.join(changed)} would change the rows themselves: "
                         f"leave it out, or generate again (without --refilter, with --overwrite)")
    history = ShardStore(out_dir).records()
    _, _, incomplete = read_passes(recipe, rows, history, out_dir)
    if incomplete:
        raise UsageError(f"--refilter asks no model, but {', '.join(incomplete)} would need computing (a new or "
                         f"changed pass): run the same command without --refilter, which computes only that")
    need_packages(recipe)
    against = None
    if recipe.sections["decontaminate"].against:
        from .decontaminate import load_against

        against = load_against(recipe.sections["decontaminate"].against)
    started = time.monotonic()
    with output_lock(out_dir):
        return finish(recipe, rows, history, against, out_dir, info["generator"], started,
                      extra={"refiltered": list(overrides)})
