"""What every run writes beside its outputs: resolved recipe, package versions, seed, data fingerprints, and the
history of each start and resume (a resume appends to the record; it never replaces it). Secrets are redacted."""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from .outputs import RUN_FILE, atomic_write_text
from .redact import redact

RECIPE_FILE = "recipe.yaml"
PACKAGES = ("smolalign", "torch", "transformers", "trl", "peft", "datasets", "accelerate", "distilabel", "tokenizers")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _process_count() -> int:
    from accelerate import PartialState

    return PartialState().num_processes


def write_record(output_dir: str | Path, recipe, fields: dict) -> dict:
    """The run record (RUN_FILE) and the resolved recipe (RECIPE_FILE) beside an output, each written atomically,
    secrets redacted: `fields` (what the command, training or gen, says of its run), then what every record
    carries: the command line, the package versions and Python's."""
    info = redact({**fields, "argv": sys.argv, "versions": package_versions(), "python": platform.python_version()})
    atomic_write_text(Path(output_dir) / RUN_FILE, json.dumps(info, indent=2, default=str) + "\n")
    atomic_write_text(Path(output_dir) / RECIPE_FILE, recipe.to_yaml())
    return info


def write_run_info(output_dir: str | Path, recipe, data_fingerprints: dict, extra: dict | None = None,
                   resumed_from: str | None = None) -> dict:
    """A training run's record: a resume appends to the history of the record it finds."""
    previous = read_run_info(output_dir) if resumed_from else None
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    event = {"event": "resume" if resumed_from else "start", "time": now, "argv": sys.argv,
             "from_checkpoint": resumed_from, "versions": package_versions()}
    return write_record(output_dir, recipe, {
        "command": recipe.kind,
        "recipe_path": recipe.path,
        "recipe": recipe.to_dict(),
        "seed": recipe.training.get("seed", 42),
        "data_fingerprints": data_fingerprints,
        "processes": _process_count(),
        "started": (previous or {}).get("started", now),
        **(extra or {}),
        "history": [*((previous or {}).get("history") or []), event],
    })


def read_run_info(output_dir: str | Path) -> dict | None:
    path = Path(output_dir) / RUN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def adapter_base_name(adapter_dir: str | Path, base: str) -> str:
    """How a message names the model a LoRA adapter was trained on: its path or hub id as peft recorded it, or the
    preset it was built from (peft's record, else the run record's recipe), which exists only in memory."""
    if base and not base.startswith("preset:"):
        return f"'{base}'"
    preset = base.removeprefix("preset:") if base else None
    if not preset:
        recipe = (read_run_info(adapter_dir) or {}).get("recipe") or {}
        preset = (recipe.get("model") or {}).get("preset")
    return f"the preset '{preset}' (built in memory, never saved)" if preset else "a model the adapter does not name"
