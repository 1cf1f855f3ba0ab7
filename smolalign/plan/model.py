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
from ..hub import offline
from ..model.memory import Arch, arch_of

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


def written_by_recipe(name: str):
    """(path, model section) of the shipped sft/dpo recipe whose output_dir is `name`, or None."""
    from ..config import load_recipe
    from ..resources import recipe_writing

    found = recipe_writing(name)
    if found is None or found[1].get("recipe") not in ("sft", "dpo"):
        return None
    path, data = found
    return path, load_recipe(str(path), data["recipe"]).model  # its paths anchored as a run reads them


def model_facts(model_section, lora_config=None, vocab: int | None = None) -> ModelFacts:
    """The architecture of a recipe's `model` section, without weights."""
    from ..model.info import model_config

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
    config, source, _ = model_config(name, preset, model_section.gguf_file, model_section.trust_remote_code, vocab)
    if vocab is not None and vocab > config.vocab_size:
        raise UsageError(f"tokenizer has {vocab} tokens but model '{name}' embeds only {config.vocab_size}: use the "
                         f"tokenizer saved with the model")
    return ModelFacts(arch=arch_of(config, lora_config), config=config, source=source, notes=notes,
                      tokenizer=model_section.tokenizer or name)
