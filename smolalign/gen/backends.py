"""Spec -> a distilabel LLM, and the checks that make a wrong backend fail in seconds, before anything is written.

- openai: any OpenAI-compatible server. Chat tasks go to /v1/chat/completions (distilabel's OpenAILLM); Magpie
  needs the raw /v1/completions route with the chat template rendered on the client (distilabel's ClientvLLM),
  because the model must continue a prompt that stops inside a user turn. The server is asked, with a short
  timeout, whether it answers, which models it serves, and whether the routes exist (a POST with a bad body: a
  server with the route refuses the body, one without it answers 404), so a dead server is an error now, not a hang.
  Then, once a run, what it speaks (servers.py): its JSON dialect for labels and the sampling names it takes.
- transformers: a local path or hub id, run in-process; every generation kwarg is passed explicitly, because
  distilabel's TransformersLLM would otherwise sample at temperature 0.1 with repetition penalty 1.1.
- vllm: in-process on a GPU, when the vllm package is installed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlparse

from ..errors import UsageError
from ..servers import Server, advice, describe, probe_dialect, request
from .prompts import pre_query, render_prompt


@dataclass
class Backend:
    """What the checks found out: the model the server serves, the tokenizer Magpie renders with."""

    kind: str
    model: str
    tokenizer: str | None
    base_url: str | None = None
    gguf: dict | None = None
    """The GGUF file the local model was imported from, and its sha256 (for the run record)."""
    server: Server | None = None
    """What the start of the run found out about the server (openai), shared by every check of the same server."""

    @property
    def dialect(self) -> str | None:
        """How the server constrains an answer to a JSON schema (probed, servers.py), or None: labels as free text."""
        return self.server.dialect if self.server is not None else None

    def record(self, llm=None) -> dict:
        """The run record's `generator`: the model, and for a server its identity, dialect and the sampling sent."""
        out = {"backend": self.kind, "model": self.model, "base_url": self.base_url, "gguf": self.gguf}
        if self.server is not None:
            out["server"] = self.server.record(*((llm.temperature, llm.top_p) if llm is not None else ()))
            out["structured_output"] = out["server"]["structured_output"]
        return out

    def describe(self) -> str | None:
        """The run's first line about a server: how labels are constrained there, the sampling names it takes."""
        if self.server is None:
            return None  # in-process: every label is decoded under its schema (structured.py)
        return (f"server {self.base_url} ({self.model}): structured output "
                f"{self.server.record()['structured_output']}; sampling names it takes: "
                f"{', '.join(self.server.accepted) or 'none'}")


def _probe(url: str, key: str | None, body: dict | None, base_url: str) -> tuple[int, str, dict]:
    try:
        return request(url, key, body)
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise UsageError(f"the server at {base_url} does not answer ({reason}): start it, or fix --base-url "
                         f"(e.g. http://127.0.0.1:8000/v1)") from None


def _is_local(url: str) -> bool:
    return (urlparse(url).hostname or "") in ("127.0.0.1", "localhost", "::1", "0.0.0.0")


