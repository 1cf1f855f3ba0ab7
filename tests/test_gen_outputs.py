"""Nothing lost (issue 25, gen): `gen --overwrite` builds beside the old dataset and swaps in only when its first shard
is complete, so a run that fails after its checks, or is interrupted by SIGINT or kill -9, leaves the old dataset
byte-identical (every file hashed); every check runs before any write (bad device, dtype, output path, row counts the
plan or the seeds cannot hold), answered in one line with exit 2; a run that keeps no row says so, and why."""

from __future__ import annotations

import os
import signal
import shutil
import time
from pathlib import Path

import pytest
from .conftest import REPO, run_cli, run_in_process, tree_digest
from .test_gen import GEN_ENV, TINY, gen, gen_model  # noqa: F401 (gen_model: a fixture)
from .test_gen_watchdog import finish, one_error_line, start, worker

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"


def sibling(out: Path) -> Path:
    return out.with_name(f".{out.name}.overwrite")


@pytest.fixture(scope="module")
def finished(gen_model, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("finished") / "good"
    result = gen("smol-rewrite", gen_model, out, "--num-rows", "2", "filters.drop_truncated=false")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture
def good(finished, tmp_path) -> tuple[Path, dict]:
    """A finished dataset (a copy of one run, for each test), and the hash of every file in it."""
    out = tmp_path / "good"
    shutil.copytree(finished, out)
    return out, tree_digest(out)


def overwrite_args(model, out: Path, *extra) -> list:
    return ["gen", "smol-rewrite", "--backend", "transformers", "--model", model, "--output", out, "--overwrite",
            *TINY, "--num-rows", "6", "output.shard_size=6", "llm.batch_size=1", "llm.max_new_tokens=64", *extra]


@pytest.mark.slow
def test_overwrite_that_fails_after_its_checks_keeps_the_old_dataset(good, gen_model, tmp_path):  # noqa: F811
    """A model whose config and tokenizer pass the checks but whose weights are broken: the step fails to load."""
    out, before = good
    broken = tmp_path / "broken-model"
    shutil.copytree(gen_model, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    result = run_cli(*overwrite_args(broken, out), env=GEN_ENV)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "failed to load" in line and "the old output is as it was" in line, line
    assert tree_digest(out) == before and not sibling(out).exists()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "kill -9"])
def test_an_interrupted_overwrite_keeps_the_old_dataset(good, gen_model, tmp_path, how):  # noqa: F811
    out, before = good
    process = start(overwrite_args(gen_model, out), tmp_path / "log")
    worker(sibling(out), "smol-rewrite-shard-00000", "answer", process)  # the new run is under way beside it
    if how == "SIGINT":
        process.send_signal(signal.SIGINT)
        returncode, stderr, _ = finish(process)
        assert returncode == 130 and one_error_line(stderr) == "error: interrupted"
        assert not sibling(out).exists(), "an interrupted run removes its own partial work"
    else:
        process.kill()  # the command itself; then what it left running, as a terminal's job control would
        process.wait()
        time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)
    assert tree_digest(out) == before
    if how == "SIGINT":
        return
    # the next --overwrite replaces it, removing what the killed run left beside it
    result = run_cli(*overwrite_args(gen_model, out, "--num-rows", "3", "llm.max_new_tokens=8"), env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert tree_digest(out) != before and not sibling(out).exists()


# ---------------------------------------------------------------- every check before any write (in-process)


def invoke(*args) -> tuple[int, str]:
    result = run_in_process(*args)
    return result.returncode, result.stderr


CHECKS = {
    "cuda on a CPU machine": (["llm.device=cuda"], "llm.device=cuda, but this machine has no CUDA device"),
    "device typo": (["llm.device=gpu"], "llm.device=gpu is not a device"),
    "dtype typo": (["llm.dtype=float99"], "llm.dtype=float99 is not a torch dtype"),
    "judge on a missing GPU": (["labels.llm.device=cuda:3"], "labels.llm.device=cuda:3, but this machine has"),
    "more rows than the seeds give": (["--num-rows", "100000000"],
                                      "smol-rewrite has 72 distinct seed x style pairs (24 seed texts x 3 styles)"),
}


@pytest.mark.parametrize("case", list(CHECKS))
def test_bad_settings_are_one_line_before_any_write(case, tmp_path, monkeypatch):
    if case.startswith(("cuda", "judge")):
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the CPU machine this case is about
    args, expected = CHECKS[case]
    out = tmp_path / "out"
    code, stderr = invoke("gen", "smol-rewrite", "--backend", "transformers", "--model", TOKENIZER, "--output", out,
                          *args)
    assert code == 2 and stderr.count("error:") == 1 and expected in stderr, stderr
    assert not out.exists()


def test_magpie_rows_beyond_one_plan_are_refused_before_planning(tmp_path):
    started = time.monotonic()
    code, stderr = invoke("gen", "magpie-ultra", "--num-rows", "100000000", "--output", tmp_path / "out")
    assert code == 2 and "100,000,000 rows are more than one run plans (1,000,000)" in stderr, stderr
    assert time.monotonic() - started < 60 and not (tmp_path / "out").exists()


def test_an_empty_output_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["--output", ""], ["--output", "", "--refilter"], ["output.dir=''"]):
        code, stderr = invoke("gen", "smol-rewrite", *args)
        assert code == 2 and "empty" in stderr, (args, stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_overwrite_with_a_bad_device_keeps_the_old_dataset(good, gen_model, monkeypatch):  # noqa: F811
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out, before = good
    code, stderr = invoke("gen", "smol-rewrite", "--backend", "transformers", "--model", gen_model, "--output", out,
                          "--overwrite", "llm.device=cuda")
    assert code == 2 and "no CUDA device" in stderr and "Loading weights" not in stderr, stderr
    assert tree_digest(out) == before


@pytest.mark.slow
def test_a_run_that_keeps_no_row_says_so_and_why_and_refilter_brings_truncated_rows_back(gen_model,  # noqa: F811
                                                                                         tmp_path):
    out = tmp_path / "empty"
    result = gen("smol-rewrite", gen_model, out, "--num-rows", "2", "llm.max_new_tokens=2",
                 "filters.drop_truncated=true")  # as shipped (the tiny-model helper turns it off)
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stdout.split())
    assert "is empty: 0 of 2 requested rows kept (2 truncated at max_new_tokens)" in said, said
    assert "smolalign sft" not in said and "smolalign sft" not in (out / "README.md").read_text()
    # the truncated rows were dropped, not lost: --refilter brings them back without asking any model
    again = run_cli("gen", "smol-rewrite", "--output", out, "--refilter", "filters.drop_truncated=false", env=GEN_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "dataset written to" in again.stdout and "| kept | 2 |" in (out / "README.md").read_text()


def test_a_folder_of_other_files_is_refused_without_advising_resume(tmp_path):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "mine.txt").write_text("not a dataset")
    code, stderr = invoke("gen", "smol-rewrite", "--backend", "transformers", "--model", TOKENIZER, "--output", out)
    assert code == 2 and "is not empty: pass --overwrite" in stderr and "--resume" not in stderr, stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
