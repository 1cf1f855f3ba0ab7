"""The global batch: what the optimizer sees a step, stated once, on any number of processes.

The paper and nanotron state a batch in tokens a step over the whole run (SmolLM2-1.7B: 2,097,152), and the SFT and
DPO recipes in rows a step (128). transformers' arguments state it per device, with an accumulation that only fits
one count of GPUs. A recipe's `batch` section (config/sections.py: `global_tokens` for pretraining, `global_rows`
for SFT and DPO) states the global batch; the accumulation is then derived from the processes the run has and its
micro-batch, so one recipe trains the paper's batch on 1 GPU or 64. A batch that cannot be met exactly is refused:
an inexact one would train another recipe without saying so.

A value given on the command line beats what the recipe file states, as TRL and the handbook's users expect of
`--gradient_accumulation_steps`: an accumulation (or a per-device batch that cannot meet the file's global batch)
written there sets the file's global batch aside, and the run says so (`--print-config` and its first lines). Two
settings that conflict within the file, or within the command line, are refused.
"""

from __future__ import annotations

from ..errors import UsageError


def derive_accumulation(recipe, processes: int, command_line: dict | None = None) -> str | None:
    """Set the recipe's gradient_accumulation_steps from its `batch` section for `processes`; says how (for
    --print-config and `smolalign plan`), or None when the recipe states no global batch. `command_line`: the
    overrides as parsed (config/overrides.py), which win over the file (module docstring)."""
    batch = recipe.sections.get("batch")
    tokens, rows = getattr(batch, "global_tokens", None), getattr(batch, "global_rows", None)
    if tokens is None and rows is None:
        return None
    micro = recipe.training.get("per_device_train_batch_size", 8)
    if not isinstance(micro, int) or micro < 1:
        return None  # the recipe's own checks name the bad value
    wanted, unit = (tokens, "tokens") if tokens is not None else (rows, "rows")
    given = command_line or {}
    given_training = given.get("training") if isinstance(given.get("training"), dict) else {}
    given_global = f"global_{unit}" in (given.get("batch") if isinstance(given.get("batch"), dict) else {})
    if recipe.writes("training.gradient_accumulation_steps"):
        given_accumulation = "gradient_accumulation_steps" in given_training
        if given_accumulation == given_global:  # both in the file, or both on the command line
            raise UsageError(f"training.gradient_accumulation_steps and batch.global_{unit} both set the batch"
                             + (" on the command line" if given_global else "") + f": give one (batch.global_{unit}"
                             f"=null keeps the accumulation as written)")
        if given_accumulation:
            return set_aside(batch, unit, wanted, "training.gradient_accumulation_steps="
                             f"{recipe.training['gradient_accumulation_steps']}")
    block = recipe.data.block_size if tokens is not None else 1
    per_micro_step = processes * micro * block
    if wanted < 1 or wanted % per_micro_step:
        if "per_device_train_batch_size" in given_training and not given_global:
            return set_aside(batch, unit, wanted, f"training.per_device_train_batch_size={micro}, which cannot "
                             f"meet it exactly on {processes} process(es),")
        raise UsageError(
            f"batch.global_{unit}={wanted:,} cannot be met exactly on {processes} process(es) x "
            f"per_device_train_batch_size {micro}" + (f" x block {block:,}" if tokens else "")
            + f" = {per_micro_step:,} {unit} a micro-step: give a multiple of it, or another micro-batch")
    accumulation = wanted // per_micro_step
    recipe.training["gradient_accumulation_steps"] = accumulation
    replaced = ("the recipe file's training.gradient_accumulation_steps set aside for the command line's "
                f"batch.global_{unit}: " if recipe.writes("training.gradient_accumulation_steps") else "")
    return (f"{replaced}gradient_accumulation_steps {accumulation} = batch.global_{unit} {wanted:,} / ({processes} "
            f"process(es) x {micro} per device" + (f" x {block:,} tokens" if tokens else "") + ")")


def set_aside(batch, unit: str, wanted: int, given: str) -> str:
    """The recipe file's global batch, set aside for what the command line gives; says so."""
    setattr(batch, f"global_{unit}", None)
    return (f"batch.global_{unit}={wanted:,} of the recipe file set aside: the command line gives {given} and "
            f"the command line wins (add batch.global_{unit}=... to it to keep a global batch)")
