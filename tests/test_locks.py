"""Nothing lost, second pass (issue 31): every writer holds its output's lock, and a second run into a held place is
refused at its start in one line naming the holder's PID; SIGTERM is a ctrl-C (one line, the cleanup, exit 130); a
staging folder a killed run left is removed by the next run into the same output; `model export` into a folder
that does not exist is refused before the model loads.

The holder is a real `smolalign tokenizer train` process (BPE on a large corpus takes a while), stopped with a real
SIGTERM; the second runs are the other commands as a user runs them."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_in_process, tree_digest, write_jsonl


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def big_corpus(path: Path) -> Path:
    """Many distinct words: a minute or more of BPE training for a large vocabulary on a busy CPU."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12)))
             for _ in range(200_000)]
    path.write_text("".join(" ".join(rng.choice(words) for _ in range(20)) + "\n" for _ in range(100_000)))
    return path


@pytest.mark.slow
def test_every_writer_refuses_a_held_output_naming_the_holder_and_sigterm_cleans_up(
        tmp_path, corpus_file, tokenizer_dir):
    from smolalign.locks import holder_pid

    import smolalign.train.sft  # noqa: F401  (the second runs' imports, paid before the holder's clock starts)
    from smolalign.train.speed import machine_facts

    machine_facts()
    held = tmp_path / "held"
    corpus = big_corpus(tmp_path / "big.txt")
    holder = subprocess.Popen([sys.executable, "-m", "smolalign.cli", "tokenizer", "train", "--corpus", corpus,
                               "--vocab-size", "100000", "--output", held], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while holder_pid(held) != holder.pid and holder.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holder_pid(held) == holder.pid, holder.communicate()[1][-3000:]  # held from its check on, not its end
    data = write_jsonl(tmp_path / "held-out.jsonl", [{"text": "some held-out text"}])
    second_runs = {
        "tokenizer train": ["tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 300, "--output", held],
        "model init": ["model", "init", "--preset", "tiny", "--tokenizer", tokenizer_dir, "--output", held],
        "eval": ["eval", tokenizer_dir, "--data", data, "--output", held],
        "demo": ["demo", "--output", held, "--size", "tiny"],
        "gen": ["gen", "smol-rewrite", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                "--output", held],
        "sft": ["sft", "debug/sft", f"training.output_dir={held}"],
    }
    for name, argv in second_runs.items():
        result = run_in_process(*argv)
        assert result.exit_code == 2, (name, result.stderr[-2000:])
        assert f"(pid {holder.pid}) is writing the output directory '{held}'" in one_error_line(result.stderr), name
    assert holder.poll() is None, "the holder finished before every second run was tried: give it a larger corpus"
    assert list(held.iterdir()) == []  # nothing written by the refused runs

    holder.send_signal(signal.SIGTERM)  # what a scheduler or `kill` sends
    _, stderr = holder.communicate(timeout=300)
    assert holder.returncode == 130 and one_error_line(stderr) == "error: interrupted", stderr[-2000:]
    assert not held.exists() and not list(tmp_path.glob(".held.*")), "the stopped run left its work behind"


def test_a_staging_folder_left_by_a_killed_writer_is_removed_by_the_next_run(tmp_path, corpus_file):
    out = tmp_path / "tok"
    left = tmp_path / ".tok.k1ll3d.partial"  # what a kill -9 during the save leaves
    left.mkdir()
    (left / "tokenizer.json").write_text("half written")
    result = run_in_process("tokenizer", "train", "--corpus", corpus_file, "--vocab-size", 300, "--output", out)
    assert result.exit_code == 0, result.stderr[-2000:]
    assert not left.exists() and f"removed {left}" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".tok")) == []


def test_model_export_into_a_missing_folder_is_refused_before_the_model_loads(tmp_path):
    result = run_in_process("model", "export", tmp_path / "no-such-model", "--output", tmp_path / "nodir" / "x.gguf")
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert f"the folder '{tmp_path / 'nodir'}' does not exist: create it first" in line, line
    assert sorted(tmp_path.iterdir()) == []


def test_model_export_into_a_file_another_process_writes_is_refused(tmp_path, tiny_model_dir):
    """The holder is a second real process holding the export's lock (as a running export does)."""
    target = tmp_path / "model.gguf"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom smolalign.locks import file_lock\n"
                               f"with file_lock({str(target)!r}):\n    print('held', flush=True)\n    time.sleep(600)"],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        before = tree_digest(tmp_path)
        result = run_in_process("model", "export", tiny_model_dir, "--output", target)
        assert result.exit_code == 2
        assert f"(pid {holder.pid}) is writing the output file '{target}'" in one_error_line(result.stderr)
        assert tree_digest(tmp_path) == before and not target.exists()
    finally:
        holder.kill()
        holder.wait()
    assert run_in_process("model", "export", tiny_model_dir, "--output", target).exit_code == 0
    assert target.is_file() and not (tmp_path / ".model.gguf.lock").exists()  # the killed holder's lock file too


def capped(limit_bytes: int):
    """`ulimit -f`: files of this process may not grow past `limit_bytes` (a write past it fails with EFBIG)."""
    import resource

    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["sft", "gen", "model export"])
def test_a_full_disk_ends_in_one_line_naming_the_path_and_the_room_needed(command, tmp_path, tiny_model_dir):
    from smolalign.data.loading import load_split

    from .conftest import REPO
    from .test_gen import TINY

    load_split(str(REPO / "data_gen" / "seeds" / "rewrite.jsonl"))  # the datasets cache, filled: the limit hits gen
    out = tmp_path / "out"
    argv, limit = {
        "sft": (["sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=2", "training.save_steps=1",
                 "training.report_to=[]", "training.eval_strategy=no"], 3_000_000),  # a checkpoint is ~10 MB
        "gen": (["gen", "smol-rewrite", "--backend", "transformers", "--model", tiny_model_dir, "--output", out,
                 "--num-rows", "2", *TINY], 4096),  # distilabel's own cache files are larger
        "model export": (["model", "export", tiny_model_dir, "--output", out.with_suffix(".gguf")], 100_000),
    }[command]
    result = subprocess.run([sys.executable, "-m", "smolalign.cli", *map(str, argv)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=capped(limit), timeout=900)
    assert result.returncode == 1, result.stderr[-3000:]
    line = one_error_line(result.stderr)
    named = out.with_suffix(".gguf") if command == "model export" else out
    assert line.startswith(f"error: could not write '{named}': the file size limit (ulimit -f) was reached"), line
    assert "files are limited to" in line and "then run again: smolalign " in line
    if command != "gen":  # what the run needs is known where it writes a model
        assert "the run needs about" in line
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name not in ("out",))
    assert leftovers == [], "a partial file or staging folder was left"
    if command == "gen":  # the same command completes once there is room: resumed where its record was written,
        # else afresh (the cap may cut the record itself, whose size follows tmp_path's length; no torn file is left)
        assert not [p.name for p in out.glob(".smolalign_run.json.*")]
        again = subprocess.run([sys.executable, "-m", "smolalign.cli", *map(str, argv)], capture_output=True,
                               text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert json.loads((out / "smolalign_run.json").read_text())["status"] == "complete"
    else:
        assert not out.exists() and not out.with_suffix(".gguf").exists()
