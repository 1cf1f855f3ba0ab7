"""Rated completions -> preference pairs, the dataset and its card. Reads committed records only (no model), which
is what lets `--refilter pairs.min_margin=2` bin the same ratings again.

Binarized as HuggingFaceH4/ultrafeedback_binarized: chosen is the highest-rated completion (a random one among
equals), rejected a random one rated lower, here at least `pairs.min_margin` lower; both draws are seeded by the
spec's seed and the prompt, so a pair never changes when other prompts do. A prompt whose rated completions all tie
is dropped and counted. The columns are that set's: `prompt` (text), `prompt_id`, `chosen` and `rejected` (message
lists: the prompt turns and the answer), `score_chosen`, `score_rejected`, plus `model_chosen` and
`model_rejected`. The splits are its `train_prefs` and `test_prefs` (`pairs.test_share`), which the shipped
`recipes/dpo.yaml` reads, so `smolalign dpo data.dataset=DIR` needs no other option.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

from ....outputs import atomic_directory, atomic_write_text

TIE = "all rated completions tie"
UNRATED = "fewer than two rated completions"
SPLITS = ("train_prefs", "test_prefs")


@dataclass
class PairsSection:
    min_margin: float = 1.0
    """score_chosen - score_rejected at least this (ratings are 1-5): 1 keeps every strictly better pair."""
    test_share: float = 0.05
    """Share of the pairs held out as `test_prefs` (at least one once there are two pairs), drawn by prompt."""


def _draw(seed: int, prompt_id: str, what: str) -> random.Random:
    return random.Random(f"{seed}-{prompt_id}-{what}")


def binarize(record: dict, min_margin: float, seed: int) -> tuple[dict | None, str | None]:
    """(the pair, None) or (None, why there is none) for one prompt's rated completions."""
    rated = [i for i, r in enumerate(record["ratings"]) if r is not None]
    if len(rated) < 2:
        return None, UNRATED
    best = max(record["ratings"][i] for i in rated)
    if all(record["ratings"][i] == best for i in rated):
        return None, TIE
    chosen = _draw(seed, record["prompt_id"], "chosen").choice([i for i in rated if record["ratings"][i] == best])
    lower = [i for i in rated if record["ratings"][i] <= best - min_margin]
    if not lower:
        return None, f"no completion rated pairs.min_margin={min_margin:g} below the best"
    rejected = _draw(seed, record["prompt_id"], "rejected").choice(lower)
    return _format(record, chosen, rejected), None


def _format(record: dict, chosen: int, rejected: int) -> dict:
    """distilabel's FormatTextGenerationDPO over the two drawn completions (it takes the higher as chosen)."""
    import logging

    from distilabel.steps import FormatTextGenerationDPO

    system = record["messages"][0]["content"] if record["messages"][0]["role"] == "system" else ""
    item = {"system_prompt": system, "instruction": record["prompt"], "ratings": [record["ratings"][i] for i in
            (chosen, rejected)], "generations": [record["completions"][i] for i in (chosen, rejected)],
            "generation_models": [record["models"][i] for i in (chosen, rejected)]}
    logging.disable(logging.WARNING)  # "created outside a Pipeline": it is used here as a plain function
    try:
        step = FormatTextGenerationDPO(name="binarize")
        step.load()
        out = next(step.process([item]))[0]
    finally:
        logging.disable(logging.NOTSET)
    return {"prompt": out["prompt"], "prompt_id": record["prompt_id"], "chosen": out["chosen"],
            "rejected": out["rejected"], "score_chosen": float(out["chosen_rating"]),
            "score_rejected": float(out["rejected_rating"]), "model_chosen": out["chosen_model"],
            "model_rejected": out["rejected_model"], "gen_id": record["gen_id"]}


def tally(recipe, rows: list[dict], history: dict, against=None):
    """(pairs, counts, failures, dropped prompts): every planned prompt is counted once as failed, dropped (with
    its reason) or kept as one pair."""
    from ...output import new_counts, settled_rows

    pairs_section, seed = recipe.sections["pairs"], recipe.settings.seed
    counts = {**new_counts(rows), "completions": 0, "rated": 0}
    pairs, failures, dropped, margins = [], [], [], Counter()
    records = [final["rows"][0] for _, final in settled_rows(rows, history, counts, failures)]
    if against:
        from ...decontaminate import ngram_decontaminate

        n = recipe.sections["decontaminate"].ngram
        clean = ngram_decontaminate([r["prompt"] for r in records], against, n=n)
        for record in (r for r, ok in zip(records, clean) if not ok):
            counts["filtered"][f"prompt shares a {n}-gram with the eval set"] += 1
            dropped.append({**record, "rejected_reason": f"prompt shares a {n}-gram with the eval set"})
        records = [r for r, ok in zip(records, clean) if ok]
    for record in records:
        counts["rows_in"] += 1
        counts["completions"] += len(record["completions"])
        counts["rated"] += sum(r is not None for r in record["ratings"])
        counts["truncated"] += sum(bool(t) for t in record["truncated"])
        pair, reason = binarize(record, pairs_section.min_margin, seed)
        if pair is None:
            counts["filtered"][reason] += 1
            dropped.append({**record, "rejected_reason": reason})
            continue
        margins[pair["score_chosen"] - pair["score_rejected"]] += 1
        pairs.append(pair)
    counts["kept"] = len(pairs)
    counts["filtered"] = dict(counts["filtered"])
    counts["parse_rate"] = round(counts["rated"] / counts["completions"], 4) if counts["completions"] else None
    counts["margins"] = {f"{m:g}": n for m, n in sorted(margins.items())}
    return pairs, counts, failures, dropped


