"""`smolalign gen SUBSET`: spec -> checks -> plan -> shards -> quality passes -> dataset, in that order.

Everything that can be wrong with the input (spec, seeds, server, models, output directory, Ray) is found before
the first write. The output directory is then locked for the run, marked as smolalign's (the run record), and
filled shard by shard: the rows, then each quality pass's values (labels, safety, reward, embeddings); the same
command run again continues where a killed run stopped. `--refilter` (refilter.py) only tallies again.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from ..errors import UsageError
from ..outputs import atomic_write_text, check_output_dir
from .finish import PLAN_FILE, finish, generator_record, plan_fingerprint, previous_plan, write_record
from .spec import load_spec

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
            ray: bool = False, print_config: bool = False, overwrite: bool = False, refilter: bool = False) -> dict:
    """Generate a subset, or (`refilter`) tally an existing output again with other thresholds; returns the counts.
    Raises UsageError (before writing anything) on bad input."""
    _quiet_libraries()
    shortcuts = {"llm.backend": backend, "llm.model": model, "llm.base_url": base_url, "num_rows": num_rows,
                 "output.dir": output, "ray.enabled": True if ray else None}
    if refilter:
        from .refilter import run_refilter

        if overwrite or ray:
            raise UsageError("--refilter keeps every committed row and runs no pipeline: drop --overwrite and --ray")
        return run_refilter(subset, overrides, shortcuts, print_config=print_config)
    recipe = load_spec(subset, overrides, shortcuts)
    if print_config:
        print(recipe.to_yaml(), end="")
        return {}
    from .backends import check_backend
    from .subsets import needs_routes, plan_rows, read_seeds

    out_dir = Path(recipe.sections["output"].dir).expanduser()
    seeds = read_seeds(recipe)
    rows = plan_rows(recipe, seeds)
    fingerprint = plan_fingerprint(recipe, rows)
    previous = previous_plan(out_dir)
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
    found = check_backend(recipe.sections["llm"], magpie, chat)  # late: it may ask a server, which takes longest
    from .quality.checks import check_quality_inputs

    judges = check_quality_inputs(recipe, found, chat_checked=chat)
    return _generate(recipe, rows, found, judges, out_dir, fingerprint, overwrite and not resuming, against)


def _generate(recipe, rows, backend, judges: dict, out_dir: Path, fingerprint: str, start_over: bool, against) -> dict:
    from ..outputs import empty_directory, output_lock
    from .display import GenDisplay
    from .quality.passes import run_quality
    from .shards import WORK, generate

    started = time.monotonic()
    with output_lock(out_dir):
        if start_over and any(out_dir.iterdir()):
            empty_directory(out_dir)
        work = out_dir / WORK
        write_record(out_dir, recipe, generator_record(backend), "running")
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
        display, labelling = GenDisplay(recipe.kind), GenDisplay(f"{recipe.kind} quality")
        try:
            with _scoped_environ(scoped):
                history = generate(recipe, rows, backend, out_dir, display)
                display.stop()
                run_quality(recipe, rows, history, judges, out_dir, labelling)
        finally:
            display.stop()
            labelling.stop()
        return finish(recipe, rows, history, against, out_dir, generator_record(backend), started)
