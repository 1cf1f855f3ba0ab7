"""How fast the CLI answers: `smolalign --help` and `smolalign sft --help` against `trl sft --help`.

Run by hand: `python bench/startup.py [--runs 5]`. Prints the machine, the median of several runs of each (after
one warm-up run, so that every side reads its files from a warm page cache) and the ratios, measured in this one
run (target: smolalign sft --help at most 0.1x of trl sft --help). `--tiny` (one run each) is for
tests/test_bench.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def median_seconds(command: list[str], runs: int) -> float:
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help="one run each: checks the bench runs")
    options = parser.parse_args(argv)
    runs = 1 if options.tiny else options.runs
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    smolalign = str(BIN / "smolalign") if (BIN / "smolalign").exists() else shutil.which("smolalign")
    trl = str(BIN / "trl") if (BIN / "trl").exists() else shutil.which("trl")
    results = {
        "smolalign --help": median_seconds([smolalign, "--help"], runs),
        "smolalign sft --help": median_seconds([smolalign, "sft", "--help"], runs),
        "trl sft --help": median_seconds([trl, "sft", "--help"], max(1, runs // 2)),
    }
    for name, seconds in results.items():
        print(f"{name:24s} {seconds:7.3f} s")
    reference = results["trl sft --help"]
    print(f"ratio smolalign --help / trl sft --help:     {results['smolalign --help'] / reference:.3f}x")
    print(f"ratio smolalign sft --help / trl sft --help: {results['smolalign sft --help'] / reference:.3f}x "
          f"(target <= 0.1x)")


if __name__ == "__main__":
    main()
