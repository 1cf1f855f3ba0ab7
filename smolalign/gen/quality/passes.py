"""Which quality passes a spec has, and running them exactly once, shard by shard, like the generation itself.

A pass is one value per generated row: a judge mission's raw answer (difficulty, input_quality, task_category,
safety by the judge or a guard), a classifier's safety label, a reward score, or the embedding of the first user
turn. Each pass has a fingerprint of everything that decides its values (model, prompt, sampling), and its
committed records live in DIR/work/quality/<pass>-<fingerprint>/shard-K.pass-P.jsonl (the same ShardStore as the
rows). So changing the reward model scores the rows again and labels nothing again; changing a threshold computes
nothing; a killed run recomputes nothing already committed. The quality shards are the generation shards: shard K
holds the rows that generation shard K produced, so both are fixed by the plan.

Per shard, one distilabel pipeline runs the steps that still have work: the judge (all its missions in one batched
call), a guard, a safety classifier, the reward model, the embedder, chained. A request that failed (a voided
batch) is asked again in the next attempt, up to output.max_passes, then counts as unlabelled.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..shards import WORK, ShardStore, pending, settled
from .labels import PROMPTS, first_user_turn

QUALITY = "quality"
STEP_ORDER = ("judge", "guard", "safety_classifier", "reward", "embedding")


@dataclass(frozen=True)
class Pass:
    name: str  # difficulty | input_quality | task_category | safety | reward | embedding
    step: str  # judge | guard | safety_classifier | reward | embedding: the step that computes it
    column: str  # the pipeline's output column holding the value
    fingerprint: str

    @property
    def folder(self) -> str:
        return f"{QUALITY}/{self.name}-{self.fingerprint}"


def _hash(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def judge_llm(recipe):
    """The labels' judge: the generator's `llm` settings with `labels.llm` on top."""
    from ..spec import LLMSection

    return LLMSection(**{**asdict(recipe.sections["llm"]), **recipe.sections["labels"].llm})


def guard_llm(recipe):
    """The guard model (safety.method=guard): the judge's settings with `safety.llm` on top."""
    from ..spec import LLMSection

    return LLMSection(**{**asdict(judge_llm(recipe)), **recipe.sections["safety"].llm})


def passes_of(recipe) -> list[Pass]:
    """The spec's passes, in a fixed order (none for a subset without the quality sections)."""
    from ..spec import llm_fingerprint

    if "labels" not in recipe.sections:
        return []
    labels, safety = recipe.sections["labels"], recipe.sections["safety"]
    reward, near = recipe.sections["reward"], recipe.sections["near_dedup"]
    out = []
    missions = list(labels.tasks) + (["safety"] if safety.method == "judge" else [])
    judge = llm_fingerprint(judge_llm(recipe)) if missions else None
    for mission in missions:
        categories = labels.categories if mission == "task_category" else None
        out.append(Pass(mission, "judge", f"judge_{mission}", _hash(mission, PROMPTS[mission], categories, judge)))
    if safety.method == "guard":
        out.append(Pass("safety", "guard", "judge_guard", _hash("guard", llm_fingerprint(guard_llm(recipe)))))
    if safety.method == "classifier":
        out.append(Pass("safety", "safety_classifier", "safety_label",
                        _hash("classifier", safety.model, safety.max_length)))
    if reward.model:
        out.append(Pass("reward", "reward", "reward_score", _hash("reward", reward.model, reward.max_length)))
    if near.model:
        out.append(Pass("embedding", "embedding", "embedding", _hash("embedding", near.model)))
    return out


def quality_rows(shard: list[dict], history: dict) -> list[dict]:
    """The rows a generation shard produced, each with its `qid` (gen_id.index) and what the passes read."""
    out = []
    for planned in shard:
        final = settled(history.get(planned["gen_id"], []))
        if final is None or final["status"] != "ok":
            continue
        for j, row in enumerate(final["rows"]):
            out.append({"qid": f"{planned['gen_id']}.{j}", "conversation": row["messages"],
                        "instruction": first_user_turn(row["messages"]), "category": planned.get("category")})
    return out


def encode_vector(vector) -> str:
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode()


def decode_vector(text: str):
    import numpy as np

    return np.frombuffer(base64.b64decode(text), dtype=np.float32)


