"""`smolalign gen SUBSET`: spec -> checks -> plan -> shards -> quality passes -> dataset, in that order.

Everything that can be wrong with the input (spec, seeds, server, models, output directory, Ray) is found before
the first write. The output directory is then locked for the run, marked as smolalign's (the run record), and
filled shard by shard: the rows, then each quality pass's values (labels, safety, reward, embeddings); the same
command run again continues where a killed run stopped. `--refilter` (refilter.py) only tallies again.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ..errors import UsageError
from ..outputs import atomic_write_text, check_output_dir, check_writable
from ..stops import expect_space
from .finish import PLAN_FILE, finish, generator_record, plan_fingerprint, previous_plan, write_record
from .shards import WORK, scoped_environ
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


def check_devices(recipe) -> None:
    """Every model the run will load can go on its device: a CUDA device on a machine without one is refused
    before anything is written (not a traceback from a worker after the output was made)."""
    wanted = {f"{key}.device": model.device for key, model in models_to_load(recipe).items()}
    cuda = {key: value for key, value in wanted.items() if str(value or "").startswith("cuda")}
    if not cuda:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for key, value in cuda.items():
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= count:
            have = f"{count} CUDA device(s)" if count else "no CUDA device"
            raise UsageError(f"{key}={value}, but this machine has {have}: set {key}=cpu (or leave it out)")


def models_to_load(recipe) -> dict:
    """Every model the spec names, by key: its sections that are a ModelSection, the quality passes' judge and
    guard (LLMSections merged over `llm`), and the subset's own (`models`)."""
    from .sections import ModelSection
    from .subsets import subset_module

    models = {name: section for name, section in recipe.sections.items() if isinstance(section, ModelSection)}
    if "labels" in recipe.sections:
        from .quality.passes import guard_llm, judge_llm

        models.update({"labels.llm": judge_llm(recipe), "safety.llm": guard_llm(recipe)})
    more = getattr(subset_module(recipe.kind), "models", None)
    return {**models, **(more(recipe) if more else {})}


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
    if output is not None and not output.strip():
        raise UsageError("--output is empty: give a directory, e.g. --output data/my-set")
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
    from .subsets import plan_rows, read_seeds, subset_module

    check_devices(recipe)
    out_dir = check_writable(recipe.sections["output"].dir)
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
    module = subset_module(recipe.kind)
    magpie, chat = module.ROUTES
    quality = "labels" in recipe.sections
    from .quality.passes import passes_of

    structured = module.STRUCTURED or quality and any(p.step == "judge" for p in passes_of(recipe))
    # late: it may ask a server, which takes longest
    found = check_backend(recipe.sections["llm"], magpie, chat, structured=structured)
    backends = {"llm": found, **(module.backends(recipe, found) if hasattr(module, "backends") else {})}
    judges = {}
    if quality:
        from .quality.checks import check_quality_inputs

        judges = check_quality_inputs(recipe, found, chat_checked=chat)
    if line := found.describe():  # a server's dialect and sampling names, before any row
        print(f"{recipe.kind}: {line}", file=sys.stderr)
    return _generate(recipe, rows, backends, judges, out_dir, fingerprint, overwrite and not resuming, against)


def _generate(recipe, rows, backends: dict, judges: dict, out_dir: Path, fingerprint: str, start_over: bool,
              against) -> dict:
    """The writes. With --overwrite over an old output, the run builds beside it and swaps in when its first shard
    is complete (outputs.Replacement): from then on it is a resumable run at the output's own path, and until then
    a failed or interrupted run leaves the old output as it was."""
    from ..outputs import Replacement
    from .display import GenDisplay
    from .quality.passes import run_quality
    from .shards import GenerationStopped, generate

    started = time.monotonic()
    output = Replacement(out_dir, overwrite=start_over)
    display, labelling = GenDisplay(recipe.kind), GenDisplay(f"{recipe.kind} quality")
    try:
        path = output.open()
        expect_space(output.target)  # a full disk names the output
        write_record(path, recipe, generator_record(backends["llm"], recipe.sections["llm"]), "running")
        atomic_write_text(path / WORK / PLAN_FILE, json.dumps({
            "fingerprint": fingerprint, "rows": len(rows), "shard_size": recipe.sections["output"].shard_size}) + "\n")
        # for processes that start afresh (Ray workers)
        quiet = "ignore:::pydantic._internal._generate_schema"
        scoped = {**LIBRARY_QUIET, "PYTHONWARNINGS": ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), quiet]))}
        with scoped_environ(scoped):
            history = generate(recipe, rows, backends, output, display)
            display.stop()
            run_quality(recipe, rows, history, judges, output.path, labelling)
        counts = finish(recipe, rows, history, against, output.path, generator_record(backends["llm"], recipe.sections["llm"]), started)
        output.finish()  # the finished set: an old output an --overwrite set aside is removed now
        return counts
    except GenerationStopped as stopped:
        display.stop()
        labelling.stop()
        output.discard()
        raise GenerationStopped(f"{stopped}; {_resume_hint(output)}") from None
    except BaseException:
        output.discard()
        raise
    finally:
        display.stop()
        labelling.stop()
        output.release()


def _resume_hint(output) -> str:
    """What the user runs next: the same command, which continues from the committed shards. Once an --overwrite
    run has swapped in, it is that run which continues, so --overwrite is left out."""
    import shlex
    import sys

    from ..redact import redact_text

    swapped_in = output.replacing and output.committed
    argv = [a for a in sys.argv[1:] if a != "--overwrite" or not swapped_in]
    command = redact_text(shlex.join(["smolalign", *argv])) if sys.argv[0].endswith(("smolalign", "cli.py")) \
        else "the same command"
    if output.replacing and not swapped_in:
        return f"the old output is as it was; run again with: {command}"
    return f"the rows committed so far are kept; continue with: {command}"
