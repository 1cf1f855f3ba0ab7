"""Each benchmark in bench/ runs in its tiny mode, so that it cannot rot: it finishes and prints its ratios."""

import re
import subprocess
import sys

import pytest

from .conftest import REPO


def run_bench(name: str) -> str:
    done = subprocess.run([sys.executable, str(REPO / "bench" / name), "--tiny"], capture_output=True, text=True,
                          cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def ratios(stdout: str) -> dict[str, float]:
    found = re.findall(r"^ratio (.+?):\s+([0-9.]+)x", stdout, flags=re.M)
    return {name.strip(): float(value) for name, value in found}


@pytest.mark.parametrize("name, expected", [
    ("sft_throughput.py", ["smolalign packed / TRL best CPU setting", "smolalign unpacked / TRL unpacked (same)",
                           "packed / unpacked at equal tokens a step", "best of each",
                           "per-document attention / 4-D mask, smolalign packed",
                           "smolalign packed / TRL packed (padding-free)"]),
    ("startup.py", ["smolalign sft --help / trl sft --help"]),
    ("eval_throughput.py", ["smolalign eval / fixed batches", "smolalign eval / lm-eval best"]),
])
def test_bench_runs_in_tiny_mode(name, expected):
    stdout = run_bench(name)
    assert stdout.startswith("machine: "), stdout[:500]
    found = ratios(stdout)
    assert set(expected) <= set(found), stdout[-2000:]
    assert all(value > 0 for value in found.values()), found


@pytest.mark.slow
def test_the_gpu_bench_runs_every_part_in_its_cpu_mode(tmp_path):
    """bench/gpu.sh is run on a lent GPU with minutes to spare: each part's script must not first break there. The
    H200's first run found three that had rotted since their CPU modes last ran (a changed call, short rows, an
    in-memory model TRL could not load a reference for)."""
    import os

    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO, timeout=1800, env={**os.environ, "TINY": "1", "PYTHON": sys.executable})
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stdout[-3000:]
    parts = dict(line.split(": ", 1) for line in summary.splitlines())
    assert list(parts) == ["smoke", "attention", "pretrain", "sft", "dpo", "memory"], summary
    assert all(verdict.startswith("ok") for verdict in parts.values()), summary
    assert "smoke: 4 of 4 commands passed" in (tmp_path / "smoke.txt").read_text()
