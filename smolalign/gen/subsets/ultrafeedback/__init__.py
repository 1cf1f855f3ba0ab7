"""ultrafeedback: preference pairs for `smolalign dpo`, made as UltraFeedback made them (Cui et al., arXiv
2310.01377) and binarized as HuggingFaceH4/ultrafeedback_binarized was.

- Prompts: the seeds' column, either a prompt text or a conversation (an SFT set's messages, SmolTalk's schema
  included: its system turn and first user turn are the prompt). A prompt seen twice is planned once.
- Completions: `completions` answers per prompt from `llm` (on-policy when it is your SFT output), then one from
  each of `models` (keys of `llm` that differ, `model` required), each named in the row.
- Ratings: the judge (`judge`: keys of `llm` that differ) rates every completion with distilabel's UltraFeedback
  rubric for `aspect`, answering JSON decoded under its schema (steps.py), as gen's labels are.
- Pairs (pairs.py, at tally time, so `--refilter pairs.min_margin=2` asks no model): chosen is a highest-rated
  completion, rejected a random one rated at least `pairs.min_margin` lower (seeded by prompt), formatted by
  distilabel's FormatTextGenerationDPO; a prompt whose completions all tie is dropped and counted.

Imports only light modules; its distilabel steps (steps.py) are imported by `add_steps`, when a run starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from dataclasses import dataclass, field
from typing import Literal

from ....data.formats import RowError
from ...sections import Common, LLMSection, SeedsSection, check_llm, filled
from ..common import Outcome, check_row_count, interpreted, load_seed_column, need, seed_count
from .pairs import PairsSection, tally, write
from .ratings import judge_tokens

__all__ = ["Settings", "tally", "write"]

ROUTES = (False, True)  # (magpie, chat)
STRUCTURED = False  # the generator writes free text; the judge's own backend is checked for JSON (`backends`)
PATHS = ()
TRAIN_WITH = "smolalign dpo --model SFT_OUTPUT data.dataset={dir}"
ASPECTS = Literal["overall-rating", "helpfulness", "honesty", "instruction-following", "truthfulness"]


@dataclass
class Settings(Common):
    completions: int = 4
    """Completions per prompt from `llm` (UltraFeedback's 4)."""
    models: list[dict] = field(default_factory=list)
    """More models, one completion each: the keys of `llm` that differ, e.g. [{model: HuggingFaceTB/SmolLM2-360M-
    Instruct}]."""
    judge: dict = field(default_factory=dict)
    """The judge: the keys of `llm` that differ, e.g. {model: M, temperature: 0.0}."""
    aspect: ASPECTS = "overall-rating"
    """UltraFeedback's rubric the judge rates by (distilabel's templates): overall-rating weighs them all."""


def sections() -> dict:
    return {"seeds": SeedsSection, "pairs": PairsSection}


def judge_llm(recipe) -> LLMSection:
    return LLMSection(**{**dataclasses.asdict(recipe.sections["llm"]), **recipe.settings.judge})


def extra_llms(recipe) -> list[LLMSection]:
    return [LLMSection(**{**dataclasses.asdict(recipe.sections["llm"]), **m}) for m in recipe.settings.models]


def models(recipe) -> dict:
    """The models to load beyond `llm`, by key (their devices are checked before any write)."""
    return {"judge": judge_llm(recipe), **{f"models[{i}]": m for i, m in enumerate(extra_llms(recipe))}}


def check(s: dict, checked: dict) -> list[str]:
    from ....config.typecheck import field_types
    from ....config.validation import check_fields

    problems = []
    if s["completions"] < 0 or s["completions"] + len(s["models"]) < 2:
        problems.append(f"completions={s['completions']} with {len(s['models'])} more models: a pair needs at "
                        f"least two completions per prompt")
    base, types = filled(LLMSection, checked.get("llm")), field_types(LLMSection)
    merged = {}
    for key, values in [("judge", s["judge"])] + [(f"models[{i}]", m) for i, m in enumerate(s["models"])]:
        merged[key] = {**base, **check_fields(key, values, types, problems, [f"{key}.{name}" for name in types])}
        problems += check_llm(merged[key], key) if values else []
        if key.startswith("models") and not values.get("model"):
            problems.append(f"{key} names no model: give each entry its model, e.g. {{model: PATH_OR_HUB_ID}}")
    judge, count = merged["judge"], s["completions"] + len(s["models"])
    if judge["max_new_tokens"] < judge_tokens(count):
        problems.append(f"judge.max_new_tokens={judge['max_new_tokens']} may cut the ratings of {count} completions "
                        f"(an answer that does not end is not read): set judge.max_new_tokens={judge_tokens(count)}")
    pairs = filled(PairsSection, checked.get("pairs"))
    if pairs["min_margin"] <= 0:
        problems.append(f"pairs.min_margin={pairs['min_margin']} must be above 0: rejected is rated lower")
    if not 0 <= pairs["test_share"] < 1:
        problems.append(f"pairs.test_share={pairs['test_share']} must be in [0, 1)")
    return problems


def fingerprint(recipe) -> dict:
    from ...spec import llm_fingerprint

    return {"judge": llm_fingerprint(judge_llm(recipe)), "models": [llm_fingerprint(m) for m in extra_llms(recipe)]}


def backends(recipe, found) -> dict:
    """The judge's and the extra models' backends, checked before any write (the judge's for JSON answers)."""
    from ...backends import check_backend

    out = {"judge": check_backend(judge_llm(recipe), magpie=False, chat=True, structured=True)}
    for i, llm in enumerate(extra_llms(recipe)):
        out[f"models[{i}]"] = check_backend(llm, magpie=False, chat=True)
    return out


# ---------------------------------------------------------------- prompts


def prompt_of(value, index: int, where: str) -> list[dict]:
    """A seed value -> the prompt's messages: a text, or a conversation's system turn and first user turn."""
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value.strip()}]
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        head = [m for m in value[:1] if m["role"] == "system" and str(m.get("content") or "").strip()]
        user = next((m for m in value if m["role"] == "user"), None)
        if user is not None and str(user.get("content") or "").strip():
            return [*({"role": "system", "content": m["content"]} for m in head),
                    {"role": "user", "content": user["content"].strip()}]
    from ....errors import UsageError

    raise UsageError(f"{where} row {index}: neither a prompt text nor a conversation with a user turn: fix or remove "
                     f"the row, or set seeds.column=NAME")


