"""gen and eval against llama.cpp's Python server (`python -m llama_cpp.server`, llama-cpp-python's `server` extra),
started here on 127.0.0.1 serving the real SmolLM2-135M-Instruct GGUF, as a user would run it.

- The dialect probe finds `json_object` (the server refuses OpenAI's `json_schema` type), and the labels of
  smol-constraints and magpie-ultra are then decoded under their schema there: every row generated is labelled.
- IFEval through the server is greedy: smolalign's answers are the server's answers to requests that name every
  neutral setting by hand (without them, its default repeat_penalty 1.1 changes the answers), and the number of answers
  cut at the limit is within one of transformers' greedy on the same weights (llama.cpp's quantized dot products
  make token-for-token equality too much to ask).
One server for the module; token limits kept small for CI time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest

from .conftest import run_cli
from .test_gen import GEN_ENV, check_dataset
from .test_real_gen import read_rows

pytestmark = pytest.mark.slow  # a real server, the real model

# the neutral request a user would write by hand for llama.cpp's server: every sampling default switched off
BY_HAND = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "presence_penalty": 0.0,
           "frequency_penalty": 0.0}
IFEVAL_PROMPTS, IFEVAL_TOKENS = 8, 128


@pytest.fixture(scope="module")
def llama_server(real_gguf, tmp_path_factory):
    """`python -m llama_cpp.server --model FILE` on a free local port, the command the README gives."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] (the dev extra) is not installed")
    from smolalign.serve import free_port

    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(real_gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "4096", "--n_threads", "1"]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()[-2000:]
                time.sleep(0.5)
        yield {"url": url, "model": str(real_gguf)}
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_probe_finds_json_object_and_the_sampling_names(llama_server):
    from smolalign.servers import NEUTRAL, SEED, accepted_sampling, probe_dialect

    accepted = accepted_sampling(llama_server["url"], None, llama_server["model"])
    assert accepted == [*NEUTRAL, SEED], "llama-cpp-python's server ignores names it does not know"
    dialect, probed, seconds = probe_dialect(llama_server["url"], None, llama_server["model"], accepted)
    print(f"\nllama.cpp probe: {dialect} in {seconds} s: {probed}")
    assert dialect == "json_object", probed
    assert probed[0].startswith("json_schema: HTTP ") and probed[1].startswith("json_object: exact"), probed


@pytest.mark.parametrize("subset,rows_asked,tokens", [("smol-constraints", 2, 128), ("magpie-ultra", 2, 64)])
def test_labels_are_constrained_on_llama_cpp(llama_server, tmp_path, subset, rows_asked, tokens):
    """The shipped spec, its size shrunk as in test_real_gen: every row that came in has parsed labels."""
    out = tmp_path / subset
    started = time.monotonic()
    result = run_cli("gen", subset, "--backend", "openai", "--base-url", llama_server["url"], "--model",
                     llama_server["model"], "--output", out, "--num-rows", rows_asked, f"llm.max_new_tokens={tokens}",
                     env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    said = next(i for i, line in enumerate(lines) if "structured output" in line)  # before any row is asked for
    assert "structured output json_object" in lines[said] and not any("shard" in x for x in lines[:said]), lines
    _, counts = check_dataset(out, subset, rows_asked)
    print(f"\n{subset} on llama.cpp's server: kept {counts['kept']} of {rows_asked} in "
          f"{time.monotonic() - started:.0f} s; {json.dumps(counts)}")
    generator = json.loads((out / "smolalign_run.json").read_text())["generator"]
    assert generator["structured_output"] == "json_object"
    assert generator["server"]["sampling_sent"]["repeat_penalty"] == 1.0
    assert "Structured output: `json_object`" in (out / "README.md").read_text()
    assert counts["rows_in"] == rows_asked, counts
    if subset == "magpie-ultra":
        assert counts["labelled"] == counts["rows_in"], counts
        assert all(values["unlabelled"] == 0 for values in counts["labels"].values()), counts["labels"]
    else:
        assert "constraint labels not parseable" not in counts["filtered"], counts
    assert "constrains no JSON output" not in result.stderr


def _hand_written(url: str, model: str, prompt: str) -> tuple[str, bool]:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": IFEVAL_TOKENS, **BY_HAND}
    request = urllib.request.Request(f"{url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=600) as response:
        choice = json.load(response)["choices"][0]
    return choice["message"]["content"].strip(), choice["finish_reason"] == "length"


def _ifeval(tmp_path, name: str, *args) -> dict:
    out = tmp_path / name
    result = run_cli("eval", *args, "--tasks", "ifeval", "--limit", IFEVAL_PROMPTS, "--max-new-tokens",
                     IFEVAL_TOKENS, "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "eval.json").read_text())["ifeval"]  # every response, its settings


def test_ifeval_through_llama_cpp_is_greedy(llama_server, real_model, tmp_path):
    served = _ifeval(tmp_path, "server", llama_server["model"], "--backend", "openai", "--base-url",
                     llama_server["url"])
    sent = served["settings"]["sampling_sent"]
    assert all(sent[k] == v for k, v in BY_HAND.items()) and "seed" not in sent, sent
    assert served["settings"]["server"]["models"]["data"][0]["id"] == llama_server["model"]
    by_hand = [_hand_written(llama_server["url"], llama_server["model"], r["prompt"]) for r in served["responses"]]
    assert [(r["response"], r["truncated"]) for r in served["responses"]] == by_hand
    local = _ifeval(tmp_path, "transformers", real_model)
    print(f"\nIFEval {IFEVAL_PROMPTS} prompts at {IFEVAL_TOKENS} tokens, cut at the limit: llama.cpp server "
          f"{served['truncated']}, transformers {local['truncated']}")
    assert abs(served["truncated"] - local["truncated"]) <= 1, (served["truncated"], local["truncated"])
