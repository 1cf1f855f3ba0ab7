"""`smolalign gen`, every subset, with the real SmolLM2-135M-Instruct (imported from GGUF): in-process through the
transformers backend, and once over a real `transformers serve`. A model that writes real text meets the
mechanics here: Magpie's user turns must be real requests, roles alternate, nothing empty is written, and the
final table adds up. Few rows and short generations: the figures in the README come from longer runs."""

from __future__ import annotations

import json

import pytest

from .conftest import run_cli
from .test_gen import GEN_ENV, check_dataset

SHORT = ["llm.max_new_tokens=40", "llm.batch_size=4"]


def gen(subset: str, out, *args) -> None:
    result = run_cli("gen", subset, "--output", out, *SHORT, *args, env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]


def check_turns(rows: list[dict]) -> None:
    for row in rows:
        roles = [m["role"] for m in row["messages"] if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles, roles
        assert all(m["content"].strip() for m in row["messages"]), row


def test_magpie_ultra_writes_real_user_requests(real_gguf, tmp_path):
    """Given the .gguf file itself, as a llama.cpp user would (imported into the cache once)."""
    out = tmp_path / "magpie"
    gen("magpie-ultra", out, "--backend", "transformers", "--model", real_gguf, "--num-rows", "4", "turns=2")
    rows, counts = check_dataset(out, "magpie-ultra", 4)
    generator = json.loads((out / "smolalign_run.json").read_text())["generator"]
    assert generator["gguf"]["gguf_file"] == str(real_gguf.resolve())
    assert counts["kept"] >= 2, counts  # the tiny debug model kept 0 of 8: every user turn came back empty
    check_turns(rows)
    firsts = [row["messages"][0]["content"] for row in rows]
    assert all(len(text.split()) >= 4 for text in firsts), firsts  # a request, not a stray token
    assert len(set(firsts)) == len(firsts)
    assert all(len(row["messages"]) == 4 for row in rows)


@pytest.mark.parametrize("subset", ["smol-rewrite", "smol-summarization", "smol-constraints"])
def test_text_subsets_with_the_real_model(real_model, tmp_path, subset):
    out = tmp_path / subset
    labels = ["label.max_new_tokens=64"] if subset == "smol-constraints" else []
    gen(subset, out, "--backend", "transformers", "--model", real_model, "--num-rows", "2", *labels)
    rows, counts = check_dataset(out, subset, 2)
    check_turns(rows)
    dropped = counts["failed"] + sum(counts["filtered"].values()) + counts["duplicates"]
    assert counts["kept"] + dropped == counts["requested"], counts
    if subset == "smol-rewrite":  # the easiest task: a 135M model answers it every time
        assert counts["kept"] == 2, counts


def test_rewrite_over_transformers_serve_with_the_gguf_file(real_gguf, real_model, tmp_path):
    """The server is given the .gguf file itself (served from its imported directory)."""
    from smolalign.serve import local_server

    with local_server(real_gguf, tmp_path / "serve.log") as base_url:
        out = tmp_path / "served"
        gen("smol-rewrite", out, "--backend", "openai", "--base-url", base_url, "--num-rows", "2")
    rows, counts = check_dataset(out, "smol-rewrite", 2)
    assert counts["kept"] == 2, counts
    check_turns(rows)
