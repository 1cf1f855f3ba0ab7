"""The quality passes of `smolalign gen`: labels from a judge LLM, safety, reward, embeddings and MinHash, filters,
the rejected rows and `--refilter`, through the real CLI and real distilabel pipelines.

Models: the real SmolLM2-135M-Instruct (`real_model`) as generator and judge, where the test is about what a real
model writes; otherwise the tiny chat model; and models built here: a tiny reward model and a tiny safety
classifier (LlamaForSequenceClassification from the tiny preset), and a tiny embedding model (a Llama with no
layer: its mean-pooled output is a bag of word vectors, so near-identical texts are close and others are not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO, assert_user_error, run_cli, write_jsonl

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"
GEN_ENV = {"OMP_NUM_THREADS": "1"}
NEAR = "near-duplicate first user turn (cosine > 0.9)"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification, LlamaModel

    from smolalign.model.build import llama_config
    from smolalign.model.write import init_model

    root = tmp_path_factory.mktemp("quality-models")
    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    torch.manual_seed(0)
    for name, labels in (("reward", {0: "score"}), ("safety", {0: "safe", 1: "unsafe"})):
        config = llama_config("tiny", tokenizer=tok)
        config.num_labels, config.id2label = len(labels), labels
        config.label2id = {v: k for k, v in labels.items()}
        LlamaForSequenceClassification(config).save_pretrained(root / name)
        tok.save_pretrained(root / name)
    embed = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=0,
                        num_attention_heads=4, num_key_value_heads=4, pad_token_id=tok.pad_token_id)
    LlamaModel(embed).save_pretrained(root / "embed")
    tok.save_pretrained(root / "embed")
    init_model("tiny", str(TOKENIZER), str(root / "chat"), seed=0)
    config = json.loads((root / "chat" / "generation_config.json").read_text())
    (root / "chat" / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    return {"reward": root / "reward", "safety": root / "safety", "embed": root / "embed", "chat": root / "chat"}


def gen(subset: str, model: Path, out: Path, *args: str, **kwargs):
    return run_cli("gen", subset, "--backend", "transformers", "--model", model, "--output", out, *args,
                   env=GEN_ENV, **kwargs)


def record(out: Path) -> dict:
    return json.loads((out / "smolalign_run.json").read_text())


def read_split(out: Path, config: str = "default") -> list[dict]:
    import pyarrow.parquet as pq

    path = out / ("data" if config == "default" else "rejected") / "train-00000-of-00001.parquet"
    return pq.read_table(path).to_pylist() if path.exists() else []


def check_counts_add_up(out: Path) -> dict:
    """Every row that came in is kept or dropped under one reason; the rejected split holds each dropped row."""
    counts = record(out)["counts"]
    kept, rejected = read_split(out), read_split(out, "rejected")
    assert len(kept) == counts["kept"]
    dropped = sum(counts["filtered"].values()) + counts["duplicates"]
    assert counts["rows_in"] == counts["kept"] + dropped
    assert len(rejected) == dropped and all(r["rejected_reason"] for r in rejected)
    by_reason = {}
    for row in rejected:
        by_reason[row["rejected_reason"]] = by_reason.get(row["rejected_reason"], 0) + 1
    assert by_reason == {**counts["filtered"], **({"exact duplicate": counts["duplicates"]}
                                                  if counts["duplicates"] else {})}
    for name, values in counts.get("labels", {}).items():
        if name != "reward":
            assert sum(values.values()) == counts["rows_in"], (name, values)
    return counts


def tree(out: Path) -> dict[str, tuple[int, int]]:
    """Every file under DIR with its inode and mtime: what a run rewrote, and what it left alone."""
    return {str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- the real checkpoint as generator and judge


@pytest.mark.slow
def test_every_pass_with_the_real_checkpoint_then_refilter_asks_no_model(real_model, models, tmp_path):
    out = tmp_path / "magpie"
    result = gen("magpie-ultra", real_model, out, "--num-rows", "2", "turns=1", "llm.batch_size=2",
                 "llm.max_new_tokens=32", "labels.llm.max_new_tokens=40", f"reward.model={models['reward']}",
                 "filters.drop_truncated=false",
                 f"near_dedup.model={models['embed']}")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = check_counts_add_up(out)
    assert counts["generated"] == 2 and counts["rows_in"] == 2
    # every pass committed one value per row; a label that did not parse is counted unlabelled, never guessed
    quality = sorted(p.name.split("-")[0] for p in (out / "work" / "quality").iterdir())
    assert quality == ["difficulty", "embedding", "input_quality", "reward", "safety", "task_category"]
    assert counts["labels"]["reward"]["scored"] == 2
    rows = read_split(out) + read_split(out, "rejected")
    for row in rows:
        assert isinstance(row["reward_score"], float)
        assert row["difficulty"] in (None, "very easy", "easy", "medium", "hard", "very hard")
        assert row["input_quality"] is None or row["quality_explanation"]
        assert row["category_match"] is None or row["category_match"] == (row["task_category"] == row["category"])
    assert counts["labelled"] == sum(all(r[c] is not None for c in ("difficulty", "input_quality", "task_category",
                                                                     "safety")) for r in rows)
    # the shipped thresholds (input quality good, safe only) drop every row that is not labelled so
    for row in read_split(out, "rejected"):
        assert row["rejected_reason"] in ("input_quality unlabelled", "safety unlabelled", "unsafe", NEAR) or \
            row["rejected_reason"].startswith("input_quality below")
    card = (out / "README.md").read_text()
    assert "## Labels" in card and "input_quality:" in card and "config_name: rejected" in card
    assert (out / "labels.png").stat().st_size > 1000

    # --refilter: other thresholds, no model asked. The reward and embedding models are moved away, the LLM is put on
    # a device this machine lacks, and the server URL points nowhere: any model use would fail
    scores = sorted(r["reward_score"] for r in rows)
    before = tree(out / "work")
    for name in ("reward", "embed"):
        models[name].rename(models[name].with_name(name + "-away"))
    try:
        again = run_cli("gen", "magpie-ultra", "--output", out, "--refilter", "filters.min_input_quality=null",
                        "filters.safe_only=false", f"filters.min_reward={scores[1]}", "llm.device=cuda:7",
                        "--base-url", "http://127.0.0.1:9/v1", env=GEN_ENV)
        assert again.returncode == 0, again.stderr[-3000:]
        # a change that would need a model is refused, and nothing is written
        snapshot = tree(out)
        refused = run_cli("gen", "magpie-ultra", "--output", out, "--refilter", "reward.model=other/rm", env=GEN_ENV)
        assert_user_error(refused)
        assert "reward would need computing" in refused.stderr and tree(out) == snapshot
    finally:
        for name in ("reward", "embed"):
            models[name].with_name(name + "-away").rename(models[name])
    assert tree(out / "work") == before, "no pipeline ran: nothing under work/ changed"
    counts = check_counts_add_up(out)
    assert counts["filtered"] == {f"reward score below {scores[1]:g}": 1}, "the other row is no near-duplicate of it"
    assert [r["reward_score"] for r in read_split(out)] == [scores[1]]
    assert record(out)["refiltered"][-1] == "llm.device=cuda:7"


# ---------------------------------------------------------------- tiny models: dedup, classifiers, resume


@pytest.mark.slow
def test_near_duplicate_first_turns_and_classifier_passes(models, tmp_path):
    """smol-rewrite over three seeds, two of them one word apart, three styles each: every row of a seed shares its
    first user turn, and the two near-identical seeds are one cluster, so two rows of nine stay."""
    seeds = ["Hi team, the quarterly review meeting moves to Friday at ten in room four, please bring the slides.",
             "Hi team, the quarterly review meeting moves to Friday at ten in room five, please bring the slides.",
             "Our new bakery opens downtown next month with fresh bread, warm pastries and coffee every morning."]
    seed_file = write_jsonl(tmp_path / "seeds.jsonl", [{"text": t} for t in seeds])
    out = tmp_path / "rewrite"
    result = gen("smol-rewrite", models["chat"], out, f"seeds.dataset={seed_file}", "llm.max_new_tokens=12",
                 "filters.drop_truncated=false", "llm.temperature=1.0", "llm.batch_size=9", "minhash.enabled=false",
                 f"near_dedup.model={models['embed']}", f"reward.model={models['reward']}",
                 "safety.method=classifier", f"safety.model={models['safety']}")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = check_counts_add_up(out)
    assert counts["rows_in"] == 9 and counts["filtered"] == {NEAR: 7} and counts["kept"] == 2
    kept = read_split(out)
    assert sorted(r["seed_index"] for r in kept) in ([0, 2], [1, 2])
    assert all(r["safety"] in ("safe", "unsafe") and r["safety_reason"] for r in kept)
    assert counts["labels"]["safety"]["unlabelled"] == 0

    refilter = run_cli("gen", "smol-rewrite", "--output", out, "--refilter", "filters.safe_only=true",
                       "near_dedup.threshold=1.01", env=GEN_ENV)
    assert_user_error(refilter)  # a cosine above 1 is refused like any bad value
    refilter = run_cli("gen", "smol-rewrite", "--output", out, "--refilter", "filters.safe_only=true", env=GEN_ENV)
    assert refilter.returncode == 0, refilter.stderr[-3000:]
    counts = check_counts_add_up(out)
    assert all(r["safety"] == "safe" for r in read_split(out))
    assert all(r["safety"] == "unsafe" for r in read_split(out, "rejected") if r["rejected_reason"] == "unsafe")


def test_minhash_removes_near_identical_answers():
    from smolalign.gen.quality.dedup import minhash_duplicates

    base = "Thanks for the update. The report is attached and the numbers for March look much better than before."
    texts = [base, base.replace("much", "far"), "A completely different answer about planting tomatoes in spring.",
             "ok", "ok"]
    assert minhash_duplicates(texts, threshold=0.7, num_perm=128, ngram=5) == [False, True, False, False, False]


@pytest.mark.slow
def test_kill_mid_labelling_resumes_exactly_once(models, tmp_path):
    out = tmp_path / "killed"
    args = ["gen", "magpie-ultra", "--backend", "transformers", "--model", str(models["chat"]), "--output", str(out),
            "--num-rows", "4", "turns=1", "output.shard_size=2", "llm.batch_size=2", "llm.max_new_tokens=8",
            "labels.llm.max_new_tokens=96", f"reward.model={models['reward']}"]
    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *args], env={**os.environ, **GEN_ENV},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    first = out / "work" / "quality"
    deadline = time.monotonic() + 600
    while len(list(first.glob("*/shard-00000.pass-1.jsonl"))) < 5 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not list(first.glob("*/shard-00001.*")), "killed while shard 1 was being labelled"
    committed = {k: v for k, v in tree(out / "work").items() if k.startswith(("shards/", "quality/"))}
    assert len([k for k in committed if k.startswith("quality/")]) == 5, "shard 0 of each of the five passes"

    result = run_cli(*args, env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    after = tree(out / "work")
    assert all(after[k] == v for k, v in committed.items()), "nothing committed before the kill was redone"
    logs = sorted(p.name for p in (out / "work" / "logs").iterdir())
    assert "magpie-ultra-quality-00001-pass-1.log" in logs and not any("pass-2" in name for name in logs)
    for folder in first.iterdir():  # each row labelled exactly once per pass
        qids = [json.loads(line)["qid"] for p in folder.glob("*.jsonl") for line in p.read_text().splitlines()]
        assert sorted(qids) == ["0.0", "1.0", "2.0", "3.0"], folder.name
    check_counts_add_up(out)


# ---------------------------------------------------------------- plain functions and bad input


def test_labels_parse_only_valid_json():
    from smolalign.gen.quality.labels import parse_label

    cats = ["math", "data-analysis"]
    assert parse_label("difficulty", 'Sure!\n```json\n{"intent": "x", "difficulty": "Very Hard"}\n```', cats) == \
        {"difficulty": "very hard", "intent": "x"}
    assert parse_label("input_quality", '{"explanation": "Clear.\\nMore", "input_quality": "good"}', cats) == \
        {"input_quality": "good", "quality_explanation": "Clear."}
    assert parse_label("task_category", '{"task_category": "Data analysis"}', cats) == \
        {"task_category": "data-analysis"}
    assert parse_label("safety", '{"reason": "fine", "verdict": "safe"}', cats)["safety"] == "safe"
    assert parse_label("guard", "unsafe\nS1,S10", cats) == {"safety": "unsafe", "safety_reason": "S1,S10"}
    for mission, text in (("difficulty", '{"difficulty": "trivial"}'), ("difficulty", "medium"),
                          ("input_quality", '{"input_quality": "good"}'), ("task_category", '{"task_category": "'),
                          ("task_category", '{"task_category": "cooking"}'), ("safety", None), ("guard", "maybe")):
        assert parse_label(mission, text, cats) is None, (mission, text)


def test_filters_name_the_first_failing_reason():
    from smolalign.gen.quality.filters import drop_reason
    from smolalign.gen.quality.spec import FiltersSection

    filters = FiltersSection(min_input_quality="good", min_reward=0.5, safe_only=True)
    good = {"input_quality": "excellent", "reward_score": 0.7, "safety": "safe"}
    assert drop_reason(good, filters) is None
    assert drop_reason({**good, "input_quality": "average"}, filters) == "input_quality below good"
    assert drop_reason({**good, "input_quality": None}, filters) == "input_quality unlabelled"
    assert drop_reason({**good, "reward_score": 0.2}, filters) == "reward score below 0.5"
    assert drop_reason({**good, "safety": "unsafe"}, filters) == "unsafe"
    assert drop_reason({**good, "safety": None}, filters) == "safety unlabelled"


BAD = {
    "unknown filter key": (["filters.min_rewrd=0.5"], "did you mean filters.min_reward"),
    "threshold of the wrong type": (["filters.min_reward=high"], "filters.min_reward='high' has the wrong type"),
    "threshold without its pass": (["filters.min_reward=0.5"], "needs reward scores"),
    "reward model that is not a classifier": (["reward.model=CHAT"], "is not a sequence classifier"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD))
def test_bad_quality_input_is_one_line_and_writes_nothing(case, models, tmp_path):
    args, expected = BAD[case]
    args = [a.replace("CHAT", str(models["chat"])) for a in args]
    out = tmp_path / "out"
    result = gen("magpie-ultra", models["chat"], out, "--num-rows", "2", *args)
    assert_user_error(result)
    assert expected in result.stderr, result.stderr
    assert not out.exists()


def test_constraints_reading_is_a_spec_key():
    """label.reading picks the verdict: IFEval's substring keyword match, or the strict whole-word reading."""
    from smolalign.gen.spec import load_spec
    from smolalign.gen.subsets import interpret

    row = {"gen_id": 0, "instruction": "Describe a category, and mention a cat.", "response": "A category of things.",
           "labels": '{"instructions": [{"id": "keywords:existence", "kwargs": {"keywords": ["cat"]}}]}'}
    verdicts = {}
    for reading in ("ifeval", "strict"):
        recipe = load_spec("smol-constraints", [f"label.reading={reading}"], {"num_rows": 1})
        outcome = interpret(recipe, row, None)
        verdicts[reading] = (outcome.status, outcome.reason)
    assert verdicts == {"ifeval": ("ok", None), "strict": ("filtered", "response fails the strict IFEval check")}
