"""The one model definition: SmolLM2 is transformers' Llama, built from a preset (`smollm2-135m`, `tiny`...).

Pretraining builds its fresh weights here; `smolalign model init` saves them. Heavy imports stay inside functions
so the CLI answers `--help` without loading torch.
"""

from __future__ import annotations

from ..errors import UsageError
from .presets import PRESETS


def llama_config(preset: str, vocab_size: int | None = None, tokenizer=None):
    """A `LlamaConfig` for a preset; the vocabulary follows the tokenizer when one is given. No pad id: transformers'
    Llama makes `config.pad_token_id` the embedding's `padding_idx`, whose row starts at zero and gets no gradient
    through the input, and the pad token here is `<|endoftext|>`, pretraining's document separator. SmolLM2 and
    nanotron pretrain with no padding index; padding is the tokenizer's and the collators' job (they mask it)."""
    from transformers import LlamaConfig

    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    rope_theta = values.pop("rope_theta")
    if tokenizer is not None:
        vocab_size = len(tokenizer)
    if vocab_size is not None:
        values["vocab_size"] = vocab_size
    config = LlamaConfig(**values, rope_parameters={"rope_type": "default", "rope_theta": rope_theta})
    if tokenizer is not None:
        config.bos_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
    return config


def count_parameters(config) -> int:
    """Exact parameter count (tied weights once) from a config, on the meta device: no weights are allocated."""
    from .memory import arch_of

    return arch_of(config).parameters


def build_model(preset: str, tokenizer=None, seed: int = 0, dtype=None):
    """A freshly initialised model from a preset, with the preset's init std (`initializer_range`)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = llama_config(preset, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    config._name_or_path = f"preset:{preset}"
    return model
