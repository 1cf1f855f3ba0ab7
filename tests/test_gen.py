"""`smolalign gen` on the transformers backend: each subset end to end through real distilabel pipelines with a tiny
model made here (its text is gibberish, so the tests check mechanics: schema, counts, role alternation, the
hub layout that `sft` reads, retries and resume), plus the plan, the Magpie prompt, the parsers, Ray and bad input.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import REPO, assert_user_error, run_cli, write_jsonl
from .test_gen_pins import assert_pinned_rows

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"
# distilabel forks its workers after the parent imported torch: one OpenMP thread avoids the known hang
GEN_ENV = {"OMP_NUM_THREADS": "1"}
# the tiny model's 12-token answers never end a turn: the shipped drop of truncated rows would leave nothing to check
TINY = ["llm.max_new_tokens=12", "llm.temperature=1.0", "filters.drop_truncated=false"]


@pytest.fixture(scope="module")
def gen_model(tmp_path_factory) -> Path:
    """A tiny chat model (the shipped tokenizer's ChatML template), sampling by default like released chat models."""
    from smolalign.model.write import init_model

    out = tmp_path_factory.mktemp("gen-model") / "tiny-chat"
    init_model("tiny", str(TOKENIZER), str(out), seed=0)
    config = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    return out


def gen(subset: str, model: Path, out: Path, *args: str):
    return run_cli("gen", subset, "--backend", "transformers", "--model", model, "--output", out, *TINY, *args,
                   env=GEN_ENV)


def run_record(out: Path) -> dict:
    return json.loads((out / "smolalign_run.json").read_text())


def committed(out: Path) -> list[dict]:
    return [json.loads(line) for p in sorted((out / "work" / "shards").glob("shard-*.jsonl"))
            for line in p.read_text().splitlines()]


def check_dataset(out: Path, subset: str, requested: int) -> tuple[list[dict], dict]:
    """What every subset's output must satisfy; returns the rows and the counts."""
    import datasets

    from smolalign.config import DataSection
    from smolalign.data import load_data

    counts = run_record(out)["counts"]
    assert run_record(out)["status"] == "complete"
    assert counts["requested"] == requested
    assert counts["generated"] + counts["failed"] == requested
    readme = (out / "README.md").read_text()
    assert "configs:" in readme and "path: data/train-*" in readme and f"| kept | {counts['kept']} |" in readme
    assert list((out / "data").glob("train-*.parquet"))
    rows = datasets.load_dataset(str(out), split="train").to_list() if counts["kept"] else []
    assert len(rows) == counts["kept"]
    assert all(r["source"] == subset and 0 <= r["gen_id"] < requested for r in rows)
    if counts["kept"]:  # the path `smolalign sft data.dataset=DIR` takes: it checks every row's roles
        bundle = load_data(DataSection(dataset=str(out)), "chat")
        assert len(bundle.train) == counts["kept"]
    # every planned row is settled exactly once: committed ok or filtered once, or failed on its last pass
    history: dict[int, list] = {}
    for record in committed(out):
        history.setdefault(record["gen_id"], []).append(record)
    assert sorted(history) == list(range(requested))
    for gen_id, records in history.items():
        settled = [r for r in records if r["status"] != "failed"]
        assert len(settled) <= 1 and all(r["status"] == "failed" for r in records[:-1]), records
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()] \
        if (out / "failed.jsonl").exists() else []
    assert len(failed) == counts["failed"] and all(f["error"] for f in failed)
    return rows, counts


