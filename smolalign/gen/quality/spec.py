"""The spec sections of the quality passes, shared by every subset: `labels`, `safety`, `reward`, `near_dedup`,
`minhash` and `filters`. Each pass is off until its section turns it on, so a spec without them generates exactly as
before. The checks here run with every other check of the spec, before anything is written.

`labels.llm` and `safety.llm` hold only the keys of the `llm` section that differ from the generator's (the judge
is the generator unless told otherwise); they are checked key by key like `llm` itself, with did-you-mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..sections import LLMSection, ModelSection, check_model, filled

DIFFICULTY = ("very easy", "easy", "medium", "hard", "very hard")
INPUT_QUALITY = ("very poor", "poor", "average", "good", "excellent")
# MagPie-Ultra's 11 task categories, named as data_gen/magpie-ultra.yaml names them
CATEGORIES = ("reasoning", "coding", "math", "data-analysis", "editing", "role-playing", "creative-writing",
              "information-seeking", "planning", "advice", "brainstorming")
LABEL_TASKS = ("difficulty", "input_quality", "task_category")

Difficulty = Literal["very easy", "easy", "medium", "hard", "very hard"]
Quality = Literal["very poor", "poor", "average", "good", "excellent"]


@dataclass
class LabelsSection:
    tasks: list[Literal["difficulty", "input_quality", "task_category"]] = field(default_factory=list)
    """Labels the judge LLM gives each row's first user turn, as JSON that is parsed and validated (MagPie-Ultra:
    all three). A row whose answer does not parse is counted unlabelled, never guessed. [] turns labelling off."""
    llm: dict = field(default_factory=dict)
    """The judge: only the keys of `llm` that differ from the generator's, e.g. {model: M, temperature: 0.0}."""
    categories: list[str] = field(default_factory=lambda: list(CATEGORIES))
    """The task categories the judge chooses from; magpie-ultra checks the answer against the sampled category."""


@dataclass
class SafetySection(ModelSection):
    method: Literal["judge", "guard", "classifier"] | None = None
    """judge: the labels' judge LLM with a safety prompt; guard: a guard LLM whose own chat template holds the
    policy (e.g. meta-llama/Llama-Guard-3-8B, MagPie-Ultra's), answering 'safe' or 'unsafe'; classifier: an
    AutoModelForSequenceClassification (safety.model); null: off."""
    llm: dict = field(default_factory=dict)
    """guard: keys of `llm` that differ from the judge's; safety.llm.model names the guard model. classifier:
    safety.model, an AutoModelForSequenceClassification over the conversation."""
    unsafe_labels: list[str] = field(default_factory=lambda: ["unsafe"])
    """classifier: the label names (the model's id2label) that mean unsafe."""
    max_length: int = 4096


@dataclass
class RewardSection(ModelSection):
    """reward.model: any AutoModelForSequenceClassification (path or hub id) scoring the whole conversation, batched;
    MagPie-Ultra used RLHFlow/ArmoRM-Llama3-8B-v0.1 (with reward.trust_remote_code=true). Off when null."""

    max_length: int = 4096
    """Tokens per conversation; longer ones are cut from the end."""


@dataclass
class NearDedupSection(ModelSection):
    """near_dedup.model: a sentence-embedding model (path or hub id, through sentence-transformers) for the first
    user turn; MagPie-Ultra used Alibaba-NLP/gte-large-en-v1.5 (with near_dedup.trust_remote_code=true). Off when
    null."""

    threshold: float = 0.9
    """Cosine similarity above which a row's first user turn repeats an earlier kept row's: the later row goes."""
    k: int = 5
    """Nearest neighbours searched per row (faiss, inner product of normalised embeddings = cosine)."""
    batch_size: int = 32
    """Sentences per batch: embeddings are cheap next to generation."""


@dataclass
class MinHashSection:
    enabled: bool = False
    """MinHash near-duplicate removal of the last assistant turn (distilabel's MinHashDedup over datasketch)."""
    threshold: float = 0.9
    """Estimated Jaccard similarity of character n-gram sets at or above which a later row is a near-duplicate."""
    num_perm: int = 128
    ngram: int = 5


