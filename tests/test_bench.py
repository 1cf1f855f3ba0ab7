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

    parts = "smoke,attention,pretrain,sft,dpo,memory"  # the probe has its own test, below
    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(tmp_path), parts], capture_output=True,
                          text=True, cwd=REPO, timeout=1800, env={**os.environ, "TINY": "1", "PYTHON": sys.executable})
    summary = (tmp_path / "summary.txt").read_text()
    assert done.returncode == 0, summary + done.stdout[-3000:]
    parts = dict(line.split(": ", 1) for line in summary.splitlines())
    assert list(parts) == ["smoke", "attention", "pretrain", "sft", "dpo", "memory"], summary
    assert all(verdict.startswith("ok") for verdict in parts.values()), summary
    assert "smoke: 4 of 4 commands passed" in (tmp_path / "smoke.txt").read_text()


@pytest.mark.slow
def test_the_nan_probe_finds_an_injected_nan_and_names_its_backward_op():
    """bench/gpu_nan_probe.py's CPU mode with an injected fault (a NaN entering layer 2's attention backward): every
    case that runs here sees a finite loss, NaN gradients, layer 2 as the first non-finite layer from the top, and
    anomaly mode names the backward op the NaN left first."""
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_nan_probe.py"), "--tiny", "--inject-nan", "2"],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    cases = [line for line in done.stdout.splitlines() if " loss " in line]
    assert len(cases) >= 8, done.stdout  # cuDNN and memory-efficient sdpa have no CPU kernel: "not run here"
    for line in cases:
        loss = float(re.search(r"loss +(\S+)", line).group(1))
        assert loss == loss and "grad norm        nan" in line, line
        assert "first non-finite: model.layers.2 (q_proj, k_proj, v_proj" in line, line
    assert "eager attention, 8 rows            eager" in done.stdout
    assert re.search(r"anomaly mode, as failed: .*Function '\w+Backward\d*' returned nan", done.stdout), done.stdout


def test_the_gpu_bench_skips_a_part_its_budget_cannot_hold(tmp_path):
    """The parts share one budget (9 minutes on a GPU): a part with under 20 s of it left is skipped, not started."""
    import os

    done = subprocess.run(["bash", str(REPO / "bench" / "gpu.sh"), str(tmp_path), "probe,smoke"], capture_output=True,
                          text=True, cwd=REPO, timeout=600,
                          env={**os.environ, "TINY": "1", "BUDGET": "10", "PYTHON": sys.executable})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = (tmp_path / "summary.txt").read_text().splitlines()
    assert [line.split(": ")[0] for line in summary] == ["probe", "smoke"], summary
    assert all("SKIPPED" in line and "of the 10 s budget left" in line for line in summary), summary
    assert not (tmp_path / "probe.txt").exists()


@pytest.mark.slow
def test_the_stop_latency_bench_runs_in_tiny_mode():
    stdout = run_bench("stop_latency.py")
    lines = re.findall(r"^eval-openai\s+(SIGINT|SIGTERM)\s+([0-9.]+) s  exit (\d+)  (.*)$", stdout, flags=re.M)
    assert [(sig, int(code), last) for sig, _, code, last in lines] == [
        ("SIGINT", 130, "error: interrupted"), ("SIGTERM", 130, "error: interrupted")], stdout[-2000:]