@pytest.mark.slow
def test_magpie_ultra_end_to_end(gen_model, tmp_path):
    out = tmp_path / "magpie"
    # the shipped labels run (the tiny judge's answers do not parse: unlabelled), its filters do not
    result = gen("magpie-ultra", gen_model, out, "--num-rows", "4", "turns=2", "output.shard_size=2",
                 "llm.batch_size=2", "filters=null", "labels.llm.max_new_tokens=16")
    assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, "magpie-ultra", 4)
    assert_pinned_rows("magpie-ultra", rows)
    assert len(list((out / "work" / "shards").glob("shard-00001.*"))) >= 1, "4 rows in shards of 2: two shards"
    weights = json.loads(json.dumps(run_record(out)["spec"]["category_weights"]))
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 2
        assert row["category"] in weights and "input_quality" in row and "safety" in row
    assert sum(counts["labels"]["difficulty"].values()) == counts["rows_in"]
    assert "kept" in result.stdout and "requested" in result.stdout  # the final table

    # the same command again: everything is committed, so no pipeline runs and the dataset is the same
    parts = sorted(p.name for p in (out / "work" / "shards").iterdir())
    before = (out / "data" / "train-00000-of-00001.parquet").read_bytes()
    again = gen("magpie-ultra", gen_model, out, "--num-rows", "4", "turns=2", "output.shard_size=2",
                "llm.batch_size=2", "filters=null", "labels.llm.max_new_tokens=16")
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.name for p in (out / "work" / "shards").iterdir()) == parts
    assert (out / "data" / "train-00000-of-00001.parquet").read_bytes() == before

    # another spec into the same directory is refused, and nothing there changes
    other = gen("magpie-ultra", gen_model, out, "--num-rows", "6")
    assert_user_error(other)
    assert "another spec" in other.stderr
    assert sorted(p.name for p in (out / "work" / "shards").iterdir()) == parts
    # --overwrite starts that directory over (it is smolalign's own: it holds the run record)
    fresh = gen("magpie-ultra", gen_model, out, "--num-rows", "2", "turns=1", "--overwrite",
                "labels.llm.max_new_tokens=16")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    check_dataset(out, "magpie-ultra", 2)


@pytest.mark.slow
def test_one_run_at_a_time_in_a_directory(gen_model, tmp_path):
    from smolalign.outputs import output_lock

    out = tmp_path / "busy"
    with output_lock(out):  # another smolalign process holds it
        result = gen("smol-rewrite", gen_model, out, "--num-rows", "2")
    assert_user_error(result)
    assert "another smolalign process" in result.stderr and list(out.iterdir()) == []


@pytest.mark.slow
def test_smol_constraints_end_to_end(gen_model, tmp_path):
    out = tmp_path / "constraints"
    result = gen("smol-constraints", gen_model, out, "--num-rows", "3", "label.max_new_tokens=12")
    assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, "smol-constraints", 3)
    assert_pinned_rows("smol-constraints", [row for r in committed(out) for row in r.get("rows") or []])
    # gibberish labels cannot parse: such rows are filtered with their reason, never kept unchecked
    filtered = sum(counts["filtered"].values())
    assert filtered + len(rows) + counts["failed"] == 3
    for row in rows:
        assert row["instruction_id_list"] and [m["role"] for m in row["messages"]] == ["user", "assistant"]
    assert set(counts["filtered"]) <= {"constraint labels not parseable", "invalid or conflicting constraint labels",
                                       "response fails the strict IFEval check"}
    assert all(r["status"] != "filtered" or r["detail"] for r in committed(out)), "each filtered row says why"


@pytest.mark.slow
def test_smol_rewrite_end_to_end(gen_model, tmp_path):
    out = tmp_path / "rewrite"
    home, hf_home = tmp_path / "home", tmp_path / "hf"
    result = run_cli("gen", "smol-rewrite", "--backend", "transformers", "--model", gen_model, "--output", out, *TINY,
                     "--num-rows", "5", "output.shard_size=3", "llm.batch_size=3",
                     env={**GEN_ENV, "HOME": str(home), "HF_HOME": str(hf_home)})
    assert result.returncode == 0, result.stderr[-3000:]
    # distilabel's caches (its pipeline cache, the Arrow files it reads its outputs back from) stay inside DIR
    assert not (home / ".cache" / "distilabel").exists() and not (hf_home / "datasets" / "parquet").exists()
    rows, counts = check_dataset(out, "smol-rewrite", 5)
    assert_pinned_rows("smol-rewrite", rows)
    styles = run_record(out)["spec"]["styles"]
    assert counts["failed"] == 0 and counts["kept"] == 5
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][0]["content"] == styles[row["style"]].strip()
    assert Counter(r["gen_id"] for r in rows) == Counter(range(5)), "each requested row once"
    # and `smolalign sft` trains on the directory as it is (one step: the reading is what is tested)
    sft = run_cli("sft", "debug/sft", f"data.dataset={out}", "data.eval_split=null", "training.max_steps=1",
                  f"training.output_dir={tmp_path / 'sft'}", "training.save_strategy=no", "training.eval_strategy=no",
                  "training.max_length=1024")
    assert sft.returncode == 0, sft.stderr[-3000:]