@dataclass
class FiltersSection:
    min_difficulty: Difficulty | None = None
    min_input_quality: Quality | None = None
    """E.g. good: rows whose input quality is below good, or unlabelled, are dropped."""
    min_reward: float | None = None
    safe_only: bool = False
    """Drop rows labelled unsafe, and rows whose safety label did not parse."""
    category_match: bool = False
    """magpie-ultra: drop rows whose labelled task category is not the sampled one (or is unlabelled)."""
    keep_rejected: bool = True
    """Keep every dropped row, with its reason, in DIR/rejected/ (config `rejected`), for a later --refilter."""
    drop_truncated: bool = False
    """Drop rows with a turn cut at max_new_tokens (its `truncated` flag: finish reason "length"): a cut answer
    teaches a model to stop mid-sentence. The SmolTalk specs turn it on; `--refilter filters.drop_truncated=false`
    brings the rows back."""


QUALITY_SECTIONS = {"labels": LabelsSection, "safety": SafetySection, "reward": RewardSection,
                    "near_dedup": NearDedupSection, "minhash": MinHashSection, "filters": FiltersSection}


def check_quality(subset: str, checked: dict, llm_types: dict, check_llm) -> list[str]:
    """Problems of the quality sections; `check_llm(values, prefix)` applies the `llm` section's own checks."""
    from ...config.validation import check_fields

    problems: list[str] = []
    labels, safety = filled(LabelsSection, checked.get("labels")), filled(SafetySection, checked.get("safety"))
    reward, near = filled(RewardSection, checked.get("reward")), filled(NearDedupSection, checked.get("near_dedup"))
    filters, minhash = filled(FiltersSection, checked.get("filters")), filled(MinHashSection, checked.get("minhash"))
    base = filled(LLMSection, checked.get("llm"))
    judge = {**base, **_nested("labels.llm", labels["llm"], llm_types, problems, check_fields)}
    problems += check_llm(judge, "labels.llm") if labels["llm"] else []
    guard = {**judge, **_nested("safety.llm", safety["llm"], llm_types, problems, check_fields)}
    tasks = labels["tasks"]
    if len(set(tasks)) != len(tasks):
        problems.append("labels.tasks names a label twice: list each once")
    if "task_category" in tasks and not labels["categories"]:
        problems.append("labels.categories is empty: give the task categories the judge chooses from")
    method = safety["method"]
    if method == "guard":
        problems += check_llm(guard, "safety.llm") if safety["llm"] else []
        if not safety["llm"].get("model"):
            problems.append("safety.method=guard needs the guard model: set safety.llm.model=PATH_OR_HUB_ID")
    if method == "classifier" and not safety["model"]:
        problems.append("safety.method=classifier needs safety.model=PATH_OR_HUB_ID (a sequence classifier)")
    for section, values in (("safety", safety), ("reward", reward), ("near_dedup", near)):
        problems += check_model(values, section)
        for key in ("max_length", "k"):
            if key in values and values[key] < 1:
                problems.append(f"{section}.{key}={values[key]} must be at least 1")
    if not -1.0 <= near["threshold"] <= 1.0:
        problems.append(f"near_dedup.threshold={near['threshold']} is a cosine similarity: give a value in [-1, 1]")
    if not 0.0 < minhash["threshold"] <= 1.0:
        problems.append(f"minhash.threshold={minhash['threshold']} is a Jaccard similarity: give a value in (0, 1]")
    for key in ("num_perm", "ngram"):
        if minhash[key] < 1:
            problems.append(f"minhash.{key}={minhash[key]} must be at least 1")
    samples = "category_weights" in checked["_settings"]  # the subset draws a category for each row
    problems += _filters_need(subset, samples, filters, tasks, method, reward["model"])
    return problems


def _nested(prefix: str, values, types: dict, problems: list[str], check_fields) -> dict:
    if not values:
        return {}
    return check_fields(prefix, values, types, problems, [f"{prefix}.{name}" for name in types])


def _filters_need(subset: str, samples_category: bool, filters: dict, tasks: list, method, reward_model) -> list[str]:
    """A threshold on a label that no pass gives would drop every row: say which pass to turn on."""
    problems = []
    for key, task in (("min_difficulty", "difficulty"), ("min_input_quality", "input_quality")):
        if filters[key] is not None and task not in tasks:
            problems.append(f"filters.{key} needs the {task} label: add {task} to labels.tasks")
    if filters["category_match"]:
        if "task_category" not in tasks:
            problems.append("filters.category_match needs the task_category label: add it to labels.tasks")
        if not samples_category:
            problems.append(f"filters.category_match compares with the sampled category, which {subset} does not "
                            f"sample (magpie-ultra does)")
    if filters["min_reward"] is not None and not reward_model:
        problems.append("filters.min_reward needs reward scores: set reward.model=PATH_OR_HUB_ID")
    if filters["safe_only"] and not method:
        problems.append("filters.safe_only needs safety labels: set safety.method (judge, guard or classifier)")
    return problems
