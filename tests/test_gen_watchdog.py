"""A lost or stalled distilabel worker never hangs `smolalign gen`: faults injected into real pipelines by signalling
the real worker processes (kill -9 mid-shard, SIGSTOP for a stall), found through the files the workers register
(DIR/work/alive/<pipeline>/<step>.<pid>). The command ends with one line naming the step, the shard and the command
that continues; the committed shards stay as they were and the rerun settles every row exactly once. A pipeline that
is merely slow (the real 135M model, with a stall limit far below the time one batch takes) is not stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli
from .test_gen import GEN_ENV, check_dataset, committed, gen_model  # noqa: F401 (gen_model: a fixture)



def start(args: list, log: Path) -> subprocess.Popen:
    """The command in its own process group; its output goes to `log` (a pipe nobody reads could fill and block
    it)."""
    with open(log, "w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *map(str, args)],
                                   env={**os.environ, **GEN_ENV}, stdout=sink, stderr=sink, start_new_session=True)
    process.log = log
    return process


def worker(out: Path, pipeline: str, step: str, process: subprocess.Popen, busy: bool = False) -> int:
    """The pid of `step`'s worker in the pipeline whose name starts with `pipeline`, once it has registered (and,
    with `busy`, once its file has been touched since: it has generated tokens, the model is loaded)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert process.poll() is None, process.log.read_text()[-3000:]
        for path in (out / "work" / "alive").glob(f"{pipeline}*/{step}.*"):
            try:
                registered = path.stat().st_mtime_ns
                while busy and path.stat().st_mtime_ns == registered:
                    assert process.poll() is None and time.monotonic() < deadline
                    time.sleep(0.02)
            except FileNotFoundError:
                continue
            return int(path.name.rpartition(".")[2])
        time.sleep(0.02)
    raise AssertionError(f"{step} never registered in {pipeline}")


