"""Generation specs: what `data_gen/*.yaml` may hold, checked by the same loader as the training recipes.

Each subset has its own top-level settings (so `styles=` on magpie-ultra is an unknown key with a did-you-mean, not
a silently ignored one) and shares the sections `llm`, `output`, `decontaminate` and `ray`, and the quality passes'
`labels`, `safety`, `reward`, `near_dedup`, `minhash` and `filters` (quality/spec.py); the subsets that read seed
texts also have `seeds`. Every value is checked before anything is written or any model is loaded.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config import RecipeSchema, load_recipe, read_yaml
from ..errors import UsageError
from ..resources import resolve_recipe, shipped_dir
from .quality.spec import QUALITY_SECTIONS, check_quality


@dataclass
class LLMSection:
    backend: Literal["openai", "transformers", "vllm"] = "openai"
    """openai: any OpenAI-compatible server (base_url); transformers: a local model in-process; vllm: the same, on a
    GPU."""
    model: str | None = None
    """Served model name (openai; default: the server's only model) or local path / hub id (transformers, vllm)."""
    tokenizer: str | None = None
    """Tokenizer path or hub id; Magpie over a server renders the chat template here (default: llm.model)."""
    base_url: str | None = None
    """Server URL for the openai backend, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key; the key is never written anywhere. None needed for a local server."""
    magpie_pre_query_template: str = "qwen2"
    """What Magpie feeds the model to make it write the user's turn: 'qwen2' (ChatML: <|im_start|>user\\n), 'llama3' or
    the literal string."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    top_k: int = 0
    """transformers / vllm only; 0 turns it off."""
    repetition_penalty: float = 1.0
    """transformers / vllm only (distilabel's TransformersLLM would otherwise use 1.1)."""
    batch_size: int = 8
    """Rows per distilabel batch: one batched forward pass (transformers, vllm), or that many concurrent requests
    (openai)."""
    max_retries: int = 6
    """HTTP retries with backoff per request (openai client; Retry-After is honoured)."""
    timeout: int = 120
    """Seconds before one request is abandoned (openai)."""
    dtype: str = "auto"
    """transformers: torch dtype name or auto."""
    device: str | None = None
    """transformers: cpu, cuda, cuda:1 ... (default: chosen by transformers)."""
    trust_remote_code: bool = False


@dataclass
class LabelSection:
    temperature: float = 0.0
    """Sampling temperature of the labelling call (0: greedy, the labels should be deterministic)."""
    max_new_tokens: int = 512
    reading: Literal["ifeval", "strict"] = "ifeval"
    """How responses are verified: IFEval's own verdicts, or the stricter readings (gen/constraints/text.py)."""


@dataclass
class SeedsSection:
    dataset: str | None = None
    """Hub id, local .jsonl/.json/.parquet/.csv file or hub-layout directory, read through the data layer."""
    column: str = "text"
    """The column holding the seed texts."""
    config: str | None = None
    split: str = "train"
    limit: int | None = None
    """Use only the first N seed texts."""


@dataclass
class OutputSection:
    dir: str | None = None
    """Output directory (default data/SUBSET): a hub-layout dataset that `smolalign sft data.dataset=DIR` reads."""
    shard_size: int = 100
    """Rows per shard: each shard runs as one distilabel pipeline and is committed atomically (the unit of resume)."""
    max_passes: int = 3
    """Tries per row: rows whose batch failed (or whose answer was unusable) are asked again in a later pass."""
    dedup: Literal["exact", "normalized"] = "exact"
    """exact: drop identical conversations; normalized: also those equal up to case, spaces and punctuation."""
    stall_seconds: int = 60
    """A pipeline whose steps neither report progress (tokens, answered requests) nor use the CPU for this long is
    stalled: gen stops with the command that resumes it. A step worker that dies stops it at once."""


@dataclass
class DecontaminateSection:
    against: str | None = None
    """Eval set (path or hub id) whose n-grams must not appear in the user turns (e.g. IFEval); off when null."""
    ngram: int = 10


@dataclass
class RaySection:
    enabled: bool = False
    """Run each shard's pipeline with distilabel's Pipeline.ray() (`--ray` sets this)."""
    address: str | None = None
    """Ray cluster address (default: $RAY_ADDRESS, or a local Ray started for the run)."""
    replicas: int = 1
    """Replicas of each LLM step (generator steps always run as one in distilabel)."""


@dataclass
class Common:
    num_rows: int | None = None
    """Rows to generate (requests). Seed subsets: null means every seed text (once per style for smol-rewrite)."""
    seed: int = 42
    """Fixes the plan: which system prompt, seed text and style each row gets, and how rows fall into shards."""


@dataclass
class MagpieUltraSettings(Common):
    turns: int = 3
    """User/assistant exchanges per conversation."""
    category_weights: dict[str, float] = field(default_factory=dict)
    """Share of rows per task category (sums to 1)."""
    system_prompts: dict[str, str] = field(default_factory=dict)
    """One system prompt per category."""
    style_rules: str = ""
    """Appended to every system prompt."""


@dataclass
class ConstraintsSettings(Common):
    turns: int = 1
    """Smol-Constraints uses single exchanges: the checkers verify one response against one query."""
    system_prompt: str = ""
    """Makes the model, writing as the user, ask for tasks with verifiable constraints."""


@dataclass
class RewriteSettings(Common):
    styles: dict[str, str] = field(default_factory=dict)
    """Style name -> system prompt; every seed text is rewritten once per style."""


@dataclass
class SummarizationSettings(Common):
    email_request: str = ""
    """System prompt asking for both email summaries in one answer, on lines starting 'Brief:' and 'Summary:'."""
    summary_prompts: dict[str, str] = field(default_factory=dict)
    """System prompts written into the output rows: one_sentence, up_to_three_sentences, article ({words} is filled)."""
    article_ratio: float = 0.12
    """Target summary length of an article, as a share of its words."""


BASE_SECTIONS = {"llm": LLMSection, "output": OutputSection, "decontaminate": DecontaminateSection, "ray": RaySection,
                 **QUALITY_SECTIONS}
SUBSET_SECTIONS = {
    "magpie-ultra": (MagpieUltraSettings, {}),
    "smol-constraints": (ConstraintsSettings, {"label": LabelSection}),
    "smol-rewrite": (RewriteSettings, {"seeds": SeedsSection}),
    "smol-summarization": (SummarizationSettings, {"seeds": SeedsSection}),
}
SUMMARY_KEYS = ("one_sentence", "up_to_three_sentences", "article")


DTYPES = ("auto", "float32", "float16", "bfloat16", "float64", "float", "half", "double")
DEVICE = re.compile(r"^(cpu|mps|auto|cuda(:\d+)?|xpu(:\d+)?)$")


def check_device(value, key: str) -> list[str]:
    """A device name torch knows (availability is checked when a run starts: run.py's `check_devices`)."""
    if value is None or DEVICE.match(str(value)):
        return []
    return [f"{key}={value} is not a device: write cpu, cuda, cuda:N (or leave it out to let transformers choose)"]


def check_llm(llm: dict, prefix: str) -> list[str]:
    """The checks of one LLM's settings: the generator's `llm`, or a judge's merged with it (`labels.llm`)."""
    problems = check_device(llm.get("device"), f"{prefix}.device")
    if llm.get("dtype", "auto") not in DTYPES:
        problems.append(f"{prefix}.dtype={llm['dtype']} is not a torch dtype: write one of {', '.join(DTYPES)}")
    if llm.get("temperature", 0.0) < 0:
        problems.append(f"{prefix}.temperature={llm['temperature']} must be at least 0")
    if not 0 < llm.get("top_p", 1.0) <= 1:
        problems.append(f"{prefix}.top_p={llm['top_p']} must be in (0, 1]")
    if llm.get("repetition_penalty", 1.0) <= 0:
        problems.append(f"{prefix}.repetition_penalty={llm['repetition_penalty']} must be above 0")
    for key in ("max_new_tokens", "batch_size", "timeout"):
        if key in llm and llm[key] < 1:
            problems.append(f"{prefix}.{key}={llm[key]} must be at least 1")
    if llm.get("max_retries", 0) < 0 or llm.get("top_k", 0) < 0:
        problems.append(f"{prefix}.max_retries and {prefix}.top_k must be 0 or more")
    if llm.get("backend", "openai") == "openai":
        for key, neutral in (("top_k", 0), ("repetition_penalty", 1.0)):
            if llm.get(key, neutral) != neutral:
                problems.append(f"{prefix}.{key} is not part of the OpenAI API: remove it, or use --backend "
                                f"transformers or vllm")
    elif not llm.get("model"):
        problems.append(f"{prefix}.model is required with backend {llm['backend']}: pass --model PATH_OR_HUB_ID")
    return problems


def _check(subset: str, checked: dict) -> list[str]:
    """Problems that no single field's type can show; every one is reported at once."""
    problems = []
    s = checked.get("_settings", {})
    llm = checked.get("llm") or {}
    out = checked.get("output") or {}
    if s.get("num_rows") is not None and s["num_rows"] < 1:
        problems.append(f"num_rows={s['num_rows']} must be at least 1")
    if subset in ("magpie-ultra", "smol-constraints") and s.get("num_rows") is None:
        problems.append("num_rows is required for Magpie subsets: set e.g. --num-rows 100")
    if s.get("turns", 1) < 1:
        problems.append(f"turns={s['turns']} must be at least 1")
    if subset == "smol-constraints" and s.get("turns", 1) != 1:
        problems.append("smol-constraints checks one response against one query: set turns=1")
    problems += check_llm(llm, "llm")
    for key in ("shard_size", "max_passes", "stall_seconds"):
        if key in out and out[key] < 1:
            problems.append(f"output.{key}={out[key]} must be at least 1")
    if (checked.get("ray") or {}).get("replicas", 1) < 1:
        problems.append("ray.replicas must be at least 1")
    if (checked.get("decontaminate") or {}).get("ngram", 10) < 1:
        problems.append("decontaminate.ngram must be at least 1")
    seeds = checked.get("seeds") or {}
    if seeds.get("limit") is not None and seeds["limit"] < 1:
        problems.append(f"seeds.limit={seeds['limit']} must be at least 1 (or null for all)")
    problems += _check_subset(subset, s)
    from ..config.typecheck import field_types

    problems += check_quality(subset, checked, field_types(LLMSection), check_llm)
    reward, near = checked.get("reward") or {}, checked.get("near_dedup") or {}
    problems += check_device(reward.get("device"), "reward.device") + check_device(near.get("device"),
                                                                                   "near_dedup.device")
    if reward.get("dtype", "auto") not in DTYPES:
        problems.append(f"reward.dtype={reward['dtype']} is not a torch dtype: write one of {', '.join(DTYPES)}")
    return problems


def _check_subset(subset: str, s: dict) -> list[str]:
    problems = []
    if subset == "magpie-ultra":
        weights, prompts = s.get("category_weights") or {}, s.get("system_prompts") or {}
        if not weights:
            problems.append("category_weights is empty: give each category a share of the rows")
        if any(w < 0 for w in weights.values()):
            problems.append("category_weights must not be negative")
        elif weights and abs(sum(weights.values()) - 1.0) > 1e-6:
            problems.append(f"category_weights sum to {sum(weights.values()):g}, not 1: fix the shares")
        missing = sorted(set(weights) - set(prompts))
        if missing:
            problems.append(f"system_prompts has no prompt for {', '.join(missing)}: add one per weighted category")
    if subset == "smol-constraints" and not (s.get("system_prompt") or "").strip():
        problems.append("system_prompt is empty: it steers the model to ask for verifiable constraints")
    if subset == "smol-rewrite":
        styles = s.get("styles") or {}
        if not styles or not all(str(p).strip() for p in styles.values()):
            problems.append("styles needs at least one style with a non-empty system prompt")
    if subset == "smol-summarization":
        prompts = s.get("summary_prompts") or {}
        missing = [k for k in SUMMARY_KEYS if not str(prompts.get(k) or "").strip()]
        if missing:
            problems.append(f"summary_prompts needs {', '.join(missing)}")
        if "{words}" not in str(prompts.get("article") or "{words}"):
            problems.append("summary_prompts.article must contain {words} (the target length)")
        if not (s.get("email_request") or "").strip():
            problems.append("email_request is empty: it asks for both email summaries in one answer")
        if not 0 < s.get("article_ratio", 0.12) < 1:
            problems.append("article_ratio must be between 0 and 1")
    return problems


def schema_for(subset: str) -> RecipeSchema:
    settings, extra = SUBSET_SECTIONS[subset]
    paths = ("llm.model", "llm.tokenizer", "seeds.dataset", "decontaminate.against", "labels.llm.model",
             "safety.llm.model", "safety.model", "reward.model", "near_dedup.model")
    return RecipeSchema(kind="gen", sections={**BASE_SECTIONS, **extra}, settings=settings,
                        check=lambda checked: _check(subset, checked), paths=paths, folder="data_gen",
                        marker="subset")


def list_subsets() -> list[str]:
    """One line per shipped spec: name and what it makes (the spec's first comment line)."""
    lines = []
    for path in sorted(shipped_dir("data_gen").glob("*.yaml")):
        first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
        lines.append(f"{path.stem:<20} {first}")
    return lines


def load_spec(name_or_path: str, overrides: list[str], shortcuts: dict):
    """The resolved spec (a config.Recipe): defaults < YAML < flags < key=value overrides."""
    path = resolve_recipe(name_or_path, "data_gen")
    subset = read_yaml(path).get("subset")
    if subset not in SUBSET_SECTIONS:
        names = ", ".join(SUBSET_SECTIONS)
        raise UsageError(f"spec '{path}' has subset: {subset!r}, which is not one of {names}: set `subset:` in the "
                         f"file")
    flags = [f"{key}={_yaml_scalar(value)}" for key, value in shortcuts.items() if value is not None]
    recipe = load_recipe(str(path), subset, flags + list(overrides), schema=schema_for(subset))
    if recipe.sections["output"].dir is None:
        recipe.sections["output"].dir = str(Path("data") / subset)
    return recipe


def _yaml_scalar(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        import json

        return json.dumps(value)  # quoted, so a model named 'null' or '1e-3' stays a string
    return str(value)


# how an LLM is reached, not what it writes: a rerun may change them (the server's address may move)
NOT_FINGERPRINTED = ("base_url", "api_key_env", "batch_size", "max_retries", "timeout", "device", "dtype")


def llm_fingerprint(llm: LLMSection) -> dict:
    return {k: v for k, v in dataclasses.asdict(llm).items() if k not in NOT_FINGERPRINTED}


def fingerprint_fields(recipe) -> dict:
    """What decides the rows: a rerun into the same directory must match it. The quality passes have their own
    fingerprints (quality/passes.py), so changing a label or a threshold never asks for the rows again."""
    llm = llm_fingerprint(recipe.sections["llm"])
    return {"subset": recipe.kind, "settings": dataclasses.asdict(recipe.settings), "llm": llm,
            "label": dataclasses.asdict(recipe.sections["label"]) if "label" in recipe.sections else None,
            "shard_size": recipe.sections["output"].shard_size}
