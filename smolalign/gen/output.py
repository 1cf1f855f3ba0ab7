"""Committed records -> the dataset: SmolTalk's schema, filtered and deduplicated, laid out like a hub dataset.

DIR/data/train-00000-of-00001.parquet holds `messages` (checked: roles alternate, no empty turn) and `source`, plus
the subset's raw columns, `gen_id` (the planned row it came from) and the quality passes' label columns. Rows the
filters or the deduplication dropped go, each with its `rejected_reason`, to DIR/rejected/ (config `rejected`).
DIR/README.md carries the `configs:` block that `datasets.load_dataset(DIR)` (and so `smolalign sft
data.dataset=DIR`) reads, and a card with the generator, settings, counts and label distributions. Rows that failed
every pass are listed with their errors in DIR/failed.jsonl.

The order of the drops: the generator's own filter (smol-constraints), decontamination, truncated turns
(`filters.drop_truncated`), the spec's thresholds, exact duplicates, then near-duplicates (MinHash, embeddings) among
the rows still kept. Each computes nothing new: the tally reads committed records only, which is what lets
`--refilter` run it again with other thresholds.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter
from pathlib import Path

import yaml

from ..outputs import atomic_directory, atomic_write_text
from .shards import settled

DATA_FILE = "train-00000-of-00001.parquet"
TRUNCATED = "truncated at max_new_tokens"
FAILED_FILE = "failed.jsonl"
REJECTED_DIR = "rejected"


def tally(recipe, rows: list[dict], history: dict[int, list[dict]], against: list[str] | None, quality=None):
    """(rows to write, counts, failures, rejected rows): every planned row is counted once as failed, filtered or
    kept, and every row that came in once as kept or under one drop reason. `quality` is (passes, values) from the
    committed quality passes (quality/passes.py), or None."""
    counts = new_counts(rows)
    failures, rejected, flat = [], [], []
    for row, final in settled_rows(rows, history, counts, failures):
        if final["status"] == "filtered":
            counts["filtered"][final["reason"]] += 1
            counts["rows_in"] += 1
            rejected += [{**r, "rejected_reason": final["reason"]} for r in final.get("rows") or []]
            counts["truncated"] += any(any(r.get("truncated") or []) for r in final.get("rows") or [])
        else:
            flat += [(row, f"{row['gen_id']}.{j}", dict(r)) for j, r in enumerate(final["rows"])]
    counts["rows_in"] += len(flat)
    counts["truncated"] += sum(any(r.get("truncated") or []) for _, _, r in flat)
    passes, values = quality or ([], {})
    if passes:
        from .quality.filters import label_columns, label_counts, labelled

        for planned, qid, r in flat:
            r.update(label_columns(recipe, passes, values, qid, planned.get("category")))
        counts["labelled"] = sum(labelled(passes, r) for _, _, r in flat)
        counts["labels"] = label_counts(passes, [r for _, _, r in flat], list(recipe.sections["labels"].categories))
    alive = list(range(len(flat)))

    def drop(indices, reason: str, key: str = "filtered") -> None:
        gone = set(indices)
        for i in gone:
            rejected.append({**flat[i][2], "rejected_reason": reason})
        if key == "filtered" and gone:
            counts["filtered"][reason] += len(gone)
        elif gone:
            counts[key] += len(gone)
        alive[:] = [i for i in alive if i not in gone]

    if against:
        from .decontaminate import ngram_decontaminate

        n = recipe.sections["decontaminate"].ngram
        users = [" ".join(m["content"] for m in flat[i][2]["messages"] if m["role"] == "user") for i in alive]
        drop([i for i, ok in zip(alive, ngram_decontaminate(users, against, n=n)) if not ok],
             f"shares a {n}-gram with the eval set")
    if recipe.sections["filters"].drop_truncated:
        drop([i for i in alive if any(flat[i][2].get("truncated") or [])], TRUNCATED)
    if passes:
        from .quality.filters import drop_reason

        for i in list(alive):
            reason = drop_reason(flat[i][2], recipe.sections["filters"])
            if reason:
                drop([i], reason)
    seen, mode = set(), recipe.sections["output"].dedup
    repeats = []
    for i in alive:
        key = _dedup_key(flat[i][2]["messages"], mode)
        if key in seen:
            repeats.append(i)
        seen.add(key)
    drop(repeats, "exact duplicate", key="duplicates")
    _near_duplicates(recipe, flat, alive, values, drop)
    counts["kept"] = len(alive)
    counts["filtered"] = dict(counts["filtered"])
    from .subsets import subset_module

    count_kept = getattr(subset_module(recipe.kind), "count_kept", None)
    if count_kept:  # e.g. smol-constraints: the instructions each kept row was checked against
        counts.update(count_kept([flat[i][2] for i in alive]))
    for r in rejected:  # the judge's own answers where a label did not parse, as one JSON text
        if isinstance(r.get("raw_labels"), dict):
            r["raw_labels"] = json.dumps(r["raw_labels"], ensure_ascii=False)
    return [{k: v for k, v in flat[i][2].items() if k != "raw_labels"} for i in alive], counts, failures, rejected


def _near_duplicates(recipe, flat, alive: list[int], values: dict, drop) -> None:
    from .quality.dedup import minhash_duplicates, near_duplicates

    minhash = recipe.sections["minhash"]
    if minhash.enabled:
        texts = [flat[i][2]["messages"][-1]["content"] for i in alive]
        flags = minhash_duplicates(texts, minhash.threshold, minhash.num_perm, minhash.ngram)
        drop([i for i, d in zip(alive, flags) if d],
             f"near-duplicate answer (MinHash, Jaccard >= {minhash.threshold:g})")
    near = recipe.sections["near_dedup"]
    vectors = values.get("embedding") or {}
    if near.model:
        from .quality.passes import decode_vector

        have = [i for i in alive if vectors.get(flat[i][1]) is not None]  # a row whose embedding failed stays
        flags = near_duplicates([decode_vector(vectors[flat[i][1]]) for i in have], near.threshold, near.k)
        drop([i for i, d in zip(have, flags) if d], f"near-duplicate first user turn (cosine > {near.threshold:g})")


def new_counts(rows: list[dict]) -> dict:
    return {"requested": len(rows), "generated": 0, "failed": 0, "rows_in": 0, "truncated": 0, "filtered": Counter(),
            "duplicates": 0, "kept": 0}


def settled_rows(rows: list[dict], history: dict, counts: dict, failures: list):
    """(planned row, its settled record) for every planned row that settled; the others are counted failed and
    listed in `failures`."""
    for row in rows:
        records = history.get(row["gen_id"], [])
        final = settled(records)
        if final is None:
            counts["failed"] += 1
            failures.append(failure(row, records))
            continue
        counts["generated"] += 1
        yield row, final


def failure(row: dict, records: list[dict]) -> dict:
    """A planned row that failed every pass, as DIR/failed.jsonl lists it: its tries, last error and input."""
    error = records[-1]["reason"] if records else "never run"
    return {"gen_id": row["gen_id"], "attempts": len(records), "error": error,
            "input": {k: v for k, v in row.items() if k != "gen_id"}}


def _dedup_key(messages: list[dict], mode: str) -> str:
    if mode == "normalized":
        messages = [{"role": m["role"], "content": " ".join(re.sub(r"[^\w\s]", "", m["content"].lower()).split())}
                    for m in messages]
    return json.dumps(messages, sort_keys=True, ensure_ascii=False)


def _table(rows: list[dict]):
    import pyarrow as pa

    if not rows:  # an empty result still has SmolTalk's columns, so readers fail on "empty", not on a missing column
        message = pa.struct([("role", pa.string()), ("content", pa.string())])
        return pa.table({"messages": pa.array([], pa.list_(message)), "source": pa.array([], pa.string())})
    columns = list(dict.fromkeys(key for row in rows for key in row))  # rows may lack a column another row has
    return pa.Table.from_pylist([{key: row.get(key) for key in columns} for row in rows])


def write_dataset(out_dir: Path, rows: list[dict], failures: list[dict], card, rejected: list[dict] | None = None,
                  figure=None) -> None:
    """DIR/data (config `default`), DIR/rejected (config `rejected`, when rows are given), failed.jsonl, the
    figure (`figure(out_dir)`, may write nothing) and README.md: `card({config: (rows, data_bytes, file_bytes)})`."""
    import pyarrow.parquet as pq

    out_dir = Path(out_dir)
    sizes = {}
    for config, folder, data in (("default", "data", rows), ("rejected", REJECTED_DIR, rejected)):
        if data is None or (config == "rejected" and not data):
            if config == "rejected" and (out_dir / folder).is_dir():
                shutil.rmtree(out_dir / folder)  # a refilter that rejects nothing leaves no stale rejected/
            continue
        table = _table(data)
        with atomic_directory(out_dir / folder) as staging:
            pq.write_table(table, staging / DATA_FILE)
            sizes[config] = (len(data), table.nbytes, (staging / DATA_FILE).stat().st_size)
    failed_path = out_dir / FAILED_FILE
    if failures:
        atomic_write_text(failed_path, "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures))
    elif failed_path.exists():
        failed_path.unlink()
    if figure is not None:
        figure(out_dir)
    atomic_write_text(out_dir / "README.md", card(sizes))


def dataset_card(recipe, generator: dict, counts: dict, command: str, sizes: dict) -> str:
    # `dataset_info` is what `datasets` keys its cache of a local folder on: without the row count and file size a
    # dataset regenerated in the same place would be read back from the stale cache of the old one
    folders = {"default": "data", "rejected": REJECTED_DIR}
    header = {"configs": [{"config_name": c, "data_files": [{"split": "train", "path": f"{folders[c]}/train-*"}]}
                          for c in sizes],
              "dataset_info": [{"config_name": c, "splits": [{"name": "train", "num_bytes": b, "num_examples": n}],
                                "download_size": f} for c, (n, b, f) in sizes.items()],
              "tags": ["synthetic", "distilabel", "smolalign", "smoltalk"]}
    llm = recipe.sections["llm"]
    settings = {k: v for k, v in dataclasses.asdict(recipe.settings).items() if not isinstance(v, (dict, str))}
    from .backends import server_lines
    from .quality.card import count_rows, quality_section

    return (
        f"---\n{yaml.safe_dump(header, sort_keys=False)}---\n\n"
        f"# {recipe.kind} (generated with smolalign)\n\n"
        f"SmolTalk's {recipe.kind} subset made again with distilabel: rows in SmolTalk's schema (`messages`, `source`) "
        f"plus the subset's raw columns and `gen_id`, the planned row each came from.\n\n"
        f"- Generator model: `{generator['model']}` (backend `{llm.backend}`)\n"
        f"- Sampling: temperature {llm.temperature}, top_p {llm.top_p}, max_new_tokens {llm.max_new_tokens}\n"
        f"{server_lines(generator)}"
        f"- Settings: {json.dumps(settings)}; the full spec is in `recipe.yaml`\n"
        f"- Command: `{command}`\n\n"
        f"| count | rows |\n|---|---|\n{count_rows(counts)}\n"
        f"{quality_section(recipe, counts, 'rejected' in sizes)}"
        f"{_reading(counts)} `work/` holds the committed shards the run resumes from.\n"
    )


def _reading(counts: dict) -> str:
    if not counts["kept"]:
        from .quality.card import empty_reason

        return f"The dataset is empty: {empty_reason(counts)}."
    return "Read it with `datasets.load_dataset(\"PATH\")`, or train on it with `smolalign sft sft data.dataset=PATH`."