def finish(process: subprocess.Popen) -> tuple[int, str, float]:
    started = time.monotonic()
    process.wait(timeout=300)
    return process.returncode, process.log.read_text(), time.monotonic() - started


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def files_of(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.jsonl")}


STALL_SECONDS = 5


@pytest.fixture(scope="module")
def killed_then_rerun(real_model, tmp_path_factory) -> dict:
    """smol-rewrite with the real model, 4 rows in shards of 2, one row a batch: the answer step's worker of shard 2
    is killed with SIGKILL while it generates; then the same command again. Each batch (160 tokens of the real
    model on CPU) takes longer than the stall limit, so the runs also show that slow progress is not a stall."""
    out = tmp_path_factory.mktemp("watchdog") / "rewrite"
    args = ["gen", "smol-rewrite", "--backend", "transformers", "--model", real_model, "--output", out,
            "--num-rows", "4", "output.shard_size=2", "llm.batch_size=1", "llm.max_new_tokens=160",
            f"output.stall_seconds={STALL_SECONDS}", "filters.drop_truncated=false"]
    process = start(args, out.parent / "killed.log")
    pid = worker(out, "smol-rewrite-shard-00001", "answer", process, busy=True)
    shard_one = files_of(out / "work" / "shards")
    os.kill(pid, signal.SIGKILL)
    returncode, stderr, exit_seconds = finish(process)
    after_kill = files_of(out / "work" / "shards")
    rerun = run_cli(*args, env=GEN_ENV)
    return {"out": out, "pid": pid, "returncode": returncode, "stderr": stderr, "exit_seconds": exit_seconds,
            "shard_one": shard_one, "after_kill": after_kill, "rerun": rerun}


def batch_seconds(log: Path, step: str) -> list[int]:
    """How long each batch of `step` took, from distilabel's pipeline log (timestamps to the second)."""
    import datetime
    import re

    started, took = {}, []
    for line in log.read_text().splitlines():
        match = re.match(r"\[([\d-]+ [\d:]+)\].*?(Processing batch (\d+) in '(\w+)'|Step '(\w+)' sending batch (\d+))",
                         line)
        if not match:
            continue
        when = datetime.datetime.fromisoformat(match.group(1))
        if match.group(4) == step:
            started[match.group(3)] = when
        elif match.group(5) == step and match.group(6) in started:
            took.append(int((when - started[match.group(6)]).total_seconds()))
    return took


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_the_command_that_continues(killed_then_rerun):
    run = killed_then_rerun
    print(f"\nwatchdog: exit {run['exit_seconds']:.1f} s after kill -9 of the answer worker")
    assert run["returncode"] == 1
    line = one_error_line(run["stderr"])
    assert f"step 'answer' (pid {run['pid']}) died" in line and "smol-rewrite shard 2/2" in line, line
    assert "continue with: smolalign gen smol-rewrite" in line and "output.stall_seconds=5" in line, line
    assert run["exit_seconds"] < 60, "bounded: the watchdog looks every half second"
    assert run["shard_one"] and run["after_kill"] == run["shard_one"], "shard 1 committed and left as it was"


@pytest.mark.slow
def test_the_rerun_settles_every_row_once_and_a_slow_pipeline_is_not_stopped(killed_then_rerun):
    run = killed_then_rerun
    assert run["rerun"].returncode == 0, run["rerun"].stderr[-3000:]
    out = run["out"]
    rows, counts = check_dataset(out, "smol-rewrite", 4)  # each planned row settled exactly once
    assert counts["generated"] == 4 and sorted(r["gen_id"] for r in committed(out)) == [0, 1, 2, 3]
    assert all(files_of(out / "work" / "shards")[name] == v for name, v in run["shard_one"].items())
    took = batch_seconds(out / "work" / "logs" / "smol-rewrite-shard-00001-pass-1.log", "answer")
    print(f"answer batches took {took} s with output.stall_seconds={STALL_SECONDS}")
    assert len(took) == 2 and max(took) > STALL_SECONDS, "a batch slower than the stall limit ran to its end"


@pytest.mark.slow
def test_a_stalled_worker_ends_the_run(gen_model, tmp_path):  # noqa: F811
    """SIGSTOP freezes the Magpie worker: no token, no CPU. The run ends once output.stall_seconds pass."""
    out = tmp_path / "stalled"
    process = start(["gen", "magpie-ultra", "--backend", "transformers", "--model", gen_model, "--output", out,
                     "--num-rows", "4", "turns=1", "llm.batch_size=1", "llm.max_new_tokens=64",
                     "output.stall_seconds=3", "labels=null", "safety=null", "filters=null"], tmp_path / "log")
    pid = worker(out, "magpie-ultra-shard-00000", "magpie", process)
    os.kill(pid, signal.SIGSTOP)
    returncode, stderr, seconds = finish(process)
    assert returncode == 1
    line = one_error_line(stderr)
    assert "no step made progress for 3 s" in line and "magpie-ultra shard 1/1" in line, line
    assert seconds < 60
    with pytest.raises(ProcessLookupError):  # the watchdog killed its frozen worker
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_judge_worker_ends_the_quality_passes(gen_model, tmp_path):  # noqa: F811
    out = tmp_path / "judged"
    args = ["gen", "magpie-ultra", "--backend", "transformers", "--model", gen_model, "--output", out,
            "--num-rows", "2", "turns=1", "llm.batch_size=2", "llm.max_new_tokens=8", "filters=null"]
    process = start(args, tmp_path / "log")
    pid = worker(out, "magpie-ultra-quality-00000", "judge", process)
    rows_committed = files_of(out / "work" / "shards")
    os.kill(pid, signal.SIGKILL)
    returncode, stderr, _ = finish(process)
    assert returncode == 1
    line = one_error_line(stderr)
    assert f"step 'judge' (pid {pid}) died" in line and "quality passes, shard 1/1" in line, line
    assert files_of(out / "work" / "shards") == rows_committed and rows_committed
    again = run_cli(*args, env=GEN_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    counts = json.loads((out / "smolalign_run.json").read_text())["counts"]
    assert counts["rows_in"] == 2 and sum(counts["labels"]["difficulty"].values()) == 2


# ---------------------------------------------------------------- the watchdog alone, on real processes (fast)


def sleeper():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_a_registered_worker_that_dies_interrupts_the_blocked_main_thread(tmp_path):
    from smolalign.gen.watchdog import Watchdog, WorkerLost

    child = sleeper()
    (tmp_path / f"magpie.{child.pid}").touch()
    started = time.monotonic()
    with pytest.raises(WorkerLost, match=rf"step 'magpie' \(pid {child.pid}\) died"):
        with Watchdog(tmp_path, stall_seconds=60):
            child.kill()
            child.wait()
            time.sleep(60)  # blocked, as Pipeline.run is: the watchdog's signal ends the wait
    assert time.monotonic() - started < 30


def test_progress_not_wall_time_decides_a_stall(tmp_path):
    from smolalign.gen.watchdog import Watchdog, WorkerLost

    child = sleeper()  # alive, idle: no CPU
    beat = tmp_path / f"answer.{child.pid}"
    beat.touch()
    try:
        with Watchdog(tmp_path, stall_seconds=1):  # touched every 0.3 s for 4 s: progress all along
            for _ in range(13):
                time.sleep(0.3)
                os.utime(beat)
        with pytest.raises(WorkerLost, match="no step made progress for 1 s"):
            with Watchdog(tmp_path, stall_seconds=1):
                time.sleep(60)
    finally:
        child.kill()
        child.wait()