def read_seeds(recipe) -> list[list[dict]]:
    seeds, values = load_seed_column(recipe)
    prompts, seen = [], set()
    for index, value in enumerate(values):
        messages = prompt_of(value, index, f"seeds '{seeds.dataset}'")
        key = repr(messages)
        if key not in seen:  # one prompt_id, one row: a repeated prompt would only split its pairs
            seen.add(key)
            prompts.append(messages)
    return prompts


def plan_rows(recipe, seeds: list[list[dict]]) -> list[dict]:
    check_row_count(recipe, seeds, seed_count(seeds))
    order = list(range(len(seeds)))
    random.Random(recipe.settings.seed).shuffle(order)
    rows = []
    for i in range(recipe.settings.num_rows or len(order)):
        messages = seeds[order[i]]
        prompt = messages[-1]["content"]
        rows.append({"gen_id": i, "seed_index": order[i], "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(),
                     "instruction": prompt, "messages": messages})
    return rows


# ---------------------------------------------------------------- steps and answers


def add_steps(recipe, source, backends: dict, replicas: int):
    from distilabel.steps import StepResources

    from ...backends import make_llm
    from .steps import CompleteWith, RateCompletions

    llm, s = recipe.sections["llm"], recipe.settings
    common = dict(input_batch_size=llm.batch_size, resources=StepResources(replicas=replicas), add_raw_input=False)
    writers = [("llm", llm, s.completions)] + [(f"models[{i}]", m, 1) for i, m in enumerate(extra_llms(recipe))]
    last = source
    for i, (key, section, count) in enumerate(w for w in writers if w[2]):
        step = CompleteWith(name=f"complete_{i}", llm=make_llm(section, backends[key], magpie=False), count=count,
                            **common)
        last >> step
        last = step
    judge = judge_llm(recipe)
    rate = RateCompletions(name="judge", llm=make_llm(judge, backends["judge"], magpie=False), aspect=s.aspect,
                           output_mappings={"model_name": "judge_model"},
                           **{**common, "input_batch_size": judge.batch_size})
    last >> rate
    return rate


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    return interpreted(_rated, recipe, row, error)


def _rated(recipe, row, error) -> Outcome:
    expected = recipe.settings.completions + len(recipe.settings.models)
    completions = [need(text, "completion", error) for text in row.get("generations") or []]
    if len(completions) != expected:
        raise RowError(f"{len(completions)} completions instead of {expected}")
    need(row.get("judge_answer"), "judge's answer", error)
    return Outcome("ok", rows=[{
        "gen_id": row["gen_id"], "source": recipe.kind, "prompt_id": row["prompt_id"], "prompt": row["instruction"],
        "messages": row["messages"], "completions": completions, "models": row["generation_models"],
        "truncated": row.get("completion_truncated") or [False] * expected, "ratings": row["ratings"],
        "rationales": row["rationales"], "judge_answer": row["judge_answer"], "judge_model": row.get("judge_model")}])
