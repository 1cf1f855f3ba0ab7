"""What gen does, pinned before its code moves (as the training losses are, test_pinned_losses.py): the rows every
shipped spec plans for a fixed seed and seed file, with the plan's fingerprint (a changed fingerprint would make
every existing output refuse to resume), and the rows a tiny-model run keeps (checked by the end-to-end tests in
test_gen.py through `assert_pinned_rows`, which run anyway: no extra CI time).

To pin new values after an intended change of behaviour, run

    SMOLALIGN_REPIN=1 python -m pytest tests/test_gen_pins.py tests/test_gen.py -k "pins or end_to_end"

and commit `tests/references/gen_pins.json` with a word on why the rows moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

PINS = Path(__file__).parent / "references" / "gen_pins.json"
# subset -> the overrides it is planned with (Magpie subsets need a row count; the seed subsets read their shipped
# seed files whole)
PLANNED = {"magpie-ultra": ["num_rows=300", "seed=7"], "smol-constraints": ["num_rows=5"],
           "smol-rewrite": [], "smol-summarization": ["seed=3"]}


def digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]


def _read() -> dict:
    return json.loads(PINS.read_text()) if PINS.is_file() else {}


def check_pin(key: str, value) -> None:
    """`value` equals the pinned one (or, with SMOLALIGN_REPIN=1, becomes it)."""
    pins = _read()
    if os.environ.get("SMOLALIGN_REPIN"):
        PINS.write_text(json.dumps({**pins, key: value}, indent=2, sort_keys=True) + "\n")
        return
    assert key in pins, f"no pin for {key}: run with SMOLALIGN_REPIN=1 once and commit {PINS.name}"
    assert value == pins[key], f"{key} moved: {value} != pinned {pins[key]}"


def assert_pinned_rows(subset: str, rows: list[dict]) -> None:
    """The kept rows of a tiny-model run: sampling is seeded by the pipeline's name (llms.py), so the same plan
    samples the same rows on the same machine. The columns a later change may add are left out of the hash."""
    kept = [{k: row.get(k) for k in ("messages", "gen_id", "source", "truncated")} for row in rows]
    check_pin(f"tiny-run/{subset}", {"kept": len(rows), "rows": digest(sorted(kept, key=json.dumps))})


@pytest.mark.parametrize("subset", list(PLANNED))
def test_the_shipped_specs_plan_the_pinned_rows(subset):
    from smolalign.gen.finish import plan_fingerprint
    from smolalign.gen.spec import load_spec
    from smolalign.gen.subsets import plan_rows, read_seeds

    recipe = load_spec(subset, PLANNED[subset], {})
    rows = plan_rows(recipe, read_seeds(recipe))
    first = {k: v for k, v in rows[0].items() if k != "messages" and k != "system_prompt"}
    check_pin(f"plan/{subset}", {"rows": len(rows), "digest": digest(rows), "first": first,
                                 "fingerprint": plan_fingerprint(recipe, rows)})
