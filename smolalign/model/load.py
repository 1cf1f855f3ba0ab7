"""The one loader every command uses: a preset (fresh weights), a local Hugging Face directory or a hub id
becomes (model, tokenizer, placement), on the device and in the dtype the machine suits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..hub import check_hub_name, load_error
from .build import build_model
from .gguf import find_gguf, inspect_gguf, resolve_model
from .presets import PRESETS


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


def resolve_attention(value: str, gpu: bool, flash_installed: bool) -> str:
    """`auto` is flash_attention_2 on a GPU where flash-attn is installed, sdpa otherwise; any other value stands."""
    if value != "auto":
        return value
    return "flash_attention_2" if gpu and flash_installed else "sdpa"


def choose_placement(dtype: str = "auto", attn_implementation: str = "auto") -> Placement:
    """bf16 + flash attention (when installed) on a GPU; fp32 + sdpa on CPU."""
    import importlib.util

    import torch

    on_gpu = torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"
    attn_implementation = resolve_attention(attn_implementation, on_gpu,
                                            importlib.util.find_spec("flash_attn") is not None)
    return Placement(device=device, dtype=dtype, attn_implementation=attn_implementation)


def check_model_source(name: str, gguf_file: str | None = None) -> None:
    """Fail early, before anything heavy, when a model name is plainly wrong: seconds, never minutes."""
    if name in PRESETS:
        return
    gguf = find_gguf(name, gguf_file)
    if gguf is not None:
        inspect_gguf(gguf)
        return
    path = Path(name).expanduser()
    if path.is_file():
        raise UsageError(f"model '{name}' is a file but not a GGUF file: give a model directory (with config.json) "
                         f"or a .gguf file")
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(f"model directory '{name}' has no config.json: point to a saved Hugging Face model")
    else:
        check_hub_name("model", name, cache_files=("config.json",))


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


def load_tokenizer(name: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    name = resolve_model(name)[0]  # a GGUF file's tokenizer is the one its imported directory holds
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
    gguf_file: str | None = None,
):
    """Return (model, tokenizer, placement) for a preset (fresh weights), a local directory, a GGUF file (see
    gguf.py) or a hub id."""
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

    check_model_source(name_or_path, gguf_file)
    loadable = resolve_model(name_or_path, gguf_file)[0]
    source = str(Path(loadable).expanduser()) if Path(loadable).expanduser().exists() else loadable
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
