"""The end of every gen run, shared by generation and --refilter: the plan's fingerprint, the run record, and
committed records -> dataset, card, label figure and the final table. Reads only what is committed; asks no model.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

from .shards import WORK
from .spec import fingerprint_fields

PLAN_FILE = "plan.json"


def plan_fingerprint(recipe, rows: list[dict]) -> str:
    """The hash of json.dumps({"rows": rows, "spec": ...}, sort_keys=True), fed row by row: a large plan is never
    one string in memory."""
    digest = hashlib.sha256(b'{"rows": [')
    for i, row in enumerate(rows):
        digest.update(((", " if i else "") + json.dumps(row, sort_keys=True, default=str)).encode())
    digest.update(('], "spec": ' + json.dumps(fingerprint_fields(recipe), sort_keys=True, default=str) + "}").encode())
    return digest.hexdigest()[:16]


def previous_plan(out_dir: Path) -> dict | None:
    path = out_dir / WORK / PLAN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def generator_record(backend, llm=None) -> dict:
    return backend.record(llm)  # a server's identity, dialect and sampling sent too (gen/backends.py)


def write_record(out_dir: Path, recipe, generator: dict, status: str, extra: dict | None = None) -> None:
    from .. import runinfo

    runinfo.write_record(out_dir, recipe, {
        "command": "gen", "subset": recipe.kind, "status": status, "spec_path": recipe.path, "spec": recipe.to_dict(),
        "generator": generator, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})})


def finish(recipe, rows, history, against, out_dir: Path, generator: dict, started: float, extra=None) -> dict:
    """Committed records -> dataset, card, figure, run record and the final table (generation and refilter alike).
    A subset whose rows are not SmolTalk's conversations tallies and writes them itself (its `tally`, `write`)."""
    from ..redact import redact_text
    from .display import print_summary
    from .subsets import subset_module

    command = redact_text(" ".join(["smolalign", *sys.argv[1:]]) if sys.argv[0].endswith(("smolalign", "cli.py"))
                          else f"smolalign gen {recipe.kind}")
    module = subset_module(recipe.kind)
    if hasattr(module, "tally"):
        kept, counts, failures, rejected = module.tally(recipe, rows, history, against)
        module.write(recipe, out_dir, kept, failures, rejected, counts, generator, command)
    else:
        counts = _smoltalk(recipe, rows, history, against, out_dir, generator, command)
    seconds = time.monotonic() - started
    write_record(out_dir, recipe, generator, "complete", {"counts": counts, "seconds": round(seconds, 1),
                                                           **(extra or {})})
    print_summary(recipe.kind, counts, str(out_dir), seconds)
    from .backends import label_advice

    if advice := label_advice(generator, counts):  # labels failed on a server that constrains no JSON: say why
        print(f"warning: {advice}", file=sys.stderr)
    return counts


def _smoltalk(recipe, rows, history, against, out_dir: Path, generator: dict, command: str) -> dict:
    from .output import dataset_card, tally, write_dataset
    from .quality.card import plot_labels
    from .quality.passes import read_passes

    passes, values, _ = read_passes(recipe, rows, history, out_dir)
    kept, counts, failures, rejected = tally(recipe, rows, history, against, (passes, values))
    write_dataset(out_dir, kept, failures, lambda sizes: dataset_card(recipe, generator, counts, command, sizes),
                  rejected=rejected if recipe.sections["filters"].keep_rejected else None,
                  figure=lambda folder: plot_labels(counts, folder))
    return counts
