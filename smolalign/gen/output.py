"""Committed records -> the dataset: SmolTalk's schema, exact duplicates removed, laid out like a hub dataset.

DIR/data/train-00000-of-00001.parquet holds `messages` (checked: roles alternate, no empty turn) and `source`, plus
the subset's raw columns and `gen_id` (the planned row it came from). DIR/README.md carries the `configs:` block
that `datasets.load_dataset(DIR)` (and so `smolalign sft data.dataset=DIR`) reads, and a card with the generator,
settings and counts. Rows that failed every pass are listed with their errors in DIR/failed.jsonl.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import yaml

from ..outputs import atomic_directory, atomic_write_text
from .shards import settled

DATA_FILE = "train-00000-of-00001.parquet"
FAILED_FILE = "failed.jsonl"


def tally(recipe, rows: list[dict], history: dict[int, list[dict]], against: list[str] | None):
    """(rows to write, counts, failures): every planned row is counted once as failed, filtered or kept."""
    counts = {"requested": len(rows), "generated": 0, "failed": 0, "filtered": Counter(), "duplicates": 0, "kept": 0}
    failures, answered = [], []
    for row in rows:
        records = history.get(row["gen_id"], [])
        final = settled(records)
        if final is None:
            counts["failed"] += 1
            failures.append({"gen_id": row["gen_id"], "attempts": len(records),
                             "error": records[-1]["reason"] if records else "never run", "input": _input_of(row)})
            continue
        counts["generated"] += 1
        if final["status"] == "filtered":
            counts["filtered"][final["reason"]] += 1
        else:
            answered.append(final["rows"])
    if against:
        from .decontaminate import ngram_decontaminate

        n = recipe.sections["decontaminate"].ngram
        texts = [" ".join(m["content"] for r in group for m in r["messages"] if m["role"] == "user")
                 for group in answered]
        keep = ngram_decontaminate(texts, against, n=n)
        counts["filtered"][f"shares a {n}-gram with the eval set"] += keep.count(False)
        answered = [group for group, ok in zip(answered, keep) if ok]
    out, seen = [], set()
    mode = recipe.sections["output"].dedup
    for group in answered:
        for r in group:
            key = _dedup_key(r["messages"], mode)
            if key in seen:
                counts["duplicates"] += 1
                continue
            seen.add(key)
            out.append(r)
    counts["kept"] = len(out)
    counts["filtered"] = dict(counts["filtered"])
    return out, counts, failures


def _input_of(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "gen_id"}


def _dedup_key(messages: list[dict], mode: str) -> str:
    if mode == "normalized":
        messages = [{"role": m["role"], "content": " ".join(re.sub(r"[^\w\s]", "", m["content"].lower()).split())}
                    for m in messages]
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


def write_dataset(out_dir: Path, rows: list[dict], failures: list[dict], card) -> None:
    """The parquet file, failed.jsonl and README.md; `card(rows, data_bytes, file_bytes)` writes the card."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    if rows:
        table = pa.Table.from_pylist(rows)
    else:  # an empty result still has SmolTalk's columns, so readers fail on "empty", not on a missing column
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        table = pa.table({"messages": pa.array([], pa.list_(message)), "source": pa.array([], pa.string())})
    with atomic_directory(out_dir / "data") as staging:
        pq.write_table(table, staging / DATA_FILE)
        size = (staging / DATA_FILE).stat().st_size
    failed_path = out_dir / FAILED_FILE
    if failures:
        atomic_write_text(failed_path, "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))
    elif failed_path.exists():
        failed_path.unlink()
    atomic_write_text(out_dir / "README.md", card(len(rows), table.nbytes, size))


def dataset_card(recipe, backend, counts: dict, command: str, rows: int, data_bytes: int, file_bytes: int) -> str:
    # `dataset_info` is what `datasets` keys its cache of a local folder on: without the row count and file size a
    # dataset regenerated in the same place would be read back from the stale cache of the old one
    split = {"name": "train", "num_bytes": data_bytes, "num_examples": rows}
    header = {"configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}],
              "dataset_info": {"config_name": "default", "splits": [split], "download_size": file_bytes},
              "tags": ["synthetic", "distilabel", "smolalign", "smoltalk"]}
    llm = recipe.sections["llm"]
    settings = {k: v for k, v in dataclasses.asdict(recipe.settings).items() if not isinstance(v, (dict, str))}
    filtered = "".join(f"| filtered: {reason} | {n} |\n" for reason, n in sorted(counts["filtered"].items()))
    return (
        f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n"
        f"# {recipe.kind} (generated with smolalign)\n\n"
        f"SmolTalk's {recipe.kind} subset made again with distilabel: rows in SmolTalk's schema (`messages`, `source`) "
        f"plus the subset's raw columns and `gen_id`, the planned row each came from.\n\n"
        f"- Generator model: `{backend.model}` (backend `{llm.backend}`)\n"
        f"- Sampling: temperature {llm.temperature}, top_p {llm.top_p}, max_new_tokens {llm.max_new_tokens}\n"
        f"- Settings: {json.dumps(settings)}; the full spec is in `recipe.yaml`\n"
        f"- Command: `{command}`\n\n"
        f"| count | rows |\n|---|---|\n"
        f"| requested | {counts['requested']} |\n| generated | {counts['generated']} |\n"
        f"| failed (see failed.jsonl) | {counts['failed']} |\n{filtered}"
        f"| duplicates removed | {counts['duplicates']} |\n| kept | {counts['kept']} |\n\n"
        f"Read it with `datasets.load_dataset(\"PATH\")`, or train on it with "
        f"`smolalign sft sft data.dataset=PATH`. `work/` holds the committed shards the run resumes from.\n"
    )