@pytest.mark.slow
def test_smol_summarization_end_to_end(gen_model, tmp_path):
    """Own seeds with another column name: two emails (their two summaries cannot parse from gibberish, so they fail
    after every pass and are listed with the reason) and two articles (one summary each)."""
    emails = [f"Subject: Meeting {i}\n\nHello team, the review moves to room {i} on Friday at ten. Bring the slides."
              for i in range(2)]
    articles = [" ".join([f"The town council met on day {i} to discuss the new library."] * 12) for i in range(2)]
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"body": t} for t in emails + articles])
    out = tmp_path / "summaries"
    result = gen("smol-summarization", gen_model, out, f"seeds.dataset={seeds}", "seeds.column=body",
                 "output.max_passes=2")
    assert result.returncode == 0, result.stderr[-3000:]
    rows, counts = check_dataset(out, "smol-summarization", 4)
    assert_pinned_rows("smol-summarization", rows)
    assert counts["failed"] == 2
    for failure in (json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()):
        assert failure["attempts"] == 2 and "'Brief:'" in failure["error"]
        assert failure["input"]["kind"] == "email"
    assert sorted(r["summary_type"] for r in rows) == ["article", "article"]
    for row in rows:
        assert "words long" in row["messages"][0]["content"] and "{words}" not in row["messages"][0]["content"]


# ---------------------------------------------------------------- plain functions


