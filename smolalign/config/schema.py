"""What a command's recipe may hold (`RecipeSchema`) and the resolved recipe (`Recipe`), whose `training`
section becomes the library's own config object (TRL's SFTConfig / DPOConfig, transformers' TrainingArguments)."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field

import yaml

from ..errors import UsageError
from .typecheck import field_types

# Which library class a recipe's `training` section maps onto, by command.
TRAINING_CLASSES = {"sft": ("trl", "SFTConfig"), "dpo": ("trl", "DPOConfig")}


@dataclass
class RecipeSchema:
    """What a command's YAML may hold. sft and dpo are defined here; pretrain and gen bring their own."""

    kind: str
    sections: dict[str, type]
    """Mapping sections, each checked field by field against a dataclass (e.g. model, data)."""
    training: tuple[str, str] | None = None
    """(module, class) that the `training` section maps onto, field for field (TRL's or transformers' config)."""
    lora: bool = False
    """Whether an optional `lora` section (peft's LoraConfig) is allowed."""
    settings: type | None = None
    """A dataclass for plain keys at the top of the file (a generation spec's `subset`, `num_rows`, ...)."""
    free: tuple[str, ...] = ()
    """Top-level keys taken as written and checked by `check` (e.g. pretrain's `stages` list)."""
    check: object = None
    """check(checked: dict) -> list of problems, after every field has its type."""
    paths: tuple[str, ...] = ()
    """Keys holding paths that resolve against the recipe's folder: `model.tokenizer`, `data.mixture[].dataset`,
    `data.sources.*.dataset`."""
    folder: str = "recipes"
    """Where shipped names are looked up (`recipes` or `data_gen`)."""
    marker: str = "recipe"
    """The key that names the command a file is for (`recipe: sft`)."""


@dataclass
class Recipe:
    kind: str
    model: object = None
    data: object = None
    training: dict = field(default_factory=dict)
    lora: dict | None = None
    path: str | None = None
    raw: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)
    """Every checked section by name (model and data included), and the free ones as written."""
    settings: object = None
    """The top-level settings dataclass, for schemas that have one."""
    schema: RecipeSchema | None = None

    def training_args(self, output_dir: str | None = None):
        """The library's config object (SFTConfig / DPOConfig / TrainingArguments) built from `training`;
        `output_dir`: where the run writes for now (an `--overwrite` builds beside the old output)."""
        training = self.training if output_dir is None else {**self.training, "output_dir": output_dir}
        return build_training_args(self.schema.training if self.schema else TRAINING_CLASSES[self.kind], training)

    def lora_config(self):
        if self.lora is None:
            return None
        from peft import LoraConfig

        return LoraConfig(**{"task_type": "CAUSAL_LM", **self.lora})

    def to_dict(self) -> dict:
        """The resolved recipe, secrets redacted: this is what gets printed and written beside a run."""
        from ..redact import redact

        out = {(self.schema.marker if self.schema else "recipe"): self.kind}
        if self.settings is not None:
            out.update(dataclasses.asdict(self.settings))
        for name, value in self.sections.items():
            out[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
        if self.schema is None or self.schema.training:
            out["training"] = dict(self.training)
        if self.lora is not None:
            out["lora"] = dict(self.lora)
        return redact(out)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def training_class(spec: str | tuple[str, str]):
    module, name = TRAINING_CLASSES[spec] if isinstance(spec, str) else spec
    return getattr(importlib.import_module(module), name)


def build_training_args(spec: str | tuple[str, str], training: dict):
    cls = training_class(spec)
    try:
        return cls(**training)
    except (ValueError, TypeError, AssertionError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "bf16" in first_line and training.get("bf16"):
            raise UsageError("training.bf16=true needs a GPU with bf16 support: add training.bf16=false on this "
                             "machine") from error
        raise UsageError(f"training section is inconsistent: {first_line}") from error


def lora_fields() -> dict:
    from peft import LoraConfig

    return field_types(LoraConfig)
