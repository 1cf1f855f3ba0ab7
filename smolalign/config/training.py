"""The sft and dpo recipe schemas, and the `model` section check that every training command shares."""

from __future__ import annotations

from ..model.presets import PRESETS
from .schema import TRAINING_CLASSES, RecipeSchema
from .sections import SECTIONS, DataSource
from .typecheck import field_types
from .validation import check_fields, suggest


def check_model(checked: dict) -> list[str]:
    """The `model` section of every training recipe: a saved model, or a preset with its tokenizer."""
    problems = []
    model = checked.get("model") or {}
    if bool(model.get("name_or_path")) == bool(model.get("preset")):
        problems.append("model needs exactly one of model.name_or_path or model.preset")
    if model.get("preset") and model["preset"] not in PRESETS:
        problems.append(f"model.preset={model['preset']!r} is unknown{suggest(model['preset'], list(PRESETS))}: "
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
        source = check_fields(f"data.mixture[{index}]", source, source_types, problems, source_keys)
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
