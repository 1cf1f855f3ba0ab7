"""The four SmolTalk subsets: what each row asks for (the plan), the distilabel steps that ask it, and how an answer
becomes SmolTalk rows (or a failed or filtered row, with the reason).

- magpie-ultra: one system prompt per category, drawn by weight; Magpie writes `turns` user/assistant exchanges.
- smol-constraints: Magpie with a constraints system prompt (1 turn), then a labelling call; rows whose labels do
  not parse or validate, or whose response fails IFEval's strict check, are filtered with the reason.
- smol-rewrite: every seed text once per style (system prompt), answered by chat generation.
- smol-summarization: an email (text starting "Subject:") gets one answer holding two labelled summaries, written
  out as two rows; an article gets one summary of about `article_ratio` of its length.

Magpie runs as a task fed by the planned rows (one system prompt each) rather than as distilabel's
MagpieGenerator: a generator step runs as one replica under Ray and hangs when num_rows is not a multiple of its
batch size, while a task's replicas can grow.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass

from ..data.checks import check_conversation
from ..data.formats import RowError
from ..errors import UsageError


@dataclass
class Outcome:
    status: str  # "ok" | "failed" (asked again in a later pass) | "filtered" (final, with its reason)
    rows: list | None = None
    reason: str | None = None
    detail: str | None = None  # the row's own specifics (filter reasons are counted by `reason` alone)


def _weighted_choices(weights: dict[str, float], count: int, seed: int) -> list[str]:
    names = sorted(weights)
    return random.Random(seed).choices(names, weights=[weights[n] for n in names], k=count)


# ---------------------------------------------------------------- the plan: one dict per requested row


MAX_ROWS = 1_000_000
"""A run plans every row before it starts (its fingerprint, its shards, the final tally all read the plan): larger
runs are split, e.g. into several --output directories with different seed= values."""


def check_row_count(recipe, seeds: list[str] | None) -> None:
    """Refuse, before planning, what the seeds cannot give (a seed text asked twice in the same style only makes a
    duplicate) or one plan cannot hold."""
    s, subset = recipe.settings, recipe.kind
    distinct = None
    if seeds is not None:
        styles = len(s.styles) if subset == "smol-rewrite" else 1
        distinct = len(seeds) * styles
        what = f"{len(seeds)} seed texts x {styles} styles" if subset == "smol-rewrite" else f"{len(seeds)} seed texts"
        unit = "distinct seed x style pairs" if subset == "smol-rewrite" else "distinct seed texts"
        if s.num_rows is not None and s.num_rows > distinct:
            raise UsageError(f"num_rows={s.num_rows:,} is more than the seeds can give: {subset} has {distinct} "
                             f"{unit} ({what}): set --num-rows {distinct} or fewer (or leave it out), or add seed "
                             f"texts (seeds.dataset=FILE)")
    count = s.num_rows or distinct or 0
    if count > MAX_ROWS:
        raise UsageError(f"{count:,} rows are more than one run plans ({MAX_ROWS:,}): split them into runs with "
                         f"different seed= values (or seeds.limit) and --output directories")


def plan_rows(recipe, seeds: list[str] | None) -> list[dict]:
    """Deterministic inputs for every requested row, from the spec (and seed texts) alone."""
    check_row_count(recipe, seeds)
    s, subset = recipe.settings, recipe.kind
    if subset == "magpie-ultra":
        cats = _weighted_choices(s.category_weights, s.num_rows, s.seed)
        rule = f"\n\n{s.style_rules.strip()}" if s.style_rules.strip() else ""
        prompts = {c: s.system_prompts[c].strip() + rule for c in s.category_weights}  # one string each, shared
        return [{"gen_id": i, "category": c, "system_prompt": prompts[c]} for i, c in enumerate(cats)]
    if subset == "smol-constraints":
        prompt = s.system_prompt.strip()
        return [{"gen_id": i, "system_prompt": prompt} for i in range(s.num_rows)]
    if subset == "smol-rewrite":
        pairs = [(j, style) for j in range(len(seeds)) for style in sorted(s.styles)]
        random.Random(s.seed).shuffle(pairs)
        count = s.num_rows or len(pairs)
        rows = []
        for i in range(count):
            j, style = pairs[i]
            messages = [{"role": "system", "content": s.styles[style].strip()}, {"role": "user", "content": seeds[j]}]
            rows.append({"gen_id": i, "seed_index": j, "style": style, "messages": messages})
        return rows
    order = list(range(len(seeds)))
    random.Random(s.seed).shuffle(order)
    count = s.num_rows or len(order)
    rows = []
    for i in range(count):
        j = order[i]
        text = seeds[j]
        if is_email(text):
            system = s.email_request.strip()
            kind = "email"
        else:
            words = max(10, round(len(text.split()) * s.article_ratio))
            system = s.summary_prompts["article"].strip().replace("{words}", str(words))
            kind = "article"
        rows.append({"gen_id": i, "seed_index": j, "kind": kind,
                     "messages": [{"role": "system", "content": system}, {"role": "user", "content": text}]})
    return rows


def is_email(text: str) -> bool:
    return text.lstrip().lower().startswith("subject:")


def read_seeds(recipe) -> list[str] | None:
    """Seed texts through the data layer; a missing column or an empty text is an error before anything runs."""
    if "seeds" not in recipe.sections:
        return None
    from ..data.loading import load_split

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
    texts = table[seeds.column][: seeds.limit] if seeds.limit else table[seeds.column]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            raise UsageError(f"seeds '{seeds.dataset}' row {index}: column '{seeds.column}' is empty or not text: "
                             f"fix or remove the row")
    return list(texts)


# ---------------------------------------------------------------- the distilabel steps of one shard


def add_steps(recipe, source, backend, replicas: int = 1):
    """Attach the subset's tasks after `source` (inside a `with Pipeline()` block); returns the last step."""
    from distilabel.steps import StepResources

    from .backends import make_llm
    from .steps import AnswerMessages, LabelConstraints, MagpieTurns

    llm, subset = recipe.sections["llm"], recipe.kind
    common = dict(input_batch_size=llm.batch_size, resources=StepResources(replicas=replicas))
    if subset in ("magpie-ultra", "smol-constraints"):
        magpie = MagpieTurns(name="magpie", llm=make_llm(llm, backend, magpie=True), n_turns=recipe.settings.turns,
                             include_system_prompt=False, **common)
        source >> magpie
        if subset == "magpie-ultra":
            return magpie
        label = recipe.sections["label"]
        labeller = LabelConstraints(
            name="label", llm=make_llm(llm, backend, magpie=False, temperature=label.temperature,
                                       max_new_tokens=label.max_new_tokens),
            output_mappings={"generation": "labels", "model_name": "label_model"},
            add_raw_input=False, **common)  # its input is (prompt, schema): no column type holds both
        magpie >> labeller
        return labeller
    answer = AnswerMessages(name="answer", llm=make_llm(llm, backend, magpie=False), **common)
    source >> answer
    return answer


