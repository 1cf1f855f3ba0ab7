"""bench/gen_throughput.py in its tiny mode (both backends), so the benchmark cannot rot."""

import importlib.util

import pytest

from .conftest import REPO


@pytest.mark.slow  # real pipelines and a real server
def test_gen_throughput_bench_runs_in_tiny_mode(capsys):
    spec = importlib.util.spec_from_file_location("gen_throughput", REPO / "bench" / "gen_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ratios = bench.main(["--tiny", "--server"])
    printed = capsys.readouterr().out
    assert set(ratios) == {"transformers", "openai"} and all(r > 0 for r in ratios.values())
    assert "machine:" in printed and printed.count("rows/s") == 4 and "ratio" in printed
