"""The global batch: what the optimizer sees a step, stated once, on any number of processes.

The paper and nanotron state a batch in tokens a step over the whole run (SmolLM2-1.7B: 2,097,152), and the SFT and
DPO recipes in rows a step (128). transformers' arguments state it per device, with an accumulation that only fits
one count of GPUs. A recipe's `batch` section (config/sections.py: `global_tokens` for pretraining, `global_rows`
for SFT and DPO) states the global batch; the accumulation is then derived from the processes the run has and its
micro-batch, so one recipe trains the paper's batch on 1 GPU or 64. A batch that cannot be met exactly is refused:
an inexact one would train another recipe without saying so.
"""

from __future__ import annotations

from ..errors import UsageError


def derive_accumulation(recipe, processes: int) -> str | None:
    """Set the recipe's gradient_accumulation_steps from its `batch` section for `processes`; says how (for
    --print-config and `smolalign plan`), or None when the recipe states no global batch."""
    batch = recipe.sections.get("batch")
    tokens, rows = getattr(batch, "global_tokens", None), getattr(batch, "global_rows", None)
    if tokens is None and rows is None:
        return None
    micro = recipe.training.get("per_device_train_batch_size", 8)
    if not isinstance(micro, int) or micro < 1:
        return None  # the recipe's own checks name the bad value
    wanted, unit = (tokens, "tokens") if tokens is not None else (rows, "rows")
    if recipe.writes("training.gradient_accumulation_steps"):
        raise UsageError(f"training.gradient_accumulation_steps and batch.global_{unit} both set the batch: give one "
                         f"(batch.global_{unit}=null keeps the accumulation as written)")
    block = recipe.data.block_size if tokens is not None else 1
    per_micro_step = processes * micro * block
    if wanted < 1 or wanted % per_micro_step:
        raise UsageError(
            f"batch.global_{unit}={wanted:,} cannot be met exactly on {processes} process(es) x "
            f"per_device_train_batch_size {micro}" + (f" x block {block:,}" if tokens else "")
            + f" = {per_micro_step:,} {unit} a micro-step: give a multiple of it, or another micro-batch")
    accumulation = wanted // per_micro_step
    recipe.training["gradient_accumulation_steps"] = accumulation
    return (f"gradient_accumulation_steps {accumulation} = batch.global_{unit} {wanted:,} / ({processes} process(es) "
            f"x {micro} per device" + (f" x {block:,} tokens" if tokens else "") + ")")