def needs_routes(subset: str) -> tuple[bool, bool]:
    """(magpie, chat): which kinds of LLM call the subset makes."""
    return {"magpie-ultra": (True, False), "smol-constraints": (True, True)}.get(subset, (False, True))


# ---------------------------------------------------------------- answers -> SmolTalk rows


def interpret(recipe, row: dict, error: str | None) -> Outcome:
    """One pipeline output row -> Outcome. `error` is what the run logged when a batch failed (or None)."""
    subset = recipe.kind
    try:
        if subset == "magpie-ultra":
            return _magpie_ultra(recipe, row, error)
        if subset == "smol-constraints":
            return _constraints(recipe, row, error)
        if subset == "smol-rewrite":
            return _chat_answer(recipe, row, error, extra={"style": row["style"], "seed_index": row["seed_index"]})
        return _summaries(recipe, row, error)
    except RowError as problem:
        return Outcome("failed", reason=str(problem))


def _need(value, what: str, error: str | None):
    if value is None:
        raise RowError(f"no {what}: the request failed" + (f" ({error})" if error else ""))
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"the {what} came back empty")
    return value.strip()


def _row(recipe, messages: list[dict], **raw) -> dict:
    check_conversation(messages)
    return {"messages": messages, "source": recipe.kind, **raw}