def check_server(llm, routes: tuple[str, ...], structured: bool = False) -> Backend:
    base_url = (llm.base_url or os.environ.get("OPENAI_BASE_URL") or "").rstrip("/")
    if not base_url:
        raise UsageError("backend openai needs a server: pass --base-url http://HOST:PORT/v1 (or set OPENAI_BASE_URL)")
    if urlparse(base_url).scheme not in ("http", "https"):
        raise UsageError(f"--base-url {base_url} is not an http(s) URL: write e.g. http://127.0.0.1:8000/v1")
    key = os.environ.get(llm.api_key_env)
    if not key and not _is_local(base_url):
        raise UsageError(f"no API key for {base_url}: set {llm.api_key_env} in the environment")
    status, text, headers = _probe(f"{base_url}/models", key, None, base_url)
    if status in (401, 403):
        raise UsageError(f"the server at {base_url} refused the API key (HTTP {status}): set {llm.api_key_env}")
    if status != 200:
        from ..serve import no_models_route

        raise UsageError(no_models_route(base_url, status))
    try:
        served = [entry["id"] for entry in json.loads(text).get("data", [])]
    except (ValueError, AttributeError, KeyError, TypeError):
        raise UsageError(f"{base_url}/models did not answer like an OpenAI-compatible server: check --base-url") \
            from None
    model = llm.model
    if model is None:
        if len(served) != 1:
            listed = ", ".join(served[:10]) or "none"
            raise UsageError(f"the server at {base_url} serves {len(served)} models ({listed}): pick one with --model")
        model = served[0]
    elif served and model not in served:
        raise UsageError(f"the server at {base_url} does not serve '{model}' (it serves {', '.join(served[:10])}): "
                         f"fix --model")
    for route in routes:
        # a body the route refuses at once; not an empty one for /completions, where llama-cpp-python's server takes
        # the prompt to be "" and generates
        status, _, _ = _probe(f"{base_url}/{route}", key, {"max_tokens": "none"}, base_url)
        if status in (404, 405, 501):
            fix = ("Magpie continues a raw prompt that ends inside a user turn: serve the model with vLLM or "
                   "`transformers serve`, or use --backend transformers" if route == "completions"
                   else "use a server with the OpenAI chat API")
            raise UsageError(f"the server at {base_url} has no /{route} route (HTTP {status}): {fix}")
    from ..model.gguf import resolve_model

    tokenizer = resolve_model(llm.tokenizer or llm.model)[0]  # a GGUF file's tokenizer, imported, for Magpie
    server = _described(base_url, key, model, text, headers, structured, timeout=min(llm.timeout, 60))
    return Backend(kind="openai", model=model, tokenizer=tokenizer, base_url=base_url, server=server)


_DESCRIBED: dict = {}


def _described(base_url, key, model, models_text, headers, structured: bool, timeout: float) -> Server:
    """A server is asked once per run: the judge's check completes what the generator's found on the same server
    (Magpie's generator needs no labels, its judge does), in the same object, so both backends see the dialect."""
    known = _DESCRIBED.get((base_url, model))
    if known is None:
        known = _DESCRIBED[(base_url, model)] = describe(base_url, key, model, models_text, headers, structured,
                                                         timeout=timeout)
    elif structured and not known.probed:
        known.dialect, known.probed, known.probe_seconds = probe_dialect(base_url, key, model, known.accepted,
                                                                         budget=timeout)
    return known


def check_tokenizer(llm, name: str | None, magpie: bool) -> None:
    """The chat template must exist (every subset sends conversations); for Magpie, the pre-query string must open
    a user turn of that template, and the rendered prompt must end in it."""
    from ..model.load import load_tokenizer

    if name is None:
        raise UsageError("Magpie over a server renders the chat template here: set llm.tokenizer (or --model) to "
                         "the served model's tokenizer, a local path or hub id")
    tokenizer = load_tokenizer(name, trust_remote_code=llm.trust_remote_code)
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"tokenizer '{name}' has no chat template: give an instruct (chat) model's tokenizer")
    if magpie:
        query = pre_query(llm)
        opening = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
        if query.strip() not in opening:
            raise UsageError(f"llm.magpie_pre_query_template={llm.magpie_pre_query_template!r} does not open a user "
                             f"turn of this model's chat template: set it to the text before a user message")
        prompt = render_prompt(tokenizer, [{"role": "system", "content": "s"}], query)
        if not prompt.endswith(query) or prompt[: -len(query)].rstrip().endswith("assistant"):
            raise UsageError("the Magpie prompt would not end in a fresh user turn with this chat template: set "
                             "llm.magpie_pre_query_template to the exact text that opens a user turn")


