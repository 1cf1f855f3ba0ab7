"""Everything about the quality passes that can be wrong, found before the first write: the packages a pass needs,
each model's name (seconds, never a hub timeout), that a reward or safety model really is a sequence classifier
(AutoModelForSequenceClassification would otherwise load a causal LM with a fresh, random head and score noise),
and the judge's or guard's backend when it differs from the generator's."""

from __future__ import annotations

import importlib.util

from ...errors import UsageError

NEEDS = {"near_dedup": (("sentence_transformers", "sentence-transformers"), ("faiss", "faiss-cpu")),
         "minhash": (("datasketch", "datasketch"),)}


def need_packages(recipe) -> None:
    """The deduplication passes' libraries (also what a --refilter needs: it runs them again)."""
    if "near_dedup" not in recipe.sections:
        return
    for section, on in (("near_dedup", recipe.sections["near_dedup"].model), ("minhash",
                                                                              recipe.sections["minhash"].enabled)):
        missing = [pip for module, pip in NEEDS[section] if on and importlib.util.find_spec(module) is None]
        if missing:
            raise UsageError(f"{section} needs {' and '.join(missing)}: pip install {' '.join(missing)}")


def check_classifier(key: str, name: str, trust_remote_code: bool, single_score: bool) -> None:
    """`name` loads as an AutoModelForSequenceClassification with a trained head; raises UsageError."""
    from transformers import AutoConfig

    from ...model.load import check_model_source

    check_model_source(name)
    try:
        config = AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"{key} '{name}' has no readable model config ({first[:200]})") from None
    architectures = list(getattr(config, "architectures", None) or [])
    custom = "AutoModelForSequenceClassification" in (getattr(config, "auto_map", None) or {})
    if not custom and not any(a.endswith("ForSequenceClassification") for a in architectures):
        what = ", ".join(architectures) or "none recorded"
        raise UsageError(f"{key} '{name}' is not a sequence classifier (architecture: {what}): give an "
                         f"AutoModelForSequenceClassification checkpoint" +
                         (", e.g. a reward model such as RLHFlow/ArmoRM-Llama3-8B-v0.1" if single_score else ""))
    if single_score and not custom and config.num_labels != 1:
        raise UsageError(f"{key} '{name}' has {config.num_labels} labels: a reward model gives one score "
                         f"(num_labels=1)")


def _same_llm(a, b) -> bool:
    keys = ("backend", "model", "tokenizer", "base_url", "api_key_env", "trust_remote_code")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def check_quality_inputs(recipe, generator_backend, chat_checked: bool) -> dict:
    """Raises UsageError on the first problem; returns the backends of the judge and the guard (by name).
    `chat_checked`: the generator's check already covered the chat route the judge needs."""
    from ..backends import check_backend
    from .passes import guard_llm, judge_llm, passes_of

    passes = passes_of(recipe)
    steps = {p.step for p in passes}
    safety, reward, near = recipe.sections["safety"], recipe.sections["reward"], recipe.sections["near_dedup"]
    need_packages(recipe)
    if near.model:
        from ...model.load import check_model_source

        check_model_source(near.model)
    if reward.model:
        check_classifier("reward.model", reward.model, reward.trust_remote_code, single_score=True)
    if "safety_classifier" in steps:
        check_classifier("safety.model", safety.model, safety.trust_remote_code, single_score=False)
    backends = {}
    for step, llm in (("judge", judge_llm(recipe) if "judge" in steps else None),
                      ("guard", guard_llm(recipe) if "guard" in steps else None)):
        if llm is None:
            continue
        if chat_checked and _same_llm(llm, recipe.sections["llm"]):
            backends[step] = generator_backend
        else:
            backends[step] = check_backend(llm, magpie=False, chat=True, structured=step == "judge")
    return backends
