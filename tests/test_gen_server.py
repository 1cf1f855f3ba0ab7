"""`smolalign gen --backend openai` against a real `transformers serve` started here with a tiny model: chat tasks over
/v1/chat/completions, Magpie over /v1/completions with the prompt rendered on the client; injected HTTP faults;
SIGKILL in the middle of a run, then the same command again; a server that lacks the completions route.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .conftest import REPO, assert_user_error, run_cli

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"
GEN_ENV = {"OMP_NUM_THREADS": "1"}
pytestmark = pytest.mark.slow  # a real server, real pipelines


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real OpenAI-compatible server: `transformers serve` with a tiny chat model, on 127.0.0.1."""
    from smolalign.model.write import init_model
    from smolalign.serve import local_server

    model = tmp_path_factory.mktemp("served") / "tiny-chat"
    init_model("tiny", str(TOKENIZER), str(model), seed=0)
    config = json.loads((model / "generation_config.json").read_text())
    (model / "generation_config.json").write_text(json.dumps({**config, "do_sample": True}))
    with local_server(model, tmp_path_factory.mktemp("serve-log") / "serve.log") as base_url:
        yield {"url": base_url.removesuffix("/v1"), "model": str(model)}


class FaultProxy(ThreadingHTTPServer):
    """A FAKE, for injected faults only: an HTTP proxy in front of the real server that forwards every request,
    logs each one (path and JSON body), and (when `fail_share` > 0) fails that share of distinct requests with
    HTTP 500, then 429 (with Retry-After), on their first `fail_times` attempts. It can also hide routes (404) and slow
    every answer down (`delay`), so a test can kill a run in the middle."""

    daemon_threads = True

    def __init__(self, upstream: str, fail_share=0.0, fail_times=2, hide=(), delay=0.0):
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream, self.fail_share, self.fail_times = upstream, fail_share, fail_times
        self.hide, self.delay = hide, delay
        self.log: list[dict] = []
        self.attempts: Counter = Counter()
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def faulty(self, body: bytes) -> int | None:
        """Which requests fail is decided by their last message alone, so it is the same in every session; the
        first attempt gets 500, the next 429."""
        try:
            messages = json.loads(body).get("messages") or [{"content": json.loads(body).get("prompt", "")}]
        except (ValueError, AttributeError):
            return None
        key = messages[-1]["content"]
        if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 1000 < self.fail_share * 1000:
            with self.lock:
                self.attempts[key] += 1
                if self.attempts[key] <= self.fail_times:
                    return 500 if self.attempts[key] % 2 else 429
        return None