def _magpie_ultra(recipe, row, error) -> Outcome:
    conversation = row.get("conversation")
    if not conversation:
        _need(None, "conversation", error)
    expected = 2 * recipe.settings.turns
    for m in conversation:
        _need(m.get("content"), f"{m.get('role')} turn", error)
    if len(conversation) != expected:
        raise RowError(f"{len(conversation)} messages instead of {expected}: a turn came back empty")
    messages = [{"role": m["role"], "content": m["content"].strip()} for m in conversation]
    return Outcome("ok", rows=[_row(recipe, messages, truncated=_flags(row.get("truncated"), len(messages)),
                                    category=row["category"], gen_id=row["gen_id"])])


def _flags(flags, count: int) -> list[bool]:
    """One `truncated` flag per message: True where the turn stopped at max_new_tokens (finish reason "length")."""
    flags = [bool(f) for f in (flags or [])]
    return (flags + [False] * count)[:count]


def _constraints(recipe, row, error) -> Outcome:
    from .constraints import parse_constraint_labels, passes_strict, validate_instructions

    instruction = _need(row.get("instruction"), "user turn", error)
    response = _need(row.get("response"), "response", error)
    labels = row.get("labels")
    if labels is None:
        _need(None, "constraint labels", error)
    messages = [{"role": "user", "content": instruction}, {"role": "assistant", "content": response}]
    truncated = _flags(row.get("truncated"), 2)
    # kept, with its reason and the labeller's own answer, in rejected/
    as_row = [_row(recipe, messages, truncated=truncated, gen_id=row["gen_id"], raw_labels=str(labels))]
    try:
        ids, kwargs = parse_constraint_labels(labels)
    except ValueError as problem:
        return Outcome("filtered", rows=as_row, reason="constraint labels not parseable", detail=str(problem)[:300])
    problem = validate_instructions(ids, kwargs)
    if problem:
        return Outcome("filtered", rows=as_row, reason="invalid or conflicting constraint labels",
                       detail=problem[:300])
    reading = recipe.sections["label"].reading
    if not passes_strict(response, ids, kwargs, prompt=instruction, reading=reading):
        return Outcome("filtered", rows=as_row, reason="response fails the strict IFEval check", detail=", ".join(ids))
    return Outcome("ok", rows=[_row(recipe, messages, instruction_id_list=ids, kwargs=json.dumps(kwargs),
                                    truncated=truncated, gen_id=row["gen_id"])])


def _answer_flags(row, count: int) -> list[bool]:
    """The given turns were not generated; the answer (the last message) was."""
    return [False] * (count - 1) + [bool(row.get("llm_answer_truncated"))]


def _chat_answer(recipe, row, error, extra: dict) -> Outcome:
    answer = _need(row.get("generation"), "answer", error)
    messages = [*row["messages"], {"role": "assistant", "content": answer}]
    return Outcome("ok", rows=[_row(recipe, messages, truncated=_answer_flags(row, len(messages)),
                                    gen_id=row["gen_id"], **extra)])


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
        return _chat_answer(recipe, row, error, extra={"kind": "article", "summary_type": "article",
                                                       "seed_index": row["seed_index"]})
    answer = _need(row.get("generation"), "answer", error)
    brief, summary = parse_email_summaries(answer)
    email = row["messages"][-1]["content"]
    prompts = recipe.settings.summary_prompts
    rows = []
    for kind, text in (("one_sentence", brief), ("up_to_three_sentences", summary)):
        messages = [{"role": "system", "content": prompts[kind].strip()}, {"role": "user", "content": email},
                    {"role": "assistant", "content": text}]
        rows.append(_row(recipe, messages, truncated=_answer_flags(row, len(messages)), gen_id=row["gen_id"],
                         kind="email", summary_type=kind, seed_index=row["seed_index"]))
    return Outcome("ok", rows=rows)
