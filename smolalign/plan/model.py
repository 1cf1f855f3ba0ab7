"""A recipe's model as `smolalign plan` and the micro-batch choice see it: counts read from the architecture built on
the meta device (no memory, no weights), and the config that the MFU convention reads.

The architecture comes from a preset (smolalign's own definition), a local model's config.json, or a hub model's
config.json (cached, or from the hub when it answers). A SmolLM2 release whose config cannot be read here (offline
and not cached) is sized as the preset of the same architecture, and the output says so. A model directory that a
shipped recipe writes but that does not exist yet (DPO's start, `runs/smollm2-1.7b-sft`) is sized as that recipe's
model. Anything else that cannot be read fails with the training commands' own error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UsageError
from .memory import Arch

# The released SmolLM2 checkpoints have the presets' architecture (model/presets.py checks their parameter counts).
RELEASES = {f"HuggingFaceTB/SmolLM2-{size}{suffix}": f"smollm2-{size.lower()}"
            for size in ("135M", "360M", "1.7B") for suffix in ("", "-Instruct")}


@dataclass
class ModelFacts:
    arch: Arch
    config: object
    """The transformers config (layers, heads, head size for the attention FLOPs)."""
    source: str
    notes: list[str]
    tokenizer: str | None = None
    """The tokenizer the run would load: the recipe's, or the model's own."""


def arch_of(config, lora_config=None) -> Arch:
    """Counts of a config's model built on the meta device; with a LoRA config, peft's own adapters counted too."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    unique = {id(p): p for p in model.parameters()}
    parameters = sum(p.numel() for p in unique.values())
    layers = model.get_decoder().layers
    layer = sum(p.numel() for p in layers[0].parameters())
    linear = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)}
    heads = config.num_attention_heads
    root, trainable = parameters - len(layers) * layer, None
    if lora_config is not None:
        from peft import get_peft_model

        with torch.device("meta"):
            peft_model = get_peft_model(model, lora_config)
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        parameters = sum(p.numel() for p in peft_model.parameters())
    return Arch(parameters=parameters, layers=len(layers), hidden=config.hidden_size, heads=heads,
                kv_heads=getattr(config, "num_key_value_heads", None) or heads,
                head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
                intermediate=config.intermediate_size, vocab=config.vocab_size, layer_parameters=layer,
                root_parameters=root, linear_parameters=sum(linear.values()),
                trainable=trainable)


def offline(name: str) -> bool:
    """A hub id that cannot be read here because the hub does not answer (rather than a wrong name)."""
    from ..hub import hub_reachable, looks_like_local_path

    return not looks_like_local_path(name) and not Path(name).expanduser().exists() and not hub_reachable()


def written_by_recipe(name: str):
    """(path, model section) of the shipped training recipe whose output_dir is `name`, or None."""
    from ..config import load_recipe, read_yaml
    from ..resources import shipped_recipes

    for path in shipped_recipes():
        data = read_yaml(path) or {}
        output = (data.get("training") or {}).get("output_dir") if isinstance(data, dict) else None
        if isinstance(output, str) and Path(output) == Path(name) and data.get("recipe") in ("sft", "dpo"):
            return path, load_recipe(str(path), data["recipe"]).model  # its paths anchored as a run reads them
    return None


def model_facts(model_section, lora_config=None, vocab: int | None = None) -> ModelFacts:
    """The architecture of a recipe's `model` section, without weights."""
    from ..model.build import llama_config
    from ..model.gguf import find_gguf, gguf_config, inspect_gguf
    from ..model.load import check_model_source

    name, preset, notes = model_section.name_or_path, model_section.preset, []
    if name and not preset and not Path(name).expanduser().exists():
        writer = written_by_recipe(name)
        if writer is not None:
            path, model = writer
            from ..resources import shipped_dir

            notes.append(f"{name} does not exist yet: sized as the output of recipe "
                         f"{path.relative_to(shipped_dir('recipes')).with_suffix('')} "
                         f"({model.name_or_path or 'preset ' + str(model.preset)})")
            facts = model_facts(replace(model_section, name_or_path=model.name_or_path, preset=model.preset,
                                        tokenizer=model_section.tokenizer or model.tokenizer), lora_config, vocab)
            return replace(facts, notes=notes + facts.notes)
        if name in RELEASES and offline(name):
            notes.append(f"{name}: config.json not readable here (the hub does not answer); sized as preset "
                         f"{RELEASES[name]}, the same architecture")
            preset = RELEASES[name]
    if preset:
        config = llama_config(preset, vocab_size=vocab)
        source = f"preset {preset}"
    elif (gguf := find_gguf(name, model_section.gguf_file)) is not None:
        config = gguf_config(inspect_gguf(gguf))  # the file's metadata: no weights read
        source = f"GGUF metadata of {name}"
    else:
        check_model_source(name)
        from transformers import AutoConfig

        from ..hub import load_error

        local = Path(name).expanduser()
        try:
            config = AutoConfig.from_pretrained(str(local) if local.exists() else name,
                                                trust_remote_code=model_section.trust_remote_code)
        except (OSError, ValueError) as error:
            raise load_error("model", name, error) from error
        source = f"config.json of {name}"
    if vocab is not None and vocab > config.vocab_size:
        raise UsageError(f"tokenizer has {vocab} tokens but model '{name}' embeds only {config.vocab_size}: use the "
                         f"tokenizer saved with the model")
    return ModelFacts(arch=arch_of(config, lora_config), config=config, source=source, notes=notes,
                      tokenizer=model_section.tokenizer or name)
