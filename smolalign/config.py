"""Recipes: YAML sections `model`, `data`, `training` (TRL's own config fields), optional `lora` (peft's).

One precedence, defaults < YAML < `key=value` overrides, and one validation pass that reports every problem at
once, with the nearest valid key for a typo, before any model or data is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from .errors import UsageError
from .presets import PRESETS
from .resources import resolve_recipe
from .typecheck import _MISSING, coerce, field_types, type_name

FormatName = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "preference"]

# Which library class a recipe's `training` section maps onto, by command.
TRAINING_CLASSES = {"sft": ("trl", "SFTConfig"), "dpo": ("trl", "DPOConfig")}


@dataclass
class ModelSection:
    name_or_path: str | None = None
    """Hub id or local directory of a saved model (its tokenizer is used too)."""
    preset: str | None = None
    """Build fresh weights from a preset instead (smollm2-135m, smollm2-360m, smollm2-1.7b, tiny)."""
    tokenizer: str | None = None
    """Tokenizer directory or hub id; required with `preset`, optional otherwise."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bf16 on a GPU that supports it, fp32 on CPU."""
    attn_implementation: str = "auto"
    """`auto`: flash_attention_2 on GPU when installed, else sdpa."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model; off unless you trust its author."""


@dataclass
class DataSource:
    dataset: str | None = None
    """Hub id, local .jsonl/.json/.parquet/.csv file, or a local directory laid out like a hub dataset."""
    config: str | None = None
    split: str = "train"
    format: FormatName = "auto"
    weight: float = 1.0
    """Share of the mixture (weights are normalised to sum to 1)."""


@dataclass
class DataSection:
    dataset: str | None = None
    """Hub id, local file or hub-layout directory; or use `mixture`."""
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    """Split used for evaluation; when absent, `eval_fraction` of the training rows are held out."""
    format: FormatName = "auto"
    """Input format; `auto` detects it from the columns."""
    mixture: list[dict] | None = None
    """List of sources (dataset, config, split, format, weight); weight = share of the mixed rows."""
    eval_fraction: float = 0.0
    """Share of training rows held out for evaluation (deterministic, by `seed`) when no eval_split is given."""
    num_samples: int | None = None
    """Rows to train on (a cap for one dataset; the mixture size for a mixture). None: all that the weights allow."""
    seed: int = 42
    max_truncated_fraction: float = 1.0
    """Fail the run when more than this share of rows is cut by `training.max_length`."""


SECTIONS = {"model": ModelSection, "data": DataSection}


class RecipeLoader(yaml.SafeLoader):
    """YAML as people mean it in configs: only true/false are booleans (`save_strategy: no` stays "no"),
    and `1e-4` is a number."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789"))


def yaml_load(text: str):
    return yaml.load(text, Loader=RecipeLoader)


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

    def training_args(self):
        """The library's config object (SFTConfig / DPOConfig / TrainingArguments) built from `training`."""
        return build_training_args(self.schema.training if self.schema else TRAINING_CLASSES[self.kind],
                                   self.training)

    def lora_config(self):
        if self.lora is None:
            return None
        from peft import LoraConfig

        return LoraConfig(**{"task_type": "CAUSAL_LM", **self.lora})

    def to_dict(self) -> dict:
        """The resolved recipe, secrets redacted: this is what gets printed and written beside a run."""
        from .redact import redact

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


def _lora_fields() -> dict:
    from peft import LoraConfig

    return field_types(LoraConfig)


# ---------------------------------------------------------------- overrides and merging


def parse_overrides(items: list[str]) -> dict:
    """`a.b=value` strings into a nested dict; values are YAML (so `true`, `[1, 2]`, `{x: 1}` work)."""
    nested: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"override '{item}' is not key=value: write e.g. training.learning_rate=1e-4")
        try:
            value = yaml_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        target = nested
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise UsageError(f"override '{item}' sets inside '{part}', which is not a section")
        target[parts[-1]] = value
    return nested


