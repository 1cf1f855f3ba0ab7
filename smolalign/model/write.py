"""Writing a model as a standard Hugging Face directory (config, safetensors, tokenizer, generation config) that every
command and every other tool loads: `smolalign model init` (fresh weights from a preset)."""

from __future__ import annotations

from ..errors import UsageError
from ..outputs import atomic_directory, claim_output
from .build import build_model
from .load import load_tokenizer
from .presets import PRESETS


def init_model(preset: str, tokenizer: str, output: str, overwrite: bool = False, seed: int = 0) -> dict:
    """`smolalign model init`: a random model from a preset, saved with its tokenizer as a standard HF directory."""
    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
    claim_output(output, overwrite)
    tok = load_tokenizer(tokenizer)
    model = build_model(preset, tok, seed=seed)
    model.config.architectures = ["LlamaForCausalLM"]
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_directory(output, mark=True) as staging:
        model.save_pretrained(staging)
        tok.save_pretrained(staging)
    return {"output": str(output), "parameters": sum(p.numel() for p in model.parameters())}
