"""What the subsets share: the outcome of one answered row, the seed texts, the row-count check, and the pieces of
an answer that become a SmolTalk row (a checked conversation with its `truncated` flags)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ...data.checks import check_conversation
from ...data.formats import RowError
from ...errors import UsageError


@dataclass
class Outcome:
    status: str  # "ok" | "failed" (asked again in a later pass) | "filtered" (final, with its reason)
    rows: list | None = None
    reason: str | None = None
    detail: str | None = None  # the row's own specifics (filter reasons are counted by `reason` alone)


def weighted_choices(weights: dict[str, float], count: int, seed: int) -> list[str]:
    names = sorted(weights)
    return random.Random(seed).choices(names, weights=[weights[n] for n in names], k=count)


MAX_ROWS = 1_000_000
"""A run plans every row before it starts (its fingerprint, its shards, the final tally all read the plan): larger
runs are split, e.g. into several --output directories with different seed= values."""


def check_row_count(recipe, seeds: list[str] | None, distinct=None) -> None:
    """Refuse, before planning, what the seeds cannot give (a seed text asked twice in the same style only makes a
    duplicate) or one plan cannot hold. `distinct`: (rows the seeds can give, what they are, their unit)."""
    s, subset = recipe.settings, recipe.kind
    count = None
    if seeds is not None and distinct is not None:
        count, what, unit = distinct
        if s.num_rows is not None and s.num_rows > count:
            raise UsageError(f"num_rows={s.num_rows:,} is more than the seeds can give: {subset} has {count} "
                             f"{unit} ({what}): set --num-rows {count} or fewer (or leave it out), or add seed "
                             f"texts (seeds.dataset=FILE)")
    total = s.num_rows or count or 0
    if total > MAX_ROWS:
        raise UsageError(f"{total:,} rows are more than one run plans ({MAX_ROWS:,}): split them into runs with "
                         f"different seed= values (or seeds.limit) and --output directories")


def seed_count(seeds: list) -> tuple[int, str, str]:
    return len(seeds), f"{len(seeds)} seed texts", "distinct seed texts"


def load_seed_column(recipe):
    """(the seeds section, its column's values) through the data layer; a missing column is an error before
    anything runs."""
    from ...data.loading import load_split

    seeds = recipe.sections["seeds"]
    if not seeds.dataset:
        raise UsageError("seeds.dataset is not set: give a file, directory or hub id with the seed texts")
    try:
        table = load_split(seeds.dataset, seeds.config, seeds.split)
    except UsageError as error:
        raise UsageError(f"seeds: {error}".replace("data.", "seeds.")) from None  # the data layer names data.*
    if seeds.column not in table.column_names:
        raise UsageError(f"seeds '{seeds.dataset}' has no column '{seeds.column}' (columns: "
                         f"{', '.join(table.column_names)}): set seeds.column=NAME")
    values = table[seeds.column][: seeds.limit] if seeds.limit else table[seeds.column]
    return seeds, list(values)


def read_texts(recipe) -> list[str]:
    """Seed texts; an empty text is an error before anything runs."""
    seeds, texts = load_seed_column(recipe)
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"seeds '{seeds.dataset}' row {index}: column '{seeds.column}' is empty or not text: "
                             f"fix or remove the row")
    return texts


def need(value, what: str, error: str | None):
    if value is None:
        raise RowError(f"no {what}: the request failed" + (f" ({error})" if error else ""))
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"the {what} came back empty")
    return value.strip()


def smoltalk_row(recipe, messages: list[dict], **raw) -> dict:
    check_conversation(messages)
    return {"messages": messages, "source": recipe.kind, **raw}


def flags(values, count: int) -> list[bool]:
    """One `truncated` flag per message: True where the turn stopped at max_new_tokens (finish reason "length")."""
    values = [bool(f) for f in (values or [])]
    return (values + [False] * count)[:count]


def answer_flags(row, count: int) -> list[bool]:
    """The given turns were not generated; the answer (the last message) was."""
    return [False] * (count - 1) + [bool(row.get("llm_answer_truncated"))]


def chat_answer(recipe, row, error, extra: dict) -> Outcome:
    answer = need(row.get("generation"), "answer", error)
    messages = [*row["messages"], {"role": "assistant", "content": answer}]
    return Outcome("ok", rows=[smoltalk_row(recipe, messages, truncated=answer_flags(row, len(messages)),
                                            gen_id=row["gen_id"], **extra)])


def answer_steps(recipe, source, backends: dict, replicas: int):
    """One chat answer to each row's prepared `messages` (smol-rewrite, smol-summarization)."""
    from distilabel.steps import StepResources

    from ..backends import make_llm
    from ..steps import AnswerMessages

    llm = recipe.sections["llm"]
    answer = AnswerMessages(name="answer", llm=make_llm(llm, backends["llm"], magpie=False),
                            input_batch_size=llm.batch_size, resources=StepResources(replicas=replicas))
    source >> answer
    return answer


def magpie_step(recipe, source, backends: dict, replicas: int):
    """Magpie writing `turns` exchanges from each row's system prompt (magpie-ultra, smol-constraints)."""
    from distilabel.steps import StepResources

    from ..backends import make_llm
    from ..steps import MagpieTurns

    llm = recipe.sections["llm"]
    magpie = MagpieTurns(name="magpie", llm=make_llm(llm, backends["llm"], magpie=True), n_turns=recipe.settings.turns,
                         include_system_prompt=False, input_batch_size=llm.batch_size,
                         resources=StepResources(replicas=replicas))
    source >> magpie
    return magpie


def interpreted(read, recipe, row: dict, error: str | None) -> Outcome:
    """`read(recipe, row, error)`, with an unusable answer (RowError) a failed row, asked again in a later pass."""
    try:
        return read(recipe, row, error)
    except RowError as problem:
        return Outcome("failed", reason=str(problem))