def check_backend(llm, magpie: bool, chat: bool, structured: bool = False) -> Backend:
    """Everything about the LLM that can be checked without loading it; raises UsageError. `structured`: some
    answers must be JSON (labels), so ask a server whether it honours a schema."""
    if llm.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UsageError("backend vllm needs the vllm package (a GPU machine: pip install vllm): or use --backend "
                         "transformers, or serve the model and use --backend openai")
    if llm.backend == "openai":
        routes = (("completions",) if magpie else ()) + (("chat/completions",) if chat else ())
        backend = check_server(llm, routes, structured=structured and chat)
        if magpie:
            check_tokenizer(llm, backend.tokenizer, magpie=True)
        return backend
    from ..model.gguf import resolve_model
    from ..model.load import check_model_source

    check_model_source(llm.model)
    model, gguf = resolve_model(llm.model)  # distilabel loads directories: a GGUF file is imported first
    check_tokenizer(llm, llm.tokenizer or model, magpie)
    return Backend(kind=llm.backend, model=model, tokenizer=llm.tokenizer or model,
                   gguf=gguf.record() if gguf else None)


def generation_kwargs(llm, backend: str, temperature: float | None = None, max_new_tokens: int | None = None) -> dict:
    """Every kwarg the backend's generate takes, from the spec: nothing left to distilabel's defaults."""
    temperature = llm.temperature if temperature is None else temperature
    out = {"max_new_tokens": max_new_tokens or llm.max_new_tokens, "temperature": temperature, "top_p": llm.top_p}
    if backend == "transformers":
        out.update(top_k=llm.top_k, repetition_penalty=llm.repetition_penalty, do_sample=temperature > 0)
    elif backend == "vllm":
        out.update(top_k=llm.top_k or -1, repetition_penalty=llm.repetition_penalty)
    return out


def make_llm(llm, backend: Backend, magpie: bool, temperature: float | None = None,
             max_new_tokens: int | None = None):
    """A fresh distilabel LLM for one step (each step loads its own in its own process)."""
    from . import llms

    kwargs = generation_kwargs(llm, llm.backend, temperature, max_new_tokens)
    if llm.backend == "openai":
        accepted = list(backend.server.accepted) if backend.server is not None else []
        common = dict(model=backend.model, base_url=backend.base_url, api_key=None, api_key_env=llm.api_key_env,
                      max_retries=llm.max_retries, timeout=llm.timeout, generation_kwargs=kwargs,
                      sampling_names=accepted)
        if magpie:
            return llms.ServerMagpieLLM(tokenizer=backend.tokenizer, magpie_pre_query_template=pre_query(llm), **common)
        return llms.ServerChatLLM(dialect=backend.dialect, **common)
    local = dict(model=backend.model, tokenizer=llm.tokenizer, trust_remote_code=llm.trust_remote_code,
                 generation_kwargs=kwargs, magpie_pre_query_template=pre_query(llm))
    if llm.backend == "vllm":
        return llms.LocalvLLM(**local)
    return llms.LocalLLM(torch_dtype=llm.dtype, device=llm.device, token=None, **local)


# the drop reasons that mean a label did not parse (gen/subsets.py, gen/quality/filters.py)
UNPARSED = ("constraint labels not parseable", "unlabelled")


def label_advice(generator: dict, counts: dict) -> str | None:
    """The end-of-run message when the server constrains no JSON and labels did not parse, or None."""
    server = generator.get("server")
    if not server or server.get("dialect") or not server.get("probed"):
        return None
    dropped = sum(n for reason, n in (counts.get("filtered") or {}).items() if reason.endswith(UNPARSED))
    unlabelled = sum(values.get("unlabelled", 0) for values in (counts.get("labels") or {}).values()
                     if isinstance(values, dict))
    if not dropped and not unlabelled:
        return None
    return advice(server["base_url"], server["probed"])


def server_lines(generator: dict) -> str:
    """The dataset card's lines about a server: its dialect, the sampling each request sent, what it reported."""
    server = generator.get("server")
    if not server:
        return ""
    sent = json.dumps(server.get("sampling_sent") or {})
    identity = json.dumps(server.get("identity") or {})[:600]
    return (f"- Structured output: `{server['structured_output']}` (probed in order: "
            f"{'; '.join(server.get('probed') or []) or 'not needed'})\n"
            f"- Sampling sent with every request: `{sent}`\n"
            f"- Server: `{identity}`\n")
