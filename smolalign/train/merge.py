"""`--merge`: fold a LoRA adapter into full weights after training, from what was saved, in one process.

Why not merge the trained model in memory: under DeepSpeed ZeRO-3 or FSDP each rank holds only a shard of it, so
rank 0's copy is not the model. What training saved is whole (the Trainer gathers the adapter to save it), and the
base model is on disk where training started. So one plain process loads the base named in the saved
`adapter_config.json`, applies the saved adapter, merges with peft's `merge_and_unload`, and writes a standard
Hugging Face directory (weights, config, generation config, tokenizer) atomically: a reader sees all of it or
none.

A model built from a preset exists nowhere but in memory: its adapter names `preset:<name>`, which no loader can
open. `--merge` is refused up front for such runs (`check_mergeable`), with the way out: save the preset with
`smolalign model init` and train from that directory.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from ..errors import UsageError
from ..model.presets import PRESETS

DTYPES = ("auto", "float32", "bfloat16", "float16")


def check_mergeable(name_or_path: str | None, preset: str | None) -> None:
    """Before training: a merge needs a base that can be loaded again from disk or the hub."""
    name = preset or name_or_path
    if preset is not None or name in PRESETS:
        raise UsageError(f"--merge needs a base model saved on disk, but '{name}' is a preset built in memory: "
                         f"run `smolalign model init {name} --tokenizer TOKENIZER OUT` and train from OUT "
                         f"(model.name_or_path=OUT), or drop --merge")


def adapter_base(adapter_dir: str | Path) -> str:
    """The base model a saved adapter was trained on, as peft recorded it."""
    config_file = Path(adapter_dir) / "adapter_config.json"
    if not config_file.is_file():
        raise UsageError(f"'{adapter_dir}' holds no adapter_config.json: point to the output of a LoRA run")
    base = json.loads(config_file.read_text()).get("base_model_name_or_path") or ""
    if not base or base.startswith("preset:"):
        from ..runinfo import adapter_base_name

        raise UsageError(f"the adapter in '{adapter_dir}' was trained on {adapter_base_name(adapter_dir, base)}, "
                         f"which exists only in memory: train from a saved model (`smolalign model init`) to merge")
    local = Path(base).expanduser()
    if not local.exists():
        from ..hub import looks_like_local_path

        if looks_like_local_path(base):
            raise UsageError(f"the adapter's base model '{base}' is not there any more: restore it, or set "
                             f"base_model_name_or_path in {config_file}")
        return base  # a hub id
    return str(local)


@contextlib.contextmanager
def _one_process_loading():
    """transformers partitions every `from_pretrained` while a ZeRO-3 config is registered (the Trainer registers
    one for the run's life); this load must be one process's whole model, so the registration is lifted for it."""
    from transformers.integrations import deepspeed as hf_deepspeed

    registered = hf_deepspeed._hf_deepspeed_config_weak_ref
    hf_deepspeed._hf_deepspeed_config_weak_ref = None
    try:
        yield
    finally:
        hf_deepspeed._hf_deepspeed_config_weak_ref = registered


def merge_saved_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str = "auto") -> Path:
    """Load base + saved adapter, merge, write `output_dir`. `dtype`: of the written weights; `auto` keeps the
    base's stored dtype. The merge itself runs in float32, so a bf16 base loses nothing to the addition."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from ..outputs import atomic_directory
    from .templates import set_generation_stop

    if dtype not in DTYPES:
        raise UsageError(f"merge dtype '{dtype}' is not one of {', '.join(DTYPES)}")
    adapter_dir = Path(adapter_dir)
    base = adapter_base(adapter_dir)
    stored = AutoConfig.from_pretrained(base).dtype
    if dtype != "auto":
        target = getattr(torch, dtype)
    else:
        target = stored if isinstance(stored, torch.dtype) else getattr(torch, stored or "float32")
    with _one_process_loading():
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32, device_map=None)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.to(target)

    # the run's tokenizer (chat template, <|im_end|> as eos) is saved beside the adapter; the base's may differ
    has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir) if has_tokenizer else base)
    if (adapter_dir / "generation_config.json").is_file():
        merged.generation_config = GenerationConfig.from_pretrained(str(adapter_dir))
    set_generation_stop(merged, tokenizer)  # as training set it on the model in memory
    merged.config.use_cache = True  # training turns the KV cache off; generation wants it
    with atomic_directory(output_dir) as staging:
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
    return Path(output_dir)
