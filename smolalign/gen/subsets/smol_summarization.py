"""smol-summarization: an email (text starting "Subject:") gets one answer holding two labelled summaries, written
out as two rows; an article gets one summary of about `article_ratio` of its length."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from ...data.formats import RowError
from ..quality.spec import QUALITY_SECTIONS
from ..sections import Common, SeedsSection
from .common import (Outcome, answer_flags, answer_steps, chat_answer, check_row_count, interpreted, need,
                     read_texts, seed_count, smoltalk_row)

ROUTES = (False, True)  # (magpie, chat)
STRUCTURED = False
PATHS = ()
SUMMARY_KEYS = ("one_sentence", "up_to_three_sentences", "article")


@dataclass
class Settings(Common):
    email_request: str = ""
    """System prompt asking for both email summaries in one answer, on lines starting 'Brief:' and 'Summary:'."""
    summary_prompts: dict[str, str] = field(default_factory=dict)
    """System prompts written into the output rows: one_sentence, up_to_three_sentences, article ({words} is filled)."""
    article_ratio: float = 0.12
    """Target summary length of an article, as a share of its words."""


def sections() -> dict:
    return {**QUALITY_SECTIONS, "seeds": SeedsSection}


def check(s: dict, checked: dict) -> list[str]:
    problems = []
    prompts = s["summary_prompts"]
    missing = [k for k in SUMMARY_KEYS if not str(prompts.get(k) or "").strip()]
    if missing:
        problems.append(f"summary_prompts needs {', '.join(missing)}")
    if "{words}" not in str(prompts.get("article") or "{words}"):
        problems.append("summary_prompts.article must contain {words} (the target length)")
    if not s["email_request"].strip():
        problems.append("email_request is empty: it asks for both email summaries in one answer")
    if not 0 < s["article_ratio"] < 1:
        problems.append("article_ratio must be between 0 and 1")
    return problems


def fingerprint(recipe) -> dict:
    return {}


def read_seeds(recipe) -> list[str]:
    return read_texts(recipe)


def is_email(text: str) -> bool:
    return text.lstrip().lower().startswith("subject:")


def plan_rows(recipe, seeds: list[str]) -> list[dict]:
    check_row_count(recipe, seeds, seed_count(seeds))
    s = recipe.settings
    order = list(range(len(seeds)))
    random.Random(s.seed).shuffle(order)
    rows = []
    for i in range(s.num_rows or len(order)):
        j = order[i]
        text = seeds[j]
        if is_email(text):
            system, kind = s.email_request.strip(), "email"
        else:
            words = max(10, round(len(text.split()) * s.article_ratio))
            system, kind = s.summary_prompts["article"].strip().replace("{words}", str(words)), "article"
        rows.append({"gen_id": i, "seed_index": j, "kind": kind,
                     "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]})
    return rows


def add_steps(recipe, source, backends: dict, replicas: int):
    return answer_steps(recipe, source, backends, replicas)


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    return interpreted(_summaries, recipe, row, error)


# "Brief: ..." / "**Brief:** ..." at the start of a line; the brief runs up to the "Summary:" line
_LABEL = r"^[^\w\n]*{}[*_ \t]*:[*_ \t]*"
BRIEF = re.compile(_LABEL.format("brief") + r"(.+?)\s*(?=" + _LABEL.format("summary") + r"|\Z)",
                   re.IGNORECASE | re.MULTILINE | re.DOTALL)
SUMMARY = re.compile(_LABEL.format("summary") + r"(.+?)\s*\Z", re.IGNORECASE | re.MULTILINE | re.DOTALL)


def parse_email_summaries(answer: str) -> tuple[str, str]:
    """('Brief: ...', 'Summary: ...') -> the two summaries; RowError when either part is missing or empty."""
    brief, summary = BRIEF.search(answer), SUMMARY.search(answer)
    if not brief or not summary or not brief.group(1).strip() or not summary.group(1).strip():
        raise RowError("the answer does not hold both a 'Brief:' and a 'Summary:' part")
    return brief.group(1).strip(), summary.group(1).strip()


def _summaries(recipe, row, error) -> Outcome:
    if row["kind"] == "article":
        return chat_answer(recipe, row, error, extra={"kind": "article", "summary_type": "article",
                                                      "seed_index": row["seed_index"]})
    brief, summary = parse_email_summaries(need(row.get("generation"), "answer", error))
    email = row["messages"][-1]["content"]
    prompts = recipe.settings.summary_prompts
    rows = []
    for kind, text in (("one_sentence", brief), ("up_to_three_sentences", summary)):
        messages = [{"role": "system", "content": prompts[kind].strip()}, {"role": "user", "content": email},
                    {"role": "assistant", "content": text}]
        rows.append(smoltalk_row(recipe, messages, truncated=answer_flags(row, len(messages)), gen_id=row["gen_id"],
                                 kind="email", summary_type=kind, seed_index=row["seed_index"]))
    return Outcome("ok", rows=rows)