def deep_merge(base: dict, top: dict) -> dict:
    """Later wins; mappings merge key by key (lists are replaced whole)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"recipe '{path}' is not a text file (not UTF-8): give a YAML recipe") from error
    except OSError as error:
        raise UsageError(f"recipe '{path}' cannot be read ({error.strerror or type(error).__name__})") from error
    if "\x00" in text:
        raise UsageError(f"recipe '{path}' is a binary file: give a YAML recipe")
    try:
        loaded = yaml_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UsageError(f"recipe '{path}' is not valid YAML{where}: fix the syntax") from error
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise UsageError(f"recipe '{path}' must be a YAML mapping of sections (e.g. model, data, training)")
    return loaded


# ---------------------------------------------------------------- validation


def _suggest(key: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    if not match:  # a bare field name without its section: match on the last part
        last = {c.rsplit(".", 1)[-1]: c for c in candidates}
        hit = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(last), n=1, cutoff=0.75)
        match = [last[hit[0]]] if hit else []
    return f" (did you mean {match[0]}?)" if match else ""


def _check_fields(prefix: str, values: dict, types: dict, problems: list[str], candidates: list[str]) -> dict:
    checked = {}
    for key, value in values.items():
        name = f"{prefix}.{key}"
        if key not in types:
            problems.append(f"unknown key {name}{_suggest(name, candidates)}")
            continue
        result = coerce(value, types[key])
        if result is _MISSING:
            problems.append(f"{name}={value!r} has the wrong type: expected {type_name(types[key])}")
            continue
        checked[key] = result
    return checked


def _section_types(schema: RecipeSchema, with_lora: bool) -> dict[str, dict]:
    types = {name: field_types(cls) for name, cls in schema.sections.items()}
    if schema.training:
        types["training"] = field_types(training_class(schema.training))
    if with_lora and schema.lora:
        types["lora"] = _lora_fields()
    return types


def validate(raw: dict, schema: RecipeSchema | str) -> tuple[dict, list[str]]:
    """Type-check every section; return the checked values and the list of every problem found."""
    schema = SCHEMAS[schema] if isinstance(schema, str) else schema
    problems: list[str] = []
    types = _section_types(schema, with_lora=raw.get("lora") is not None)
    top = field_types(schema.settings) if schema.settings else {}
    candidates = [f"{section}.{name}" for section, fields in types.items() for name in fields]
    candidates += list(top) + list(schema.free)
    checked: dict = {}
    settings = {}
    for key, value in raw.items():
        if key == schema.marker:
            continue
        if key in schema.free:
            checked[key] = value
            continue
        if key in top:
            result = coerce(value, top[key])
            if result is _MISSING:
                problems.append(f"{key}={value!r} has the wrong type: expected {type_name(top[key])}")
            else:
                settings[key] = result
            continue
        if key not in types:
            what = "section or key" if top else "section"
            problems.append(f"unknown {what} {key}{_suggest(key, candidates + list(types))}")
            continue
        if value is None:
            checked[key] = None
            continue
        if not isinstance(value, dict):
            problems.append(f"section {key} must be a mapping, got {type(value).__name__}")
            continue
        checked[key] = _check_fields(key, value, types[key], problems, candidates)
    if schema.settings:
        checked["_settings"] = settings
    if schema.check is not None:
        problems.extend(schema.check(checked))
    return checked, problems


def check_model(checked: dict) -> list[str]:
    """The `model` section of every training recipe: a saved model, or a preset with its tokenizer."""
    problems = []
    model = checked.get("model") or {}
    if bool(model.get("name_or_path")) == bool(model.get("preset")):
        problems.append("model needs exactly one of model.name_or_path or model.preset")
    if model.get("preset") and model["preset"] not in PRESETS:
        problems.append(f"model.preset={model['preset']!r} is unknown{_suggest(model['preset'], list(PRESETS))}: "
                        f"choose one of {', '.join(PRESETS)}")
    if model.get("preset") and not model.get("tokenizer"):
        problems.append("model.preset needs model.tokenizer (a tokenizer directory or hub id)")
    return problems


def check_chat_data(checked: dict) -> list[str]:
    """The `data` section of sft and dpo recipes."""
    problems = check_model(checked)
    data = checked.get("data") or {}
    if bool(data.get("dataset")) == bool(data.get("mixture")):
        problems.append("data needs exactly one of data.dataset or data.mixture")
    source_types = field_types(DataSource)
    source_keys = [f"data.mixture[].{name}" for name in source_types]
    for index, source in enumerate(data.get("mixture") or []):
        if not isinstance(source, dict):
            problems.append(f"data.mixture[{index}] must be a mapping with dataset and weight")
            continue
        source = _check_fields(f"data.mixture[{index}]", source, source_types, problems, source_keys)
        if not source.get("dataset"):
            problems.append(f"data.mixture[{index}] needs a dataset")
        if source.get("weight", 1.0) <= 0:
            problems.append(f"data.mixture[{index}].weight must be > 0")
        data["mixture"][index] = source
    if not 0.0 <= data.get("eval_fraction", 0.0) < 1.0:
        problems.append("data.eval_fraction must be in [0, 1)")
    if not 0.0 <= data.get("max_truncated_fraction", 1.0) <= 1.0:
        problems.append("data.max_truncated_fraction must be in [0, 1]")
    if data.get("num_samples") is not None and data["num_samples"] < 1:
        problems.append(f"data.num_samples={data['num_samples']} must be at least 1 (or null for all rows)")
    return problems


CHAT_PATHS = ("model.name_or_path", "model.tokenizer", "data.dataset", "data.mixture[].dataset")
SCHEMAS = {
    kind: RecipeSchema(kind=kind, sections=SECTIONS, training=TRAINING_CLASSES[kind], lora=True,
                       check=check_chat_data, paths=CHAT_PATHS)
    for kind in ("sft", "dpo")
}


# ---------------------------------------------------------------- entry point


def _anchor_paths(from_yaml: dict, recipe_dir: Path, keys: tuple[str, ...]) -> dict:
    """A relative path written in a recipe means relative to the recipe's folder when it exists there (so shipped
    recipes work from any directory, and a same-named folder where you stand never shadows the shipped one);
    otherwise it stays as written: relative to where you are (e.g. `runs/debug-sft`), or a hub id."""
    import copy

    def anchor(value):
        if not isinstance(value, str) or not value or Path(value).expanduser().is_absolute():
            return value
        candidate = recipe_dir / value
        return str(candidate) if candidate.exists() else value

    def walk(node, parts):
        if not parts or node is None:
            return
        head, rest = parts[0], parts[1:]
        if head.endswith("[]"):
            items = node.get(head[:-2]) if isinstance(node, dict) else None
            for item in items if isinstance(items, list) else []:
                walk(item, rest)
        elif head == "*":
            for child in (node.values() if isinstance(node, dict) else []):
                walk(child, rest)
        elif isinstance(node, dict) and head in node:
            if rest:
                walk(node[head], rest)
            else:
                node[head] = anchor(node[head])

    out = copy.deepcopy(from_yaml)
    for key in keys:
        walk(out, key.split("."))
    return out


def _prefer_command_line_model(from_file: dict, overrides: dict) -> dict:
    """`model.name_or_path=DIR` on the command line replaces the file's preset (and its tokenizer), and
    `model.preset=X` replaces the file's name_or_path: the command line names the model, whole."""
    model_over = overrides.get("model") if isinstance(overrides.get("model"), dict) else {}
    model_file = from_file.get("model") if isinstance(from_file.get("model"), dict) else None
    if not model_over or model_file is None:
        return from_file
    model_file = dict(model_file)
    if model_over.get("name_or_path") and "preset" not in model_over:
        model_file.pop("preset", None)
        if "tokenizer" not in model_over:
            model_file.pop("tokenizer", None)
    if model_over.get("preset") and "name_or_path" not in model_over:
        model_file.pop("name_or_path", None)
    return {**from_file, "model": model_file}


