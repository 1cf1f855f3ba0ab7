"""`smolalign gen`, every subset, with the real SmolLM2-135M-Instruct (imported from GGUF): each shipped spec as it
ships (`data_gen/*.yaml`: its quality passes, its labels under constrained decoding, its filters, truncated rows
dropped), only its size shrunk (few rows, and a `llm.max_new_tokens` at which the model ends some answers), and
once over a real `transformers serve` given the .gguf file. A model that writes real text meets the mechanics
here: the counts add up, rows are kept, roles alternate, labels parse, and the card lists them. Sampling is seeded
by the pipeline's name, so the same command samples the same on this machine. The rows are printed (`-s`) for the
record.

What the 135M model cannot do is stated, not hidden: magpie-ultra keeps no row here, as its answers run past any
`max_new_tokens` a test can afford (the shipped `drop_truncated` drops them) and its judge, decoding greedily under
the schema, rates every request "very poor" (the shipped `min_input_quality: good` drops it); smol-constraints keeps
none either, as its labeller repeats the labelling prompt's example (fewer than 100 words, no commas), which its
answers then fail under IFEval's strict check. Their labels all parse, which is what these two tests assert."""

from __future__ import annotations

import json

import pytest

from smolalign.gen.output import TRUNCATED

from .conftest import run_cli
from .test_gen import GEN_ENV, check_dataset

pytestmark = pytest.mark.slow

# subset -> (rows, llm.max_new_tokens): the only settings changed from the shipped spec. magpie-ultra's answers run
# past a few hundred tokens (3 turns each), so its size is kept small and its rows are dropped as truncated, see below
SIZES = {"magpie-ultra": (2, 64), "smol-constraints": (2, 128), "smol-rewrite": (4, 200),
         "smol-summarization": (4, 160)}
LABELS = {"magpie-ultra": ("difficulty:", "input_quality:", "task_category:", "safety:"),
          "smol-constraints": ("The instructions the kept rows were labelled with",)}


def check_turns(rows: list[dict]) -> None:
    for row in rows:
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles, roles
        assert all(m["content"].strip() for m in row["messages"]), row


def read_rows(out, config: str) -> list[dict]:
    import pyarrow.parquet as pq

    path = out / config / "train-00000-of-00001.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


@pytest.mark.parametrize("subset", list(SIZES))
def test_the_shipped_spec_with_the_real_model(real_model, tmp_path, subset):
    rows_asked, tokens = SIZES[subset]
    out = tmp_path / subset
    result = run_cli("gen", subset, "--backend", "transformers", "--model", real_model, "--output", out,
                     "--num-rows", rows_asked, f"llm.max_new_tokens={tokens}", env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, subset, rows_asked)
    rejected = read_rows(out, "rejected")
    print(f"\n{subset}: kept {counts['kept']} of {counts['requested']} requested; {json.dumps(counts)}")
    for row in (rows + rejected)[:2]:
        print(json.dumps({k: row.get(k) for k in ("messages", "truncated", "rejected_reason", "input_quality",
                                                   "safety", "instruction_id_list")}, ensure_ascii=False)[:1500])
    dropped = sum(counts["filtered"].values()) + counts["duplicates"]
    assert counts["rows_in"] == counts["kept"] + dropped and len(rejected) == dropped, counts
    check_turns(rows + rejected)
    assert all(not any(row["truncated"]) for row in rows), "the shipped spec drops rows with a cut turn"
    assert all(any(row["truncated"]) for row in rejected if row["rejected_reason"] == TRUNCATED)
    card = (out / "README.md").read_text()
    assert f"| truncated (a turn cut at max_new_tokens) | {counts['truncated']} |" in card
    assert all(label in card for label in LABELS.get(subset, ())), card
    if subset == "magpie-ultra":
        # every label parsed (constrained decoding): the thresholds judge real values, the rows come in whole
        assert counts["labelled"] == counts["rows_in"] == rows_asked, counts
        assert all(r["difficulty"] and r["input_quality"] and r["task_category"] and r["safety"] for r in rejected)
    elif subset == "smol-constraints":
        # every row's labels parsed and validated: each was judged by IFEval's strict check
        assert counts["rows_in"] == rows_asked and set(counts["filtered"]) <= {
            "response fails the strict IFEval check", "invalid or conflicting constraint labels", TRUNCATED}, counts
        assert all(row["instruction_id_list"] for row in rows)
    else:
        assert counts["kept"] >= 1, counts


def test_rewrite_over_transformers_serve_with_the_gguf_file(real_gguf, real_model, tmp_path):
    """The server is given the .gguf file itself (served from its imported directory)."""
    from smolalign.serve import local_server

    with local_server(real_gguf, tmp_path / "serve.log") as base_url:
        out = tmp_path / "served"
        result = run_cli("gen", "smol-rewrite", "--output", out, "--backend", "openai", "--base-url", base_url,
                         "--num-rows", "2", "llm.max_new_tokens=40", "filters.drop_truncated=false", env=GEN_ENV)
        assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, "smol-rewrite", 2)
    assert counts["kept"] == 2, counts
    check_turns(rows)
    assert all(isinstance(row["truncated"], list) and len(row["truncated"]) == 3 for row in rows)


def test_ultrafeedback_pairs_from_the_real_model_then_dpo_on_them(real_model, tmp_path):
    """The shipped data_gen/ultrafeedback.yaml, only its size shrunk, with the 135M model as policy and judge;
    then the shipped recipes/dpo.yaml trains on the directory with no data option (its train_prefs / test_prefs
    splits are the ones the recipe reads), shortened to a few steps on this CPU. Figures printed for the record."""
    from smolalign.train.callbacks import METRICS_FILE

    out = tmp_path / "ultrafeedback"
    result = run_cli("gen", "ultrafeedback", "--backend", "transformers", "--model", real_model, "--output", out,
                     "--num-rows", "8", "llm.max_new_tokens=64", env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "smolalign_run.json").read_text())
    counts = record["counts"]
    ties = counts["filtered"].get("all rated completions tie", 0)
    print(f"\nultrafeedback with the real 135M: {counts['requested']} prompts, {counts['completions']} completions, "
          f"judge parse rate {counts['parse_rate']:.1%}, ties dropped {ties}, "
          f"pairs kept {counts['kept']} (margins {counts['margins']}), {counts['requested'] / record['seconds']:.3f} "
          f"prompts/s, {counts['completions'] / record['seconds']:.3f} completions/s; {json.dumps(counts)}")
    assert counts["failed"] == 0 and counts["completions"] == 8 * 4, counts
    assert counts["parse_rate"] == 1.0, "every rating parses under constrained decoding"
    assert counts["kept"] >= 2 and counts["test_prefs"] >= 1, counts

    dpo_out = tmp_path / "dpo"
    dpo = run_cli("dpo", "--model", real_model, f"data.dataset={out}", f"training.output_dir={dpo_out}",
                  "training.max_steps=3", "batch.global_rows=2", "training.per_device_train_batch_size=2",
                  "training.bf16=false", "training.activation_checkpointing=false", "training.logging_steps=1",
                  "training.eval_strategy=no", "training.save_strategy=no", "training.report_to=[]",
                  "training.max_length=256")
    assert dpo.returncode == 0, dpo.stderr[-3000:]
    lines = [json.loads(line) for line in (dpo_out / METRICS_FILE).read_text().splitlines() if line.strip()]
    losses = [line["loss"] for line in lines if "loss" in line]
    print(f"dpo on the pairs, 3 steps of 2 pairs: losses {losses}")
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses), losses
