"""`smolalign model info`: a model's architecture and exact parameter count, read without loading weights (a GGUF
file's from its metadata); and whether it has a chat template, read the same way, for the commands that must know
before they load it."""

from __future__ import annotations

from pathlib import Path

from ..hub import load_error
from .build import count_parameters, llama_config
from .gguf import find_gguf, gguf_config, inspect_gguf
from .load import check_model_source
from .presets import PRESETS


def architecture_of(config) -> str:
    """The model class the config names, else the one transformers maps its model_type to (a GGUF file's
    `general.architecture` becomes that model_type): never a guess of Llama."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.architectures:
        return config.architectures[0]
    return MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, config.model_type)


def rope_of(config) -> dict:
    """The rotary settings as the config gives them: one set, or one per attention layer type (Gemma 3's sliding
    and full layers differ); keys as transformers names them (rope_theta, rope_type, scaling factors)."""
    rope = getattr(config, "rope_parameters", None) or {}
    if rope and all(isinstance(value, dict) for value in rope.values()):
        return {kind: {k: v for k, v in values.items() if v is not None} for kind, values in rope.items()}
    if not rope and getattr(config, "rope_theta", None) is not None:  # configs from before rope_parameters
        rope = {"rope_theta": config.rope_theta, **(getattr(config, "rope_scaling", None) or {})}
    return {k: v for k, v in rope.items() if v is not None}


def describe(config) -> dict:
    """The architecture facts `smolalign model info` prints."""
    rope = rope_of(config)
    return {
        "architecture": architecture_of(config),
        "model_type": config.model_type,
        "layers": config.num_hidden_layers,
        "hidden_size": config.hidden_size,
        "attention_heads": config.num_attention_heads,
        "kv_heads": config.num_key_value_heads,
        "intermediate_size": config.intermediate_size,
        "vocab_size": config.vocab_size,
        "max_position_embeddings": config.max_position_embeddings,
        "rope_theta": rope.get("rope_theta"),  # None where each layer type has its own: see "rope"
        "rope": rope,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "initializer_range": getattr(config, "initializer_range", None),
    }


def model_config(name: str | None = None, preset: str | None = None, gguf_file: str | None = None,
                 trust_remote_code: bool = False, vocab: int | None = None) -> tuple[object, str, dict]:
    """The one way from a model source to its transformers config, without weights: a preset (smolalign's own
    definition), a GGUF file (its metadata), a local directory or a hub id (config.json). Returns (config, what it
    was read from, further facts of the source). `model info`, `smolalign plan` and the speed choices use it."""
    from transformers import AutoConfig

    preset = preset or (name if name in PRESETS else None)
    if preset:
        config = llama_config(preset, vocab_size=vocab)
        config.architectures = ["LlamaForCausalLM"]
        return config, f"preset {preset}", {}
    if (gguf := find_gguf(name, gguf_file)) is not None:
        source = inspect_gguf(gguf)
        config = gguf_config(source)  # the file's metadata: no weights read
        config.architectures = [architecture_of(config)]
        return config, f"GGUF metadata of {name}", {"gguf_architecture": source.architecture,
                                                    "sha256": source.sha256}
    check_model_source(name)
    local = Path(name).expanduser()
    try:
        config = AutoConfig.from_pretrained(str(local) if local.exists() else name,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise load_error("model", name, error) from error
    return config, f"config.json of {name}", {}


def model_info(preset_or_path: str, trust_remote_code: bool = False) -> dict:
    """Architecture and exact parameter count of a preset, local directory, GGUF file or hub id, without loading
    weights."""
    config, _, extra = model_config(preset_or_path, trust_remote_code=trust_remote_code)
    return {"name": preset_or_path, **describe(config), "parameters": count_parameters(config), **extra}


def has_chat_template(name: str | None, gguf_file: str | None = None) -> bool | None:
    """Whether a model's (or tokenizer's) chat template exists, read from its files before anything is loaded: a
    GGUF file's metadata (no tensor dequantized), a folder's tokenizer files. None when that cannot be told without
    loading (a hub id, a preset)."""
    import json

    from .gguf import read_metadata_string

    if not name:
        return None
    gguf = find_gguf(name, gguf_file)
    if gguf is not None:
        inspect_gguf(gguf)  # a truncated or damaged file is one line here
        return bool(read_metadata_string(gguf, "tokenizer.chat_template"))
    folder = Path(name).expanduser()
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    if config.is_file():
        return bool(json.loads(config.read_text(encoding="utf-8")).get("chat_template"))
    return None