def build_steps(recipe, source, todo: list[Pass], backends: dict, replicas: int):
    """Chain the steps the passes in `todo` need after `source`; returns the last one."""
    from distilabel.steps import StepResources

    from ..backends import make_llm
    from . import steps

    kinds = {p.step for p in todo}
    common = dict(resources=StepResources(replicas=replicas))
    chain = []
    if "judge" in kinds:
        judge = judge_llm(recipe)
        chain.append(steps.JudgeRows(name="judge", llm=make_llm(judge, backends["judge"], magpie=False),
                                     missions=[p.name for p in todo if p.step == "judge"],
                                     categories=list(recipe.sections["labels"].categories),
                                     input_batch_size=judge.batch_size, **common))
    if "guard" in kinds:
        guard = guard_llm(recipe)
        chain.append(steps.JudgeRows(name="guard", llm=make_llm(guard, backends["guard"], magpie=False),
                                     missions=["guard"], input_batch_size=guard.batch_size, **common))
    if "safety_classifier" in kinds:
        s = recipe.sections["safety"]
        chain.append(steps.SafetyClassifier(name="safety", model=s.model, max_length=s.max_length, dtype=s.dtype,
                                            device=s.device, trust_remote_code=s.trust_remote_code,
                                            input_batch_size=s.batch_size))
    if "reward" in kinds:
        r = recipe.sections["reward"]
        chain.append(steps.RewardScore(name="reward", model=r.model, max_length=r.max_length, dtype=r.dtype,
                                       device=r.device, trust_remote_code=r.trust_remote_code,
                                       input_batch_size=r.batch_size))
    if "embedding" in kinds:
        chain.append(steps.embedding_step(recipe.sections["near_dedup"]))
    last = source
    for step in chain:
        last >> step
        last = step
    return last


def run_quality(recipe, plan: list[dict], history: dict, backends: dict, out_dir: Path, display) -> None:
    """Every pass for every generated row, committed shard by shard; a rerun asks only for what is missing."""
    from ..shards import raise_if_stopped, run_pipeline

    passes = passes_of(recipe)
    if not passes:
        return
    out = recipe.sections["output"]
    work = Path(out_dir) / WORK
    stores = {p.name: ShardStore(out_dir, p.folder, key="qid") for p in passes}
    done = {p.name: stores[p.name].records() for p in passes}
    shards = [quality_rows(plan[k:k + out.shard_size], history) for k in range(0, len(plan), out.shard_size)]

    def todo_of(row: dict) -> list[Pass]:
        return [p for p in passes if pending([row], done[p.name], out.max_passes, key="qid")]

    total = sum(len(rows) for rows in shards)
    display.start(total, sum(1 for rows in shards for r in rows if not todo_of(r)))
    for k, rows in enumerate(shards):
        while work_rows := [dict(r, todo=[p.name for p in todo_of(r)]) for r in rows if todo_of(r)]:
            attempt = max(store.next_pass(k) for store in stores.values())
            needed = [p for p in passes if any(p.name in r["todo"] for r in work_rows)]
            display.begin_pass(k, len(shards), attempt, len(work_rows), recipe.sections["llm"].batch_size)
            name = f"{recipe.kind}-quality-{k:05d}-pass-{attempt}"
            where = f"{recipe.kind} quality passes, shard {k + 1}/{len(shards)} (attempt {attempt})"
            build = lambda source, replicas: build_steps(recipe, source, needed, backends, replicas)  # noqa: E731
            outputs, error, status = run_pipeline(recipe, work_rows, build, work, name, where,
                                                  on_batch=display.batch_done)
            by_id = {o.get("qid"): o for o in outputs}
            for p in needed:
                records = []
                for row in work_rows:
                    output = by_id.get(row["qid"])
                    if p.name not in row["todo"] or (output is None and status != "complete"):
                        continue  # rows a stopped run never reached are not tries
                    records.append(_record(row["qid"], p, output, attempt, error))
                if records:
                    stores[p.name].commit(k, attempt, records)
                    for record in records:
                        done[p.name][record["qid"]].append(record)
            raise_if_stopped(status, error, work, name)
            display.end_pass(sum(1 for rows_ in shards for r in rows_ if not todo_of(r)))


def _record(qid: str, p: Pass, output: dict | None, attempt: int, error: str | None) -> dict:
    value = None if output is None else output.get(p.column)
    if value is None:
        reason = "the pipeline returned no row" if output is None else "no answer: the request failed"
        return {"qid": qid, "pass": attempt, "status": "failed", "reason": reason + (f" ({error})" if error else "")}
    if p.step == "embedding":
        value = encode_vector(value)
    return {"qid": qid, "pass": attempt, "status": "ok", "value": value}


def read_passes(recipe, plan: list[dict], history: dict, out_dir: Path):
    """(passes, pass name -> qid -> value (None: failed every try), names of passes with rows still to compute)."""
    out = recipe.sections["output"]
    rows = [r for k in range(0, len(plan), out.shard_size) for r in quality_rows(plan[k:k + out.shard_size], history)]
    passes, values, incomplete = passes_of(recipe), {}, []
    for p in passes:
        records = ShardStore(out_dir, p.folder, key="qid").records()
        if pending(rows, records, out.max_passes, key="qid"):
            incomplete.append(p.name)
        values[p.name] = {qid: (final["value"] if (final := settled(recs)) else None) for qid, recs in records.items()}
    return passes, values, incomplete
