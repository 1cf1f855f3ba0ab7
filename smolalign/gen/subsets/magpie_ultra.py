"""magpie-ultra: one system prompt per task category, drawn by weight; Magpie writes `turns` user/assistant
exchanges. Then MagPie-Ultra's quality passes (quality/).

Magpie runs as a task fed by the planned rows (one system prompt each) rather than as distilabel's
MagpieGenerator: a generator step runs as one replica under Ray and hangs when num_rows is not a multiple of its
batch size, while a task's replicas can grow.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...data.formats import RowError
from ..quality.spec import QUALITY_SECTIONS
from ..sections import Common
from .common import Outcome, check_row_count, flags, interpreted, magpie_step, need, smoltalk_row

ROUTES = (True, False)  # (magpie, chat)
STRUCTURED = False
PATHS = ()


@dataclass
class Settings(Common):
    turns: int = 3
    """User/assistant exchanges per conversation."""
    category_weights: dict[str, float] = field(default_factory=dict)
    """Share of rows per task category (sums to 1)."""
    system_prompts: dict[str, str] = field(default_factory=dict)
    """One system prompt per category."""
    style_rules: str = ""
    """Appended to every system prompt."""


def sections() -> dict:
    return dict(QUALITY_SECTIONS)


def check_magpie(s: dict) -> list[str]:
    """The checks of the Magpie subsets' shared settings."""
    problems = []
    if s["num_rows"] is None:
        problems.append("num_rows is required for Magpie subsets: set e.g. --num-rows 100")
    if s["turns"] < 1:
        problems.append(f"turns={s['turns']} must be at least 1")
    return problems


def check(s: dict, checked: dict) -> list[str]:
    problems = check_magpie(s)
    weights, prompts = s["category_weights"], s["system_prompts"]
    if not weights:
        problems.append("category_weights is empty: give each category a share of the rows")
    if any(w < 0 for w in weights.values()):
        problems.append("category_weights must not be negative")
    elif weights and abs(sum(weights.values()) - 1.0) > 1e-6:
        problems.append(f"category_weights sum to {sum(weights.values()):g}, not 1: fix the shares")
    missing = sorted(set(weights) - set(prompts))
    if missing:
        problems.append(f"system_prompts has no prompt for {', '.join(missing)}: add one per weighted category")
    return problems


def fingerprint(recipe) -> dict:
    return {}


def read_seeds(recipe) -> None:
    return None


def plan_rows(recipe, seeds) -> list[dict]:
    from .common import weighted_choices

    check_row_count(recipe, seeds)
    s = recipe.settings
    cats = weighted_choices(s.category_weights, s.num_rows, s.seed)
    rule = f"\n\n{s.style_rules.strip()}" if s.style_rules.strip() else ""
    prompts = {c: s.system_prompts[c].strip() + rule for c in s.category_weights}  # one string each, shared
    return [{"gen_id": i, "category": c, "system_prompt": prompts[c]} for i, c in enumerate(cats)]


def add_steps(recipe, source, backends: dict, replicas: int):
    return magpie_step(recipe, source, backends, replicas)


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    return interpreted(_conversation, recipe, row, error)


def _conversation(recipe, row, error) -> Outcome:
    conversation = row.get("conversation")
    if not conversation:
        need(None, "conversation", error)
    expected = 2 * recipe.settings.turns
    for m in conversation:
        need(m.get("content"), f"{m.get('role')} turn", error)
    if len(conversation) != expected:
        raise RowError(f"{len(conversation)} messages instead of {expected}: a turn came back empty")
    messages = [{"role": m["role"], "content": m["content"].strip()} for m in conversation]
    return Outcome("ok", rows=[smoltalk_row(recipe, messages, truncated=flags(row.get("truncated"), len(messages)),
                                            category=row["category"], gen_id=row["gen_id"])])
