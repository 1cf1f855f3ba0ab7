"""How long a command takes to end after ctrl-C (SIGINT to its process group, as a terminal sends it) or SIGTERM (to
the process, as `kill` and schedulers send it): issue 31's target is 5 s everywhere, with one `error:` line.

Run by hand: `python bench/stop_latency.py [--only NAME]`. Each case starts a real `smolalign` process, waits until
it is deep in its work, sends the signal and times the exit:
- tokenizer-train: BPE on a large corpus (the Rust trainer runs no Python while it merges);
- gen: smol-rewrite with a tiny model, as the second shard's worker starts (distilabel's own stop waited for the
  batches in flight: 62 s in the issue's case);
- eval-openai: IFEval against a local server that never answers (the requests in flight were waited for);
- sft: debug SFT mid-training.
Prints the machine, then per case and signal: seconds to exit, the exit code, the last line. `--tiny` runs the
eval-openai case only (for tests/test_bench.py).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class _Silent(http.server.BaseHTTPRequestHandler):
    """Lists one model, then never answers a request: a server stuck on a long generation."""

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        body = json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        time.sleep(600)


def wait_for(condition, process, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def tiny_model(root: Path) -> Path:
    from smolalign.model.write import init_model

    model = root / "tiny-chat"
    init_model("tiny", str(REPO / "recipes" / "debug" / "tokenizer"), str(model), seed=0)
    return model


def tokenizer_case(root: Path):
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 12)))
             for _ in range(2 ** 17)]
    corpus = root / "big.txt"
    corpus.write_text("".join(" ".join(rng.choice(words) for _ in range(20)) + "\n" for _ in range(60_000)))
    return (["tokenizer", "train", "--corpus", corpus, "--vocab-size", 30000, "--output", root / "tok"],
            lambda started: time.monotonic() - started > 12)


def gen_case(root: Path):
    out = root / "gen"
    return (["gen", "smol-rewrite", "--backend", "transformers", "--model", tiny_model(root), "--output", out,
             "--num-rows", 4, "output.shard_size=2", "llm.batch_size=1", "llm.max_new_tokens=400",
             "filters.drop_truncated=false"],
            lambda started: bool(list((out / "work" / "alive").glob("*shard-00001*/*"))))


def eval_case(root: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = root / "eval"
    return (["eval", "m", "--backend", "openai", "--base-url", f"http://127.0.0.1:{server.server_address[1]}/v1",
             "--tasks", "ifeval", "--limit", 2, "--output", out],
            lambda started: (out / "ifeval-responses.jsonl").exists() or time.monotonic() - started > 20)


def sft_case(root: Path):
    out = root / "sft"
    return (["sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=2000", "training.report_to=[]",
             "training.logging_steps=1"], lambda started: (out / "metrics.jsonl").is_file())


# name -> its case: (argv, a test that the process is deep in its work)
CASES = {"tokenizer-train": tokenizer_case, "gen": gen_case, "eval-openai": eval_case, "sft": sft_case}


def measure(argv: list, deep, sig: int, root: Path) -> tuple[float, int, str]:
    for leftover in ("tok", "gen", "eval", "sft"):
        shutil.rmtree(root / leftover, ignore_errors=True)
    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *map(str, argv)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    started = time.monotonic()
    wait_for(lambda: deep(started), process)
    sent = time.monotonic()
    if sig == signal.SIGINT:
        os.killpg(process.pid, sig)  # the whole foreground group, as a terminal's ctrl-C
    else:
        process.send_signal(sig)
    _, stderr = process.communicate(timeout=600)
    seconds = time.monotonic() - sent
    with_content = [line for line in stderr.splitlines() if line.strip()]
    return seconds, process.returncode, with_content[-1] if with_content else ""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default=None, choices=list(CASES), help="one case")
    parser.add_argument("--tiny", action="store_true", help="the eval-openai case only: checks the bench runs")
    options = parser.parse_args(argv)
    only = "eval-openai" if options.tiny else options.only
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")
    root = Path(tempfile.mkdtemp(prefix="smolalign-stop-"))
    try:
        for name, case in CASES.items():
            if only and name != only:
                continue
            args, deep = case(root)
            for sig in (signal.SIGINT, signal.SIGTERM):
                seconds, code, last = measure(args, deep, sig, root)
                print(f"{name:16s} {signal.Signals(sig).name:8s} {seconds:6.1f} s  exit {code}  {last[:90]}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