def test_magpie_prompt_opens_a_user_turn_without_an_empty_assistant_header():
    from smolalign.gen.prompts import CHATML_PRE_QUERY, render_prompt
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER))
    system = [{"role": "system", "content": "S"}]
    prompt = render_prompt(tok, system, CHATML_PRE_QUERY)
    assert prompt.endswith("<|im_end|>\n<|im_start|>user\n") and "assistant" not in prompt
    later = system + [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert render_prompt(tok, later, CHATML_PRE_QUERY).endswith("a<|im_end|>\n<|im_start|>user\n")
    answer = render_prompt(tok, later + [{"role": "user", "content": "q2"}], CHATML_PRE_QUERY)
    assert answer.endswith("q2<|im_end|>\n<|im_start|>assistant\n")


def test_a_pre_query_template_foreign_to_the_chat_template_is_refused():
    from smolalign.errors import UsageError
    from smolalign.gen.backends import check_tokenizer
    from smolalign.gen.spec import LLMSection

    check_tokenizer(LLMSection(magpie_pre_query_template="qwen2"), str(TOKENIZER), magpie=True)
    with pytest.raises(UsageError, match="does not open a user turn"):
        check_tokenizer(LLMSection(magpie_pre_query_template="llama3"), str(TOKENIZER), magpie=True)


def load(subset: str, *overrides: str):
    from smolalign.gen.spec import load_spec

    return load_spec(subset, list(overrides), {})


def test_plan_is_deterministic_and_follows_the_category_weights():
    from smolalign.gen.subsets import plan_rows, read_seeds

    recipe = load("magpie-ultra", "num_rows=4000")
    rows = plan_rows(recipe, None)
    assert rows == plan_rows(recipe, None)
    shares = Counter(r["category"] for r in rows)
    weights = recipe.settings.category_weights
    assert set(shares) == set(weights) and abs(sum(weights.values()) - 1) < 1e-9
    for category, weight in weights.items():
        assert abs(shares[category] / 4000 - weight) < 0.02, category
    assert all(r["system_prompt"].endswith(recipe.settings.style_rules.strip()) for r in rows[:5])

    rewrite = load("smol-rewrite")
    seeds = read_seeds(rewrite)
    planned = plan_rows(rewrite, seeds)
    assert len(seeds) >= 24 and len(planned) == len(seeds) * 3
    assert len({(r["seed_index"], r["style"]) for r in planned}) == len(planned), "each seed once per style"
    summaries = plan_rows(load("smol-summarization"), read_seeds(load("smol-summarization")))
    assert Counter(r["kind"] for r in summaries) == {"email": 12, "article": 12}


def test_email_summaries_parse_or_fail_loudly():
    from smolalign.data.formats import RowError
    from smolalign.gen.subsets.smol_summarization import parse_email_summaries

    brief, summary = parse_email_summaries("Brief: Lunch moves to Friday.\nSummary: Priya moves lunch. All invited.")
    assert brief == "Lunch moves to Friday." and summary == "Priya moves lunch. All invited."
    assert parse_email_summaries("**Brief:** A.\n\n**Summary:** B. C.") == ("A.", "B. C.")
    for bad in ("Lunch moves to Friday.", "Brief: only one part", "Summary: only one", "Brief:\nSummary: x"):
        with pytest.raises(RowError):
            parse_email_summaries(bad)


def test_tally_counts_every_row_once_and_removes_duplicates():
    from smolalign.gen.output import TRUNCATED, tally

    def ok(gen_id, text, user="u", truncated=(False, False)):
        row = {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": text}],
               "source": "magpie-ultra", "gen_id": gen_id, "truncated": list(truncated)}
        return {"gen_id": gen_id, "status": "ok", "rows": [row]}

    history = {0: [ok(0, "same")], 1: [{"gen_id": 1, "status": "failed", "reason": "x"}, ok(1, "same")],
               2: [ok(2, "Same!")], 3: [{"gen_id": 3, "status": "filtered", "reason": "r"}],
               4: [{"gen_id": 4, "status": "failed", "reason": "timeout"}] * 3, 5: [ok(5, "cut", truncated=(0, 1))]}
    planned = [{"gen_id": i} for i in range(6)]
    exact = load("magpie-ultra", "num_rows=6", "filters.drop_truncated=false")
    rows, counts, failures, rejected = tally(exact, planned, history, None)
    assert counts == {"requested": 6, "generated": 5, "failed": 1, "rows_in": 5, "truncated": 1, "filtered": {"r": 1},
                      "duplicates": 1, "kept": 3}
    assert [r["rejected_reason"] for r in rejected] == ["exact duplicate"]
    assert [r["gen_id"] for r in rows] == [0, 2, 5] and failures[0]["error"] == "timeout"
    normalized = load("magpie-ultra", "num_rows=6", "output.dedup=normalized", "filters.drop_truncated=false")
    assert tally(normalized, planned, history, None)[1]["duplicates"] == 2
    # the shipped spec drops the row with a turn cut at max_new_tokens, under its own reason
    rows, counts, _, rejected = tally(load("magpie-ultra", "num_rows=6"), planned, history, None)
    assert counts["filtered"] == {"r": 1, TRUNCATED: 1} and [r["gen_id"] for r in rows] == [0, 2]
    assert [r["rejected_reason"] for r in rejected] == [TRUNCATED, "exact duplicate"]


def test_decontamination_drops_rows_sharing_an_ngram_with_the_eval_set():
    from smolalign.gen.output import tally

    eval_prompt = "Write a 300+ word summary of the wikipedia page about the history of the city of Paris."
    users = [f"Please {eval_prompt.lower()} Thanks!", "Write a short poem about rain on a tin roof at night please."]
    def answered(i, user):
        messages = [{"role": "user", "content": user}, {"role": "assistant", "content": "a"}]
        return [{"gen_id": i, "status": "ok", "rows": [{"messages": messages, "gen_id": i}]}]

    history = {i: answered(i, u) for i, u in enumerate(users)}
    rows, counts, *_ = tally(load("smol-constraints"), [{"gen_id": 0}, {"gen_id": 1}], history, [eval_prompt])
    assert [r["gen_id"] for r in rows] == [1]
    assert counts["filtered"] == {"shares a 10-gram with the eval set": 1} and counts["kept"] == 1


def test_failed_rows_are_retried_until_max_passes():
    from smolalign.gen.shards import pending

    rows = [{"gen_id": i} for i in range(3)]
    failed = {"status": "failed", "reason": "x"}
    history = {0: [{"status": "ok"}], 1: [failed], 2: [failed, failed]}
    assert [r["gen_id"] for r in pending(rows, history, 2)] == [1]
    assert [r["gen_id"] for r in pending(rows, history, 3)] == [1, 2]


@pytest.mark.slow
def test_shipped_specs_load_and_print(tmp_path):
    from smolalign.gen import list_subsets

    names = [line.split()[0] for line in list_subsets()]
    assert names == ["magpie-ultra", "smol-constraints", "smol-rewrite", "smol-summarization", "ultrafeedback"]
    for name in names:
        recipe = load(name, "num_rows=3")
        assert recipe.sections["output"].dir == f"data/{name}"
    result = run_cli("gen", "smol-rewrite", "--print-config", "--num-rows", "7", "llm.temperature=0.5")
    assert result.returncode == 0 and "num_rows: 7" in result.stdout and "temperature: 0.5" in result.stdout
    assert "subset: smol-rewrite" in result.stdout
    listed = run_cli("gen", "--list")
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 5


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BAD_INPUT = {
    "unknown subset": (["gen", "smol-nope"], "not found"),
    "spec typo": (["gen", "smol-rewrite", "styls={a: b}"], "did you mean styles"),
    "zero rows": (["gen", "smol-rewrite", "--num-rows", "0"], "num_rows=0 must be at least 1"),
    "negative rows": (["gen", "magpie-ultra", "num_rows=-3"], "num_rows=-3 must be at least 1"),
    "seeds without the column": (["gen", "smol-rewrite", "seeds.column=body", "--backend", "transformers",
                                  "--model", str(TOKENIZER)], "has no column 'body'"),
    "weights not summing to 1": (["gen", "magpie-ultra", "category_weights.reasoning=0.5"], "sum to 1.375, not 1"),
    "transformers without a model": (["gen", "smol-rewrite", "--backend", "transformers"], "llm.model is required"),
    "top_k on a server": (["gen", "smol-rewrite", "llm.top_k=5"], "not part of the OpenAI API"),
    "missing eval set": (["gen", "smol-rewrite", "--backend", "transformers", "--model", "runs/none",
                          "decontaminate.against=runs/no-such-eval.jsonl"], "no-such-eval"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path):
    args, expected = BAD_INPUT[case]
    out = tmp_path / "out"
    result = run_cli(*args, "--output", out, env=GEN_ENV)
    assert_user_error(result)
    assert expected in result.stderr, result.stderr
    assert not out.exists()


@pytest.mark.slow
def test_unreachable_server_fails_within_seconds(tmp_path):
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_cli("gen", "smol-rewrite", "--base-url", f"http://127.0.0.1:{closed_port()}/v1", "--output", out,
                     env=GEN_ENV)
    assert_user_error(result)
    assert "does not answer" in result.stderr
    assert time.monotonic() - started < 60, "an unreachable server is an error now, not after minutes of retries"
    assert not out.exists()


@pytest.mark.slow
def test_vllm_backend_without_vllm_is_a_clear_error(tmp_path):
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    result = run_cli("gen", "smol-rewrite", "--backend", "vllm", "--model", "m", "--output", tmp_path / "o")
    assert_user_error(result)
    assert "needs the vllm package" in result.stderr and not (tmp_path / "o").exists()
