"""`smolalign model info`: a model's architecture and exact parameter count, read without loading weights (a GGUF
file's from its metadata)."""

from __future__ import annotations

from pathlib import Path

from ..hub import load_error
from .build import count_parameters, llama_config
from .gguf import find_gguf, gguf_config, inspect_gguf
from .load import check_model_source
from .presets import PRESETS


def describe(config) -> dict:
    """The architecture facts `smolalign model info` prints."""
    rope = getattr(config, "rope_parameters", None) or {}
    return {
        "architecture": (config.architectures or ["LlamaForCausalLM"])[0],
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_theta": rope.get("rope_theta"),
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "initializer_range": getattr(config, "initializer_range", None),
    }


def model_info(preset_or_path: str, trust_remote_code: bool = False) -> dict:
    """Architecture and exact parameter count of a preset, local directory, GGUF file or hub id, without loading
    weights."""
    from transformers import AutoConfig

    if preset_or_path in PRESETS:
        config = llama_config(preset_or_path)
        config.architectures = ["LlamaForCausalLM"]
    elif (gguf := find_gguf(preset_or_path)) is not None:
        source = inspect_gguf(gguf)
        config = gguf_config(source)
        config.architectures = config.architectures or ["LlamaForCausalLM"]
        return {"name": preset_or_path, **describe(config), "parameters": count_parameters(config),
                "gguf_architecture": source.architecture, "sha256": source.sha256}
    else:
        check_model_source(preset_or_path)
        source = Path(preset_or_path).expanduser()
        try:
            config = AutoConfig.from_pretrained(
                str(source) if source.exists() else preset_or_path, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError) as error:
            raise load_error("model", preset_or_path, error) from error
    info = {"name": preset_or_path, **describe(config), "parameters": count_parameters(config)}
    return info