def split(pairs: list[dict], share: float, seed: int) -> dict[str, list[dict]]:
    """test_prefs: the pairs whose seeded hash of the prompt comes first (at least one of two or more pairs)."""
    order = sorted(pairs, key=lambda p: hashlib.sha256(f"{seed}-{p['prompt_id']}".encode()).hexdigest())
    count = max(1, round(share * len(pairs))) if share > 0 and len(pairs) >= 2 else 0
    test = {p["prompt_id"] for p in order[:count]}
    return {"train_prefs": [p for p in pairs if p["prompt_id"] not in test],
            "test_prefs": [p for p in pairs if p["prompt_id"] in test]}


def write(recipe, out_dir: Path, pairs, failures, dropped, counts, generator: dict, command: str) -> None:
    """DIR/data/{train_prefs,test_prefs}-*.parquet, DIR/failed.jsonl and the card (DIR/README.md)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    splits = split(pairs, recipe.sections["pairs"].test_share, recipe.settings.seed)
    counts.update({name: len(rows) for name, rows in splits.items()})
    sizes = {}
    with atomic_directory(out_dir / "data") as staging:
        for name, rows in splits.items():
            if rows:
                table = pa.Table.from_pylist(rows)
                pq.write_table(table, staging / f"{name}-00000-of-00001.parquet")
                sizes[name] = (len(rows), table.nbytes, (staging / f"{name}-00000-of-00001.parquet").stat().st_size)
    failed = out_dir / "failed.jsonl"
    if failures:
        atomic_write_text(failed, "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))
    elif failed.exists():
        failed.unlink()
    atomic_write_text(out_dir / "README.md", card(recipe, generator, counts, command, sizes))


def card(recipe, generator: dict, counts: dict, command: str, sizes: dict) -> str:
    header = {"configs": [{"config_name": "default", "data_files": [
                  {"split": name, "path": f"data/{name}-*"} for name in sizes]}],
              "dataset_info": [{"config_name": "default", "splits": [
                  {"name": name, "num_bytes": b, "num_examples": n} for name, (n, b, _) in sizes.items()],
                  "download_size": sum(f for _, _, f in sizes.values())}],
              "tags": ["synthetic", "distilabel", "smolalign", "ultrafeedback", "dpo"]}
    s, llm = recipe.settings, recipe.sections["llm"]
    rate = f"{counts['parse_rate']:.1%}" if counts["parse_rate"] is not None else "n/a"
    lines = [("prompts requested", counts["requested"]), ("prompts failed (see failed.jsonl)", counts["failed"]),
             ("prompts rated", counts["rows_in"]), ("completions", counts["completions"]),
             ("completions cut at max_new_tokens", counts["truncated"]),
             ("completions rated (judge parse rate)", f"{counts['rated']} ({rate})"),
             *((f"prompts dropped: {reason}", n) for reason, n in sorted(counts["filtered"].items())),
             ("pairs kept", counts["kept"]), *((f"pairs in {name}", counts.get(name, 0)) for name in SPLITS)]
    table = "".join(f"| {what} | {n} |\n" for what, n in lines)
    margins = "".join(f"| {m} | {n} |\n" for m, n in counts["margins"].items()) or "| - | 0 |\n"
    return (f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n"
            f"# ultrafeedback (generated with smolalign)\n\n"
            f"Preference pairs in HuggingFaceH4/ultrafeedback_binarized's layout, made with distilabel: "
            f"{s.completions} completions per prompt from `{generator['model']}` (backend `{llm.backend}`)"
            f"{f' and one from each of {len(s.models)} more models' if s.models else ''}, rated by the judge on "
            f"UltraFeedback's `{s.aspect}` rubric (1-5, JSON decoded under its schema), binarized with chosen the "
            f"best and rejected a random completion at least {recipe.sections['pairs'].min_margin:g} lower.\n\n"
            f"- Sampling: temperature {llm.temperature}, top_p {llm.top_p}, max_new_tokens {llm.max_new_tokens}\n"
            f"- Command: `{command}`; the full spec is in `recipe.yaml`\n\n"
            f"| count | prompts |\n|---|---|\n{table}\n"
            f"## Score margin (score_chosen - score_rejected)\n\n| margin | pairs |\n|---|---|\n{margins}\n"
            f"Train on it with `smolalign dpo --model SFT_OUTPUT data.dataset=PATH`. `work/` holds the committed "
            f"shards the run resumes from; `--refilter pairs.min_margin=2` bins the same ratings again.\n")
