"""What one micro-batch of a recipe looks like to the memory estimate (plan/memory.py): rows, sequence length,
dtypes, and which kernels and masks the run will use, read from the resolved recipe as the trainers read it."""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from .memory import Shape

VARLEN = ("flash_attention_2", "flash_attention_3", "flash_attention_4")


@lru_cache(maxsize=None)
def _field_defaults(module: str, name: str) -> dict:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def library_defaults(recipe) -> dict:
    """The training class's own defaults (TRL's SFTConfig / DPOConfig, transformers' TrainingArguments)."""
    from ..config.schema import TRAINING_CLASSES

    return _field_defaults(*(recipe.schema.training if recipe.schema else TRAINING_CLASSES[recipe.kind]))


def training_value(recipe, name: str):
    return recipe.training.get(name, library_defaults(recipe).get(name))


def attention(recipe, gpu: bool, flash_installed: bool) -> str:
    """The attention kernel the run gets: `auto` is flash_attention_2 on a GPU when flash-attn is installed, as
    model/load.py's `choose_placement` resolves it; sdpa otherwise."""
    value = recipe.model.attn_implementation
    if value != "auto":
        return value
    return "flash_attention_2" if gpu and flash_installed else "sdpa"


def sequence_length(recipe) -> int:
    """Tokens a row: SFT and DPO pad to at most `max_length`; pretraining's longest stage block."""
    if recipe.kind == "pretrain":
        stages = recipe.sections.get("stages") or []
        return max([s.get("block_size", recipe.data.block_size) for s in stages if isinstance(s, dict)]
                   or [recipe.data.block_size])
    return training_value(recipe, "max_length") or 1024


def shape_of(recipe, micro_batch: int, strategy: str, gpu: bool = True, flash_installed: bool = False,
             checkpointing: bool | None = None) -> Shape:
    kind, kernel = recipe.kind, attention(recipe, gpu, flash_installed)
    dtype = recipe.model.dtype
    bf16 = bool(training_value(recipe, "bf16") or training_value(recipe, "fp16"))
    weight_bytes = 4 if dtype == "float32" or (dtype == "auto" and not (gpu and bf16)) else 2
    if strategy.startswith("ZeRO"):
        weight_bytes = 2  # DeepSpeed's bf16 engine casts the model; fp32 masters live in the optimizer
    if kind == "pretrain":
        mask = not recipe.data.cross_document_attention and kernel not in VARLEN
    else:  # packed rows carry a 4-D block-causal mask, padded batches a 4-D padding mask, unless flash unpads them
        mask = kernel not in VARLEN
    if checkpointing is None:
        checkpointing = bool(training_value(recipe, "activation_checkpointing")
                             or training_value(recipe, "gradient_checkpointing"))
    return Shape(rows=micro_batch * (2 if kind == "dpo" else 1), sequence=sequence_length(recipe),
                 weight_bytes=weight_bytes, compute_bytes=2 if bf16 or weight_bytes == 2 else 4,
                 checkpointing=checkpointing, liger=bool(training_value(recipe, "use_liger_kernel")),
                 tiled_head=kind in ("sft", "dpo"), block_mask=mask and gpu,
                 reference=kind == "dpo" and recipe.lora is None)