class _ProxyHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _answer(self, status: int, body: bytes, headers=()) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, method: str) -> None:
        proxy: FaultProxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        entry = {"path": self.path, "body": json.loads(body) if body else None, "status": None}
        with proxy.lock:
            proxy.log.append(entry)
        if any(self.path.startswith(f"/v1/{route}") for route in proxy.hide):
            entry["status"] = 404
            return self._answer(404, b'{"detail": "Not Found"}')
        fault = proxy.faulty(body)
        if fault:
            entry["status"] = fault
            extra = [("Retry-After", "1")] if fault == 429 else []
            return self._answer(fault, json.dumps({"error": {"message": "injected fault"}}).encode(), extra)
        time.sleep(proxy.delay)
        request = urllib.request.Request(proxy.upstream + self.path, data=body or None, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, payload = error.code, error.read()
        entry["status"] = status
        self._answer(status, payload, [("Content-Type", "application/json")])

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture
def proxy(server):
    made = []

    def make(**kwargs) -> FaultProxy:
        made.append(FaultProxy(server["url"], **kwargs))
        return made[-1]

    yield make
    for p in made:
        p.shutdown()
        p.server_close()


def gen_args(subset, server, url, out, *extra):
    return ["gen", subset, "--backend", "openai", "--base-url", url, "--model", server["model"], "--output", out,
            "llm.max_new_tokens=8", "llm.temperature=1.0", "filters.drop_truncated=false", *extra]


def final_ids(out: Path) -> Counter:
    import datasets

    return Counter(datasets.load_dataset(str(out), split="train")["gen_id"])


def test_chat_and_magpie_over_a_real_server(server, proxy, tmp_path):
    logged = proxy()
    out = tmp_path / "magpie"
    result = run_cli(*gen_args("magpie-ultra", server, logged.url, out, "--num-rows", "2", "turns=2",
                               "llm.batch_size=2"), env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    completions = [e["body"] for e in logged.log if e["path"] == "/v1/completions" and "prompt" in (e["body"] or {})]
    assert len(completions) >= 2 * 2 * 2, "two rows, two exchanges, a user and an assistant turn each"
    for body in completions:
        assert body["model"] == server["model"]
        prompt = body["prompt"]
        assert prompt.endswith(("<|im_start|>user\n", "<|im_start|>assistant\n"))
        assert "<|im_start|>assistant\n<|im_start|>user" not in prompt, "no empty assistant header before a user turn"
    assert any(b["prompt"].startswith("<|im_start|>system\n") and b["prompt"].endswith("user\n") for b in completions)
    assert json.loads((out / "smolalign_run.json").read_text())["counts"]["generated"] >= 1

    chat = tmp_path / "rewrite"
    result = run_cli(*gen_args("smol-rewrite", server, logged.url, chat, "--num-rows", "3"), env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert final_ids(chat) == Counter(range(3))
    # the rewrite's own requests (a system prompt first), not the magpie run's judge labelling its rows
    sent = row_requests(logged.log)
    # three rows (one more request each for an answer that came back empty and was asked again)
    assert len(sent) >= 3 and all(b["temperature"] == 1.0 and b["top_p"] == 0.95 for b in sent)


def test_injected_faults_every_row_exactly_once(server, proxy, tmp_path):
    faulty = proxy(fail_share=0.2, fail_times=2)
    out = tmp_path / "faults"
    # one client retry: a faulty request fails twice, so its batch is voided and asked again in pass 2
    result = run_cli(*gen_args("smol-rewrite", server, faulty.url, out, "--num-rows", "12", "llm.batch_size=4",
                               "output.shard_size=6", "llm.max_retries=1"), env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses = Counter(e["status"] for e in faulty.log if e["path"] == "/v1/chat/completions")
    assert statuses[500] and statuses[429], statuses
    assert list((out / "work" / "shards").glob("*.pass-2.jsonl")), "voided batches were asked again"
    first = [json.loads(line) for p in (out / "work" / "shards").glob("*.pass-1.jsonl")
             for line in p.read_text().splitlines()]
    assert any(r["status"] == "failed" and "injected fault" in r["reason"] for r in first), "a failed try says why"
    assert final_ids(out) == Counter(range(12)), "every requested row, exactly once"
    counts = json.loads((out / "smolalign_run.json").read_text())["counts"]
    assert counts["failed"] == 0 and counts["kept"] == 12


def row_requests(log: list[dict]) -> list[dict]:
    """The chat requests for rows (a system prompt first), not the checks' probes at the start of a run."""
    return [e["body"] for e in log if e["path"] == "/v1/chat/completions" and e["body"]
            and (e["body"].get("messages") or [{}])[0].get("role") == "system"]


def _user_texts(entries) -> list[tuple[str, str]]:
    return [(b["messages"][0]["content"], b["messages"][1]["content"]) for b in entries]


def start_slow_rewrite(server, slow, out, shard_size: int, stderr=subprocess.DEVNULL):
    """12 smol-rewrite rows through a slowed proxy, in a process group of its own (signals reach every worker)."""
    args = gen_args("smol-rewrite", server, slow.url, out, "--num-rows", "12", "llm.batch_size=2",
                    f"output.shard_size={shard_size}")
    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *map(str, args)], stdout=subprocess.DEVNULL,
                               stderr=stderr, text=True, env={**os.environ, **GEN_ENV}, start_new_session=True)
    return args, process


def test_sigkill_then_rerun_asks_nothing_again(server, proxy, tmp_path):
    slow = proxy(delay=0.4)
    out = tmp_path / "killed"
    args, process = start_slow_rewrite(server, slow, out, shard_size=3)
    shards = out / "work" / "shards"
    deadline = time.monotonic() + 900
    while not list(shards.glob("shard-00001.*")):  # two shards of three committed, two to go
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the whole process group: the CLI and distilabel's workers
    process.wait()
    done = {}
    for path in shards.glob("shard-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["status"] == "ok":
                done[record["gen_id"]] = record["rows"][0]["messages"]
    assert done and len(done) < 12, f"killed mid-run: {len(done)} rows committed"
    asked_before = len(slow.log)

    again = run_cli(*args, env=GEN_ENV)
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = row_requests(slow.log[asked_before:])
    committed = {(m[0]["content"], m[1]["content"]) for m in done.values()}
    assert not committed & set(_user_texts(rerun)), "a committed row was asked again"
    assert len(rerun) >= 12 - len(done)
    assert final_ids(out) == Counter(range(12)), "every requested row, exactly once"


def test_ctrl_c_stops_the_run_and_counts_no_unfinished_row_as_failed(server, proxy, tmp_path):
    slow = proxy(delay=0.4)
    out = tmp_path / "interrupted"
    _, process = start_slow_rewrite(server, slow, out, shard_size=6, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 900
    while not row_requests(slow.log):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be stopped"
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
    _, stderr = process.communicate(timeout=1200)
    assert process.returncode == 130 and "interrupted" in stderr, stderr[-2000:]
    records = [json.loads(line) for p in (out / "work" / "shards").glob("*.jsonl")
               for line in p.read_text().splitlines()]
    assert len(records) < 12 and all(r["status"] != "failed" for r in records), "no row cut short counts as a try"


def test_no_dialect_on_transformers_serve_and_the_schema_goes_in_the_dialect_given(server, proxy):
    """`transformers serve` ignores `response_format` (it logs a warning) and refuses fields it does not know: the
    probe tries every dialect and finds none, and the sampling names it refuses are left out. The client sends the
    schema in the dialect it is given, the neutral settings the server takes, and every answer its truncated flag."""
    from smolalign.gen.llms import ServerChatLLM
    from smolalign.servers import DIALECTS, accepted_sampling, constrained, probe_dialect

    logged = proxy()
    accepted = accepted_sampling(logged.url, None, server["model"])
    assert "repeat_penalty" not in accepted and "frequency_penalty" in accepted, accepted
    dialect, probed, _ = probe_dialect(logged.url, None, server["model"], accepted, budget=300)
    assert dialect is None and [line.split(":")[0] for line in probed] == list(DIALECTS), probed
    schema = {"type": "object", "properties": {"ok": {"enum": ["yes"]}}, "required": ["ok"]}
    flags = []
    before = len(logged.log)
    for dialect in (None, "json_object"):
        llm = ServerChatLLM(model=server["model"], base_url=logged.url, api_key=None, dialect=dialect,
                            sampling_names=accepted)
        llm.load()
        output = llm.generate([([{"role": "user", "content": "Say yes."}], schema)], max_new_tokens=4,
                              temperature=0.0)[0]
        flags.append(output["truncated"])
    sent = [e["body"] for e in logged.log[before:] if e["path"] == "/v1/chat/completions"]
    assert [b.get("response_format") for b in sent] == [None, constrained("json_object", schema)["response_format"]]
    assert all(b["temperature"] == 0.0 and b["frequency_penalty"] == 0.0 and "repeat_penalty" not in b
               for b in sent), sent
    assert flags == [[True], [True]], "4 tokens of a tiny model's answer: finish reason length"


def test_server_without_the_completions_route(server, proxy, tmp_path):
    chat_only = proxy(hide=("completions",))
    out = tmp_path / "o"
    result = run_cli(*gen_args("magpie-ultra", server, chat_only.url, out, "--num-rows", "2"), env=GEN_ENV)
    assert_user_error(result)
    assert "no /completions route" in result.stderr and not out.exists()
    wrong = run_cli(*gen_args("smol-rewrite", server, server["url"] + "/v1", out, "--model", "other"), env=GEN_ENV)
    assert_user_error(wrong)
    assert "does not serve 'other'" in wrong.stderr and not out.exists()


def test_labels_without_a_dialect_say_why_and_keep_the_raw_answers(server, tmp_path):
    """`transformers serve` constrains no JSON: the run names "none" from its first line on, a tiny model's free-text
    labels do not parse, and the end of the run says why and what to do, with each raw answer kept in rejected/."""
    import pyarrow.parquet as pq

    out = tmp_path / "constraints"
    result = run_cli(*gen_args("smol-constraints", server, server["url"] + "/v1", out, "--num-rows", "2",
                               "label.max_new_tokens=12"), env=GEN_ENV)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "structured output none: labels as free text" in result.stderr.splitlines()[0], result.stderr[:500]
    generator = json.loads((out / "smolalign_run.json").read_text())["generator"]
    assert generator["structured_output"] == "none: labels as free text"
    assert [line.split(":")[0] for line in generator["server"]["probed"]] == [
        "json_schema", "json_object", "json_value", "guided_json"]
    counts = json.loads((out / "smolalign_run.json").read_text())["counts"]
    assert counts["filtered"].get("constraint labels not parseable"), counts
    assert (f"the server at {server['url']}/v1 constrains no JSON output (probed: json_schema: " in result.stderr
            and "use a server that does (vLLM, llama.cpp), `--backend transformers`, or a larger judge"
            in result.stderr), result.stderr[-2000:]
    rejected = pq.read_table(out / "rejected" / "train-00000-of-00001.parquet").to_pylist()
    unparsed = [r for r in rejected if r["rejected_reason"] == "constraint labels not parseable"]
    assert unparsed and all(r["raw_labels"] for r in unparsed), "what the labeller said, kept to be read"
    assert "Structured output: `none: labels as free text`" in (out / "README.md").read_text()
