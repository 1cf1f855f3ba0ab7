"""`smolalign gen SUBSET`: spec -> checks -> plan -> shards -> dataset, in that order.

Everything that can be wrong with the input (spec, seeds, server, model, output directory, Ray) is found before
the first write. The output directory is then locked for the run, marked as smolalign's (the run record), and
filled shard by shard; the same command run again continues where a killed run stopped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..outputs import atomic_write_text, check_output_dir
from .spec import fingerprint_fields, load_spec

PLAN_FILE = "plan.json"


def _fingerprint(recipe, rows: list[dict]) -> str:
    text = json.dumps({"spec": fingerprint_fields(recipe), "rows": rows}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _previous_plan(out_dir: Path) -> dict | None:
    path = out_dir / "work" / PLAN_FILE
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def _write_record(out_dir: Path, recipe, backend, status: str, extra: dict | None = None) -> None:
    from ..redact import redact
    from ..runinfo import RECIPE_FILE, RUN_FILE, package_versions

    info = {"command": "gen", "subset": recipe.kind, "status": status, "argv": redact(sys.argv),
            "spec_path": recipe.path, "spec": recipe.to_dict(), "generator": {"backend": backend.kind,
            "model": backend.model, "base_url": backend.base_url, "gguf": backend.gguf}, "versions": package_versions(),
            "python": platform.python_version(), "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {})}
    atomic_write_text(out_dir / RUN_FILE, json.dumps(info, indent=2, default=str) + "\n")
    atomic_write_text(out_dir / RECIPE_FILE, recipe.to_yaml())


LIBRARY_QUIET = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                 "TRANSFORMERS_VERBOSITY": "error"}


def _quiet_libraries() -> None:
    """Our progress bar is the display: the libraries' own warnings would scroll it away. Their progress bars and
    log level are set for the run's own processes only (`LIBRARY_QUIET`, scoped), so a caller such as the demo
    keeps its warnings afterwards."""
    import warnings

    warnings.filterwarnings("ignore", module="pydantic")
    warnings.filterwarnings("ignore", category=FutureWarning)


@contextlib.contextmanager
def _scoped_environ(values: dict):
    """Environment for the run's own processes, put back afterwards (gen may be called from Python, e.g. demo)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_ray(recipe) -> None:
    import importlib.util

    if recipe.sections["ray"].enabled and importlib.util.find_spec("ray") is None:
        raise UsageError("--ray needs Ray: pip install 'smolalign[ray]' (or run without --ray)")


def run_gen(subset: str, overrides: list[str], backend=None, model=None, base_url=None, num_rows=None, output=None,
            ray: bool = False, print_config: bool = False, overwrite: bool = False) -> dict:
    """Generate a subset; returns the counts. Raises UsageError (before writing anything) on bad input."""
    _quiet_libraries()
    shortcuts = {"llm.backend": backend, "llm.model": model, "llm.base_url": base_url, "num_rows": num_rows,
                 "output.dir": output, "ray.enabled": True if ray else None}
    recipe = load_spec(subset, overrides, shortcuts)
    if print_config:
        print(recipe.to_yaml(), end="")
        return {}
    from .backends import check_backend
    from .subsets import needs_routes, plan_rows, read_seeds

    out_dir = Path(recipe.sections["output"].dir).expanduser()
    seeds = read_seeds(recipe)
    rows = plan_rows(recipe, seeds)
    fingerprint = _fingerprint(recipe, rows)
    previous = _previous_plan(out_dir)
    resuming = bool(previous) and previous.get("fingerprint") == fingerprint and not overwrite
    if previous and not resuming and not overwrite:
        raise UsageError(f"'{out_dir}' holds a gen run with another spec, seeds or row count: pass --overwrite to "
                         f"replace it, or choose another --output")
    check_output_dir(out_dir, overwrite=overwrite, resuming=resuming)
    against = None
    if recipe.sections["decontaminate"].against:
        from .decontaminate import load_against

        against = load_against(recipe.sections["decontaminate"].against)
    _check_ray(recipe)
    magpie, chat = needs_routes(recipe.kind)
    found = check_backend(recipe.sections["llm"], magpie, chat)  # last: it may ask a server, which takes longest
    return _generate(recipe, rows, found, out_dir, fingerprint, overwrite and not resuming, against)


def _generate(recipe, rows, backend, out_dir: Path, fingerprint: str, start_over: bool, against) -> dict:
    from ..outputs import empty_directory, output_lock
    from ..redact import redact_text
    from .display import GenDisplay, print_summary
    from .output import dataset_card, tally, write_dataset
    from .shards import WORK, generate

    started = time.monotonic()
    with output_lock(out_dir):
        if start_over and any(out_dir.iterdir()):
            empty_directory(out_dir)
        work = out_dir / WORK
        _write_record(out_dir, recipe, backend, "running")
        atomic_write_text(work / PLAN_FILE, json.dumps({"fingerprint": fingerprint, "rows": len(rows),
                                                        "shard_size": recipe.sections["output"].shard_size}) + "\n")
        # distilabel's files go inside DIR, never ~/.cache: its cache (also passed as cache_dir)...
        quiet = "ignore:::pydantic._internal._generate_schema"  # for processes that start afresh (Ray workers)
        scoped = {**LIBRARY_QUIET, "DISTILABEL_CACHE_DIR": str((work / "distilabel").resolve()),
                  "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))}
        if recipe.sections["llm"].backend == "vllm":
            # ...and the GPU placement file its vLLM class keeps (a module constant under the system temp dir; moving
            # TMPDIR instead would also move multiprocessing's sockets, whose paths must stay short)
            from distilabel.models.mixins import cuda_device_placement

            cuda_device_placement._CUDA_DEVICE_PLACEMENT_MIXIN_FILE = (work / "cuda_device_placement.json").resolve()
        display = GenDisplay(recipe.kind)
        try:
            with _scoped_environ(scoped):
                history = generate(recipe, rows, backend, out_dir, display)
        finally:
            display.stop()
        kept, counts, failures = tally(recipe, rows, history, against)
        command = redact_text(" ".join(["smolalign", *sys.argv[1:]]) if sys.argv[0].endswith(("smolalign", "cli.py"))
                              else f"smolalign gen {recipe.kind}")
        write_dataset(out_dir, kept, failures, lambda *sizes: dataset_card(recipe, backend, counts, command, *sizes))
        seconds = time.monotonic() - started
        _write_record(out_dir, recipe, backend, "complete", {"counts": counts, "seconds": round(seconds, 1)})
    print_summary(recipe.kind, counts, str(out_dir), seconds)
    return counts
