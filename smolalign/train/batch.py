"""The global batch: what the optimizer sees a step, stated once, on any number of processes.

The paper and nanotron state a batch in tokens a step over the whole run (SmolLM2-1.7B: 2,097,152), and the SFT and
DPO recipes in rows a step (128). transformers' arguments state it per device, with an accumulation that only fits
one count of GPUs. A recipe's `batch` section states the global batch; the accumulation is then derived from the
processes the run has and its micro-batch, so one recipe trains the paper's batch on 1 GPU or 64. A batch that
cannot be met exactly is refused: an inexact one would train another recipe without saying so.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError


@dataclass
class BatchSection:
    global_tokens: int | None = None
    """pretrain: tokens an optimizer step takes over every process at data.block_size (SmolLM2-1.7B: 2097152).
    gradient_accumulation_steps becomes global_tokens / (processes x per_device_train_batch_size x block_size)."""
    global_rows: int | None = None
    """sft, dpo: rows (pairs) an optimizer step takes over every process (SmolLM2: 128).
    gradient_accumulation_steps becomes global_rows / (processes x per_device_train_batch_size)."""


def derive_accumulation(recipe, processes: int) -> str | None:
    """Set the recipe's gradient_accumulation_steps from its `batch` section for `processes`; says how (for
    --print-config and `smolalign plan`), or None when the recipe states no global batch."""
    batch = recipe.sections.get("batch")
    tokens, rows = getattr(batch, "global_tokens", None), getattr(batch, "global_rows", None)
    if tokens is None and rows is None:
        return None
    if recipe.kind == "pretrain" and rows is not None or recipe.kind != "pretrain" and tokens is not None:
        right = "batch.global_tokens" if recipe.kind == "pretrain" else "batch.global_rows"
        raise UsageError(f"{recipe.kind} states its global batch as {right}: rows a step are a "
                         f"{'fine-tuning' if recipe.kind == 'pretrain' else 'pretraining'} measure")
    micro = recipe.training.get("per_device_train_batch_size", 8)
    if not isinstance(micro, int) or micro < 1:
        return None  # the recipe's own checks name the bad value
    wanted, unit = (tokens, "tokens") if tokens is not None else (rows, "rows")
    per_micro_step = processes * micro * (recipe.data.block_size if tokens is not None else 1)
    if wanted < 1 or wanted % per_micro_step:
        raise UsageError(
            f"batch.global_{unit}={wanted:,} cannot be met exactly on {processes} process(es) x "
            f"per_device_train_batch_size {micro}" + (f" x block {recipe.data.block_size:,}" if tokens else "")
            + f" = {per_micro_step:,} {unit} a micro-step: give a multiple of it, or another micro-batch")
    accumulation = wanted // per_micro_step
    recipe.training["gradient_accumulation_steps"] = accumulation
    return (f"gradient_accumulation_steps {accumulation} = batch.global_{unit} {wanted:,} / ({processes} process(es) "
            f"x {micro} per device" + (f" x {recipe.data.block_size:,} tokens" if tokens else "") + ")")
