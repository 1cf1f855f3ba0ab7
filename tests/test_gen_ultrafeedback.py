"""`smolalign gen ultrafeedback`: prompts -> N completions -> the judge's UltraFeedback ratings (JSON under its
schema) -> pairs binarized as HuggingFaceH4/ultrafeedback_binarized, which `smolalign dpo` reads as they are.

The binarization and the prompt reading are plain functions, tested here directly; one run with the project's
tiny model (gibberish text, so mechanics: every rating parses under constrained decoding, counts add up, the
pairs load as preference data, resume and --refilter) goes through real distilabel pipelines. The real
SmolLM2-135M-Instruct as policy and judge, and `smolalign dpo` on its pairs, are in test_real_gen.py.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest

from .conftest import assert_user_error, run_cli, write_jsonl
from .test_gen import GEN_ENV, committed, gen_model, run_record  # noqa: F401 (gen_model: a fixture)


def record(ratings, prompt_id="p1") -> dict:
    count = len(ratings)
    return {"gen_id": 0, "prompt_id": prompt_id, "prompt": "Say hi.",
            "messages": [{"role": "user", "content": "Say hi."}],
            "completions": [f"answer {i}" for i in range(count)], "models": [f"m{i}" for i in range(count)],
            "ratings": ratings, "truncated": [False] * count}


def test_binarize_takes_the_best_and_a_seeded_random_lower_one_and_drops_ties():
    from smolalign.gen.subsets.ultrafeedback.pairs import TIE, UNRATED, binarize

    pair, why = binarize(record([2, 5, 3, 1]), min_margin=1, seed=42)
    assert why is None and pair["chosen"][-1]["content"] == "answer 1" and pair["score_chosen"] == 5.0
    assert pair["chosen"][:-1] == pair["rejected"][:-1] == [{"role": "user", "content": "Say hi."}]
    assert pair["prompt"] == "Say hi." and pair["model_chosen"] == "m1" and pair["score_rejected"] < 5
    drawn = Counter(binarize(record([2, 5, 3, 1], prompt_id=f"p{i}"), 1, 42)[0]["model_rejected"] for i in range(60))
    assert set(drawn) == {"m0", "m2", "m3"}, "rejected is any lower completion, drawn per prompt"
    assert binarize(record([2, 5, 3, 1]), 1, 42) == (pair, None), "the same seed and prompt draw the same pair"
    assert binarize(record([4, 4, None, 4]), 1, 42) == (None, TIE)
    assert binarize(record([None, 3, None]), 1, 42) == (None, UNRATED)
    strict, why = binarize(record([2, 5, 4, 1]), min_margin=3, seed=42)
    assert strict["score_rejected"] <= 2.0
    assert binarize(record([4, 5, 4]), min_margin=2, seed=42)[0] is None


def test_ratings_parse_from_the_schema_and_only_from_it():
    from smolalign.gen.subsets.ultrafeedback.ratings import parse_ratings, ratings_schema

    answer = json.dumps({"text_1": {"rationale": "Clear.", "rating": 4}, "text_2": {"rationale": "Off.", "rating": 1}})
    assert parse_ratings(answer, 2) == ([4, 1], ["Clear.", "Off."])
    assert parse_ratings('{"text_1": {"rating": 9}}', 2)[0] == [None, None]
    assert parse_ratings("Rating: 4", 2)[0] == [None, None] and parse_ratings(None, 1)[0] == [None]
    assert ratings_schema(3)["required"] == ["text_1", "text_2", "text_3"]


def test_prompts_come_from_a_text_column_or_an_sft_sets_conversations():
    from smolalign.errors import UsageError
    from smolalign.gen.subsets.ultrafeedback import prompt_of

    assert prompt_of(" Hi? ", 0, "s") == [{"role": "user", "content": "Hi?"}]
    smoltalk = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a fruit."},
                {"role": "assistant", "content": "Apple."}, {"role": "user", "content": "Another?"}]
    assert prompt_of(smoltalk, 0, "s") == smoltalk[:2]
    with pytest.raises(UsageError, match="row 3"):
        prompt_of([{"role": "assistant", "content": "x"}], 3, "s")


@pytest.mark.parametrize("overrides, message", [
    (["completions=1"], "a pair needs at least two completions"),
    (["models=[{temperature: 0.5}]"], "models[0] names no model"),
    (["judge.temprature=0"], "judge.temprature"),
    (["pairs.min_margin=0"], "must be above 0: rejected is rated lower"),
    (["judge.max_new_tokens=256"], "may cut the ratings of 4 completions"),
])
def test_bad_settings_are_refused_before_anything_runs(overrides, message, tmp_path):
    result = run_cli("gen", "ultrafeedback", "--output", tmp_path / "out", *overrides, fresh=True)
    assert_user_error(result)
    assert message in result.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_ultrafeedback_with_the_tiny_model(gen_model, tmp_path):  # noqa: F811
    from smolalign.config import DataSection
    from smolalign.data import load_data

    # SmolTalk's schema: the prompt is each conversation's system turn and first user turn
    conversations = [[{"role": "user", "content": f"Question {i}: name a colour."},
                      {"role": "assistant", "content": "Blue."}] for i in range(4)]
    seeds = write_jsonl(tmp_path / "sft.jsonl", [{"messages": c} for c in conversations])
    out = tmp_path / "pairs"
    args = ["gen", "ultrafeedback", "--backend", "transformers", "--model", gen_model, "--output", out,
            f"seeds.dataset={seeds}", "seeds.column=messages", "completions=3", "llm.max_new_tokens=8",
            "output.shard_size=2", "llm.batch_size=2", "pairs.test_share=0.3"]
    result = run_cli(*args, env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = run_record(out)["counts"]
    assert counts["requested"] == 4 and counts["failed"] == 0 and counts["completions"] == 12, counts
    assert counts["parse_rate"] == 1.0, "every rating parses under constrained decoding, whatever the judge"
    dropped = sum(counts["filtered"].values())
    assert dropped + counts["kept"] == 4 and counts["train_prefs"] + counts["test_prefs"] == counts["kept"]
    card = (out / "README.md").read_text()
    assert "completions rated (judge parse rate) | 12 (100.0%)" in card and "Score margin" in card
    assert f"| pairs kept | {counts['kept']} |" in card
    records = [r for r in committed(out) if r["status"] == "ok"]
    assert sorted(r["gen_id"] for r in records) == [0, 1, 2, 3], "each prompt rated once"
    assert all(len(r["rows"][0]["ratings"]) == 3 for r in records)
    if counts["kept"]:  # what `smolalign dpo` reads: the shipped recipe's train_prefs split, no format option
        import datasets

        bundle = load_data(DataSection(dataset=str(out), split="train_prefs"), "preference")
        assert len(bundle.train) == counts["train_prefs"]
        rows = datasets.load_dataset(str(out), split="train_prefs").to_list()
        assert {"prompt", "prompt_id", "chosen", "rejected", "score_chosen", "score_rejected", "model_chosen",
                "model_rejected"} <= set(rows[0])
        assert all(r["score_chosen"] > r["score_rejected"] for r in rows)

    # resume: everything is committed, so the same command runs no pipeline and writes the same pairs
    parts = sorted(p.name for p in (out / "work" / "shards").iterdir())
    again = run_cli(*args, env=GEN_ENV)
    assert again.returncode == 0 and sorted(p.name for p in (out / "work" / "shards").iterdir()) == parts
    # --refilter bins the same ratings again with another margin, asking no model
    strict = run_cli("gen", "ultrafeedback", "--output", out, "--refilter", "pairs.min_margin=4", fresh=True)
    assert strict.returncode == 0, strict.stderr[-3000:]
    assert run_record(out)["counts"]["kept"] <= counts["kept"]
    assert sorted(p.name for p in (out / "work" / "shards").iterdir()) == parts
