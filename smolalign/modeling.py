"""The one model definition (SmolLM2 = transformers' Llama) and the one loader every command uses.

A model is named by a preset (`smollm2-135m`, `tiny`...), a local Hugging Face directory or a hub id.
Heavy imports stay inside functions so the CLI answers `--help` without loading torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .hub import check_hub_name, load_error, looks_like_local_path  # noqa: F401 (re-exported)
from .presets import PRESETS


def llama_config(preset: str, vocab_size: int | None = None, tokenizer=None):
    """A `LlamaConfig` for a preset; the vocabulary follows the tokenizer when one is given."""
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
        config.pad_token_id = tokenizer.pad_token_id
    return config


def count_parameters(config) -> int:
    """Exact parameter count (tied weights once) from a config, on the meta device: no weights are allocated."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())


def build_model(preset: str, tokenizer=None, seed: int = 0, dtype=None):
    """A freshly initialised model from a preset, with the preset's init std (`initializer_range`)."""
    import torch
    from transformers import AutoModelForCausalLM

    config = llama_config(preset, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
    config._name_or_path = f"preset:{preset}"
    return model


@dataclass
class Placement:
    """Where and how a model runs: chosen for the machine unless the user says otherwise."""

    device: str
    dtype: str  # "float32" | "bfloat16" | "float16"
    attn_implementation: str

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)


def choose_placement(dtype: str = "auto", attn_implementation: str = "auto") -> Placement:
    """bf16 + flash attention (when installed) on a GPU; fp32 + sdpa on CPU."""
    import importlib.util

    import torch

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"
    if attn_implementation == "auto":
        has_flash = importlib.util.find_spec("flash_attn") is not None
        attn_implementation = "flash_attention_2" if on_gpu and has_flash else "sdpa"
    return Placement(device=device, dtype=dtype, attn_implementation=attn_implementation)


def check_model_source(name: str) -> None:
    """Fail early, before anything heavy, when a model name is plainly wrong: seconds, never minutes."""
    if name in PRESETS:
        return
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(f"model directory '{name}' has no config.json: point to a saved Hugging Face model")
    else:
        check_hub_name("model", name, cache_files=("config.json",))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    local = Path(name).expanduser()
    if local.is_file():
        raise UsageError(f"tokenizer '{name}' is a file: give the directory that holds it")
    if local.is_dir() and not any((local / f).is_file() for f in TOKENIZER_FILES):
        raise UsageError(f"'{name}' is not a tokenizer directory (no tokenizer.json or tokenizer_config.json): give "
                         f"one written by `smolalign tokenizer train`, or a saved model's directory")
    if not local.exists():
        check_hub_name("tokenizer", name, cache_files=("tokenizer_config.json", "tokenizer.json"))
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else name,
                                             trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        raise load_error("tokenizer", name, error) from error


def load_model(
    name_or_path: str | None = None,
    preset: str | None = None,
    tokenizer: str | None = None,
    dtype: str = "auto",
    attn_implementation: str = "auto",
    trust_remote_code: bool = False,
    seed: int = 0,
):
    """Return (model, tokenizer, placement) for a preset (fresh weights), a local directory or a hub id."""
    from transformers import AutoModelForCausalLM

    placement = choose_placement(dtype, attn_implementation)
    if preset is not None or (name_or_path in PRESETS):
        preset = preset or name_or_path
        if tokenizer is None:
            raise UsageError(f"preset '{preset}' needs a tokenizer: set model.tokenizer to a directory or hub id")
        tok = load_tokenizer(tokenizer, trust_remote_code)
        model = build_model(preset, tok, seed=seed, dtype=placement.torch_dtype)
        model.config._attn_implementation = placement.attn_implementation
        return model, tok, placement

    check_model_source(name_or_path)
    source = str(Path(name_or_path).expanduser()) if Path(name_or_path).expanduser().exists() else name_or_path
    tok = load_tokenizer(tokenizer or source, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=placement.torch_dtype,
            attn_implementation=placement.attn_implementation,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError) as error:
        raise load_error("model", name_or_path, error) from error
    if len(tok) > model.get_input_embeddings().num_embeddings:
        raise UsageError(
            f"tokenizer has {len(tok)} tokens but model '{name_or_path}' embeds only "
            f"{model.get_input_embeddings().num_embeddings}: use the tokenizer saved with the model"
        )
    return model, tok, placement


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
    """Architecture and exact parameter count of a preset, local directory or hub id, without loading weights."""
    from transformers import AutoConfig

    if preset_or_path in PRESETS:
        config = llama_config(preset_or_path)
        config.architectures = ["LlamaForCausalLM"]
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


def init_model(preset: str, tokenizer: str, output: str, overwrite: bool = False, seed: int = 0) -> dict:
    """`smolalign model init`: a random model from a preset, saved with its tokenizer as a standard HF directory."""
    from .outputs import atomic_directory, check_output_dir

    if preset not in PRESETS:
        raise UsageError(f"unknown preset '{preset}': choose one of {', '.join(PRESETS)}")
    check_output_dir(output, overwrite)
    tok = load_tokenizer(tokenizer)
    model = build_model(preset, tok, seed=seed)
    model.config.architectures = ["LlamaForCausalLM"]
    model.generation_config.bos_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    with atomic_directory(output) as staging:
        model.save_pretrained(staging)
        tok.save_pretrained(staging)
    return {"output": str(output), "parameters": sum(p.numel() for p in model.parameters())}