def load_recipe(name_or_path: str, kind: str, overrides: list[str] | None = None, defaults: dict | None = None,
                schema: RecipeSchema | None = None) -> Recipe:
    """Resolve, merge (defaults < YAML < overrides), validate and build a recipe for the command `kind`."""
    schema = schema or SCHEMAS[kind]
    path = resolve_recipe(name_or_path, schema.folder)
    from_yaml = _anchor_paths(read_yaml(path), path.parent, schema.paths)
    declared = from_yaml.get(schema.marker)
    if schema.marker == "recipe" and declared is not None and declared != kind:
        raise UsageError(f"'{path}' is a {declared} recipe: run it with `smolalign {declared} {name_or_path}`")
    parsed = parse_overrides(overrides or [])
    from_files = _prefer_command_line_model(deep_merge(defaults or {}, from_yaml), parsed)
    raw = deep_merge(from_files, parsed)
    checked, problems = validate(raw, schema)
    if problems:
        from .redact import redact_text

        count = f"{len(problems)} problems" if len(problems) > 1 else "1 problem"
        raise UsageError(redact_text(f"{count} in recipe {path}: " + "; ".join(problems)))
    sections = {}
    for name, cls in schema.sections.items():
        sections[name] = cls(**(checked.get(name) or {}))
    for name in schema.free:
        if name in checked:
            sections[name] = checked[name]
    return Recipe(
        kind=kind,
        model=sections.get("model"),
        data=sections.get("data"),
        training=checked.get("training") or {},
        lora=checked.get("lora"),
        path=str(path),
        raw=raw,
        sections=sections,
        settings=schema.settings(**checked["_settings"]) if schema.settings else None,
        schema=schema,
    )
