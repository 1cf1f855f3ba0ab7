"""smol-constraints: Magpie with a constraints system prompt (1 turn), then a labelling call that names the
query's verifiable (IFEval) constraints as JSON; rows whose labels do not parse or validate, or whose response fails
IFEval's strict check, are filtered with the reason."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Literal

from ..quality.spec import QUALITY_SECTIONS
from ..sections import Common
from .common import Outcome, check_row_count, flags, interpreted, magpie_step, need, smoltalk_row
from .magpie_ultra import check_magpie

ROUTES = (True, True)  # (magpie, chat)
STRUCTURED = True  # the labels are decoded under their JSON schema
PATHS = ()


@dataclass
class Settings(Common):
    turns: int = 1
    """Smol-Constraints uses single exchanges: the checkers verify one response against one query."""
    system_prompt: str = ""
    """Makes the model, writing as the user, ask for tasks with verifiable constraints."""


@dataclass
class LabelSection:
    temperature: float = 0.0
    """Sampling temperature of the labelling call (0: greedy, the labels should be deterministic)."""
    max_new_tokens: int = 512
    reading: Literal["ifeval", "strict"] = "ifeval"
    """How responses are verified: IFEval's own verdicts, or the stricter readings (gen/constraints/text.py)."""


def sections() -> dict:
    return {**QUALITY_SECTIONS, "label": LabelSection}


def check(s: dict, checked: dict) -> list[str]:
    problems = check_magpie(s)
    if s["turns"] != 1:
        problems.append("smol-constraints checks one response against one query: set turns=1")
    if not s["system_prompt"].strip():
        problems.append("system_prompt is empty: it steers the model to ask for verifiable constraints")
    return problems


def fingerprint(recipe) -> dict:
    return {"label": asdict(recipe.sections["label"])}


def read_seeds(recipe) -> None:
    return None


def plan_rows(recipe, seeds) -> list[dict]:
    check_row_count(recipe, seeds)
    prompt = recipe.settings.system_prompt.strip()
    return [{"gen_id": i, "system_prompt": prompt} for i in range(recipe.settings.num_rows)]


def add_steps(recipe, source, backends: dict, replicas: int):
    from distilabel.steps import StepResources

    from ..backends import make_llm
    from ..steps import LabelConstraints

    magpie = magpie_step(recipe, source, backends, replicas)
    llm, label = recipe.sections["llm"], recipe.sections["label"]
    labeller = LabelConstraints(
        name="label", llm=make_llm(llm, backends["llm"], magpie=False, temperature=label.temperature,
                                   max_new_tokens=label.max_new_tokens),
        output_mappings={"generation": "labels", "model_name": "label_model"},
        add_raw_input=False,  # its input is (prompt, schema): no column type holds both
        input_batch_size=llm.batch_size, resources=StepResources(replicas=replicas))
    magpie >> labeller
    return labeller


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    return interpreted(_checked, recipe, row, error)


def _checked(recipe, row, error) -> Outcome:
    from ..constraints import parse_constraint_labels, passes_strict, validate_instructions

    instruction = need(row.get("instruction"), "user turn", error)
    response = need(row.get("response"), "response", error)
    labels = row.get("labels")
    if labels is None:
        need(None, "constraint labels", error)
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    truncated = flags(row.get("truncated"), 2)
    # kept, with its reason and the labeller's own answer, in rejected/
    as_row = [smoltalk_row(recipe, messages, truncated=truncated, gen_id=row["gen_id"], raw_labels=str(labels))]
    try:
        ids, kwargs = parse_constraint_labels(labels)
    except ValueError as problem:
        return Outcome("filtered", rows=as_row, reason="constraint labels not parseable", detail=str(problem)[:300])
    problem = validate_instructions(ids, kwargs)
    if problem:
        return Outcome("filtered", rows=as_row, reason="invalid or conflicting constraint labels",
                       detail=problem[:300])
    if not passes_strict(response, ids, kwargs, prompt=instruction, reading=recipe.sections["label"].reading):
        return Outcome("filtered", rows=as_row, reason="response fails the strict IFEval check", detail=", ".join(ids))
    return Outcome("ok", rows=[smoltalk_row(recipe, messages, instruction_id_list=ids, kwargs=json.dumps(kwargs),
                                            truncated=truncated, gen_id=row["gen_id"])])


def count_kept(rows: list[dict]) -> dict:
    """Its labels: the instructions each kept row was checked against."""
    from collections import Counter

    return {"instruction_ids": dict(Counter(iid for row in rows for iid in row.get("instruction_id_list") or []))}
