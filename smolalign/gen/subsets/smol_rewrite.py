"""smol-rewrite: every seed text once per style (a system prompt), answered by chat generation."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..quality.spec import QUALITY_SECTIONS
from ..sections import Common, SeedsSection
from .common import Outcome, answer_steps, chat_answer, check_row_count, interpreted, read_texts

ROUTES = (False, True)  # (magpie, chat)
STRUCTURED = False
PATHS = ()


@dataclass
class Settings(Common):
    styles: dict[str, str] = field(default_factory=dict)
    """Style name -> system prompt; every seed text is rewritten once per style."""


def sections() -> dict:
    return {**QUALITY_SECTIONS, "seeds": SeedsSection}


def check(s: dict, checked: dict) -> list[str]:
    styles = s["styles"]
    if not styles or not all(str(p).strip() for p in styles.values()):
        return ["styles needs at least one style with a non-empty system prompt"]
    return []


def fingerprint(recipe) -> dict:
    return {}


def read_seeds(recipe) -> list[str]:
    return read_texts(recipe)


def plan_rows(recipe, seeds: list[str]) -> list[dict]:
    s = recipe.settings
    styles = len(s.styles)
    check_row_count(recipe, seeds, (len(seeds) * styles, f"{len(seeds)} seed texts x {styles} styles",
                                    "distinct seed x style pairs"))
    pairs = [(j, style) for j in range(len(seeds)) for style in sorted(s.styles)]
    random.Random(s.seed).shuffle(pairs)
    rows = []
    for i in range(s.num_rows or len(pairs)):
        j, style = pairs[i]
        messages = [{"role": "system", "content": s.styles[style].strip()}, {"role": "user", "content": seeds[j]}]
        rows.append({"gen_id": i, "seed_index": j, "style": style, "messages": messages})
    return rows


def add_steps(recipe, source, backends: dict, replicas: int):
    return answer_steps(recipe, source, backends, replicas)


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    extra = {"style": row["style"], "seed_index": row["seed_index"]}
    return interpreted(lambda r, w, e: chat_answer(r, w, e, extra=extra), recipe, row, error)
