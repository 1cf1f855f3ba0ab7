"""`smolalign gen` generation throughput: rows/s batched against one row at a time, on the same backend and model.

What batching changes is the LLM call each distilabel batch makes, so this measures exactly that call
(`LLM.generate` of the LLM objects `gen` builds, via `smolalign.gen.backends.make_llm`) and leaves out the
pipeline's fixed start-up (~5 s a shard here), which does not depend on the batch size:
- transformers backend: one left-padded `generate` over `--batch` rows against one `generate` per row;
- openai backend (`--server`): `--batch` concurrent requests against one request at a time, on a real
  `transformers serve --continuous-batching` started here with the same model (without continuous batching that
  server answers one request at a time, so concurrency could not help).
Each side runs once to warm up, then `--reps` times interleaved; the median rows/s and the ratio (target >= 4x)
come from this one run.

Run by hand: `python bench/gen_throughput.py [--model DIR] [--rows 32] [--batch 16] [--max-new-tokens 32]
[--server]`; without `--model` it makes the `tiny` preset from the shipped tokenizer (random weights: rows are
gibberish, sampled to full length, which is what throughput needs). `--tiny` runs everything in seconds
(tests/test_gen_bench.py) and measures nothing worth quoting.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def tiny_model(where: Path) -> str:
    from smolalign.model.write import init_model

    out = where / "tiny-chat"
    init_model("tiny", str(REPO / "recipes" / "debug" / "tokenizer"), str(out), seed=0)
    config = json.loads((out / "generation_config.json").read_text())
    (out / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    return str(out)


def prompts(rows: int) -> list[list[dict]]:
    topics = ["a lighthouse", "tomatoes", "the bus", "a library", "rain", "a violin", "bread", "the moon"]
    return [[{"role": "user", "content": f"Write a short note {i} about {topics[i % len(topics)]}."}]
            for i in range(rows)]


def rows_per_second(llm, inputs: list, batch: int) -> float:
    start = time.perf_counter()
    for k in range(0, len(inputs), batch):
        outputs = llm.generate(inputs[k:k + batch], **llm.generation_kwargs)
        assert all(o["generations"][0] is not None for o in outputs)
    return len(inputs) / (time.perf_counter() - start)


def compare(llm, inputs: list, batch: int, reps: int) -> tuple[float, float]:
    """(batched, one at a time) median rows/s, warmed up and interleaved."""
    rows_per_second(llm, inputs[:batch], batch)
    rows_per_second(llm, inputs[:2], 1)
    batched, single = [], []
    for _ in range(reps):
        batched.append(rows_per_second(llm, inputs, batch))
        single.append(rows_per_second(llm, inputs, 1))
    return statistics.median(batched), statistics.median(single)


def llm_for(backend: str, model: str, max_new_tokens: int, base_url: str | None = None):
    from smolalign.gen.backends import Backend, make_llm
    from smolalign.gen.spec import LLMSection

    section = LLMSection(backend=backend, model=model, base_url=base_url, max_new_tokens=max_new_tokens,
                         temperature=1.0, top_p=1.0, max_retries=0)
    llm = make_llm(section, Backend(backend, model, model, base_url), magpie=False)
    llm.load()
    return llm


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [str(Path(sys.executable).parent / "transformers"), "serve", model, "--device", "cpu", "--host",
               "127.0.0.1", "--port", str(port), "--continuous-batching"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if process.poll() is not None:
                raise SystemExit("transformers serve exited before it answered")
            time.sleep(0.5)
    process.kill()
    raise SystemExit("transformers serve did not start")


def report(name: str, batched: float, single: float, batch: int) -> float:
    ratio = batched / single
    print(f"{name:<44} batched ({batch}) {batched:8.2f} rows/s   one at a time {single:8.2f} rows/s   "
          f"ratio {ratio:5.2f}x {'(target >= 4x met)' if ratio >= 4 else '(target >= 4x NOT met)'}")
    return ratio


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="model directory or hub id (default: a tiny model made here)")
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--server", action="store_true", help="also the openai backend on transformers serve")
    parser.add_argument("--tiny", action="store_true", help="seconds, for the test: measures nothing worth quoting")
    options = parser.parse_args(argv)
    if options.tiny:
        options.rows, options.batch, options.max_new_tokens, options.reps = 4, 4, 4, 1
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, python {platform.python_version()}, {platform.platform()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = options.model or tiny_model(Path(tmp))
        print(f"model: {options.model or 'tiny preset (random weights)'}; {options.rows} rows, "
              f"{options.max_new_tokens} new tokens, median of {options.reps}")
        inputs = prompts(options.rows)
        results = {}
        batched, single = compare(llm_for("transformers", model, options.max_new_tokens), inputs, options.batch,
                                  options.reps)
        results["transformers"] = report("transformers backend (one generate per batch)", batched, single,
                                         options.batch)
        if options.server:
            process, url = start_server(model)
            try:
                batched, single = compare(llm_for("openai", model, options.max_new_tokens, url), inputs,
                                          options.batch, options.reps)
                results["openai"] = report("openai backend (transformers serve, concurrent)", batched, single,
                                           options.batch)
            finally:
                process.terminate()
                process.wait(timeout=30)
    return results


if __name__ == "__main__":
    main()
