"""A micro-batch as the memory estimate (model/memory.py) sees it, from the resolved recipe as the trainers read it.

What every training command shares is here: the stored and compute dtypes, the kernel `auto` resolves to, and
whether that kernel keeps documents apart through a 4-D mask. What is a command's own (rows a forward pass sees,
tokens a row, a tiled LM head, a reference model) its `memory_shape`, in its own file, says.
"""

from __future__ import annotations

import importlib.util

from ..model.load import resolve_attention
from ..model.memory import Shape
from .packing import VARLEN_ATTENTION, choose_packed_attention


def kernel(recipe, gpu: bool, flash_installed: bool | None = None) -> str:
    """The attention implementation the run gets (`auto` resolved as model/load.py resolves it)."""
    if flash_installed is None:
        flash_installed = importlib.util.find_spec("flash_attn") is not None
    return resolve_attention(recipe.model.attn_implementation, gpu, flash_installed)


def masks_packed_documents(recipe, gpu: bool, flash_installed: bool) -> bool:
    """Packed documents kept apart by the 4-D block-causal mask on a GPU (rather than flash-attn or torch's varlen
    kernel reading the document offsets; on CPU the offsets feed per-document sdpa and no mask is built)."""
    setting = getattr(recipe.sections.get("speed"), "packed_attention", "auto")
    return gpu and choose_packed_attention(setting, kernel(recipe, gpu, flash_installed), "cuda") == "mask"


def masks_padding(recipe, gpu: bool, flash_installed: bool) -> bool:
    """Padded rows carry a 4-D padding mask on a GPU unless a varlen (flash) kernel unpads them."""
    return gpu and kernel(recipe, gpu, flash_installed) not in VARLEN_ATTENTION


def step_shape(recipe, rows: int, sequence: int, strategy: str, gpu: bool, checkpointing: bool | None,
               block_mask: bool, tiled_head: bool, reference: bool) -> Shape:
    """The shared part of every command's `memory_shape`: dtypes, checkpointing and Liger as the recipe sets them."""
    dtype = recipe.model.dtype
    bf16 = bool(recipe.value("bf16") or recipe.value("fp16"))
    weight_bytes = 4 if dtype == "float32" or (dtype == "auto" and not (gpu and bf16)) else 2
    if strategy.startswith("ZeRO"):
        weight_bytes = 2  # DeepSpeed's bf16 engine casts the model; fp32 masters live in the optimizer
    if checkpointing is None:
        checkpointing = bool(recipe.value("activation_checkpointing") or recipe.value("gradient_checkpointing"))
    return Shape(rows=rows, sequence=sequence, weight_bytes=weight_bytes, eager=kernel(recipe, gpu) == "eager",
                 compute_bytes=2 if bf16 or weight_bytes == 2 else 4, checkpointing=checkpointing,
                 liger=bool(recipe.value("use_liger_kernel")), tiled_head=tiled_head, block_mask=block_mask,
                 reference=reference)
