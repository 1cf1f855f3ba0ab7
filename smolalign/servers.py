"""What an OpenAI-compatible server speaks beyond the common API, found out once at the start of a run: which request
form constrains an answer to a JSON schema (its dialect), which sampling settings it takes, and what it says it is.

Servers spell the same things differently, and each has its own defaults for what a request leaves out:
- JSON under a schema. `json_schema`: OpenAI's `response_format: {"type": "json_schema", "json_schema": {name,
  schema, strict}}` (vLLM, llama.cpp's llama-server, Ollama, SGLang). `json_object`: `response_format: {"type":
  "json_object", "schema": S}` (llama.cpp's llama-server and llama-cpp-python's server, whose request type takes only
  "text" or "json_object"). `json_value`: `response_format: {"type": "json", "value": S}` (TGI's grammar type, alias
  json_object). `guided_json`: `guided_json: S` in the body (vLLM before 0.12). `transformers serve` ignores
  `response_format` (it logs a warning): no dialect there, and labels go as free text.
- Sampling. llama-cpp-python's server applies `repeat_penalty` 1.1, `top_k` 40 and `min_p` 0.05 to a request that
  does not name them, so "temperature 0" alone is not transformers' greedy. Every request here names every setting a
  server might default (`NEUTRAL`, in each server's own names), and the seed where it samples. A server that refuses
  a name it does not know (`transformers serve` answers 422 to an unexpected field; TGI refuses `top_k` 0) is asked
  once per name at the start, and that name is left out of its requests.

Plain HTTP through the standard library; every request is bounded by a timeout, and the dialect probe as a whole by
a budget, so a hanging server costs seconds, not the run.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field

PROBE_SECONDS = 5.0
DIALECTS = ("json_schema", "json_object", "json_value", "guided_json")
NONE = "none: labels as free text"
NOT_ASKED = "not probed: the run has no labels"
# the settings a server may default, at the values that switch them off: OpenAI's own penalties, llama.cpp's
# repeat_penalty, vLLM's / SGLang's / TGI's repetition_penalty, top_k (0: every token, llama.cpp and vLLM) and min_p
NEUTRAL = {"presence_penalty": 0.0, "frequency_penalty": 0.0, "repeat_penalty": 1.0, "repetition_penalty": 1.0,
           "top_k": 0, "min_p": 0.0}
SEED = "seed"
# the probe's question: under this schema the only valid answer is {"answer": "ok"}; a server that ignores the
# constraint answers a greeting in words
PROBE_SCHEMA = {"type": "object", "properties": {"answer": {"const": "ok"}}, "required": ["answer"],
                "additionalProperties": False}
PROBE_MESSAGES = [{"role": "user", "content": "Say hello."}]
PROBE_TOKENS = 24


def request(url: str, key: str | None, body: dict | None = None, timeout: float = PROBE_SECONDS):
    """(HTTP status, body text, headers) of one GET (body None) or POST; raises URLError/OSError when nothing
    answers."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read(200_000).decode("utf-8", "replace"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(2_000).decode("utf-8", "replace"), dict(error.headers or {})


def constrained(dialect: str | None, schema: dict, name: str = "answer") -> dict:
    """The request fields that constrain the answer to `schema` in `dialect` ({} for none)."""
    if dialect == "json_schema":
        return {"response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": schema,
                                                                           "strict": True}}}
    if dialect == "json_object":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if dialect == "json_value":
        return {"response_format": {"type": "json", "value": schema}}
    if dialect == "guided_json":
        return {"guided_json": schema}
    return {}


def sampling(temperature: float, top_p: float, accepted, seed: int | None = None) -> dict:
    """The sampling fields of one request: the spec's temperature and top_p, every neutral setting the server takes,
    and the seed when it samples (temperature > 0)."""
    body = {"temperature": temperature, "top_p": top_p}
    body.update({name: value for name, value in NEUTRAL.items() if name in accepted})
    if temperature > 0 and seed is not None and SEED in accepted:
        body[SEED] = seed
    return body


@dataclass
class Server:
    """What the start of a run found out about one server, for its requests and the run's records."""

    base_url: str
    model: str
    identity: dict = field(default_factory=dict)
    """Its /models answer, its Server header, and the version endpoint that answered (if any)."""
    accepted: list[str] = field(default_factory=list)
    """The neutral sampling names (and `seed`) it takes; the others are left out of its requests."""
    dialect: str | None = None
    probed: list[str] = field(default_factory=list)
    """Each dialect tried, in order, and what came back."""
    probe_seconds: float | None = None

    def record(self, temperature: float | None = None, top_p: float | None = None) -> dict:
        out = asdict(self)
        out["structured_output"] = self.dialect or (NONE if self.probed else NOT_ASKED)
        if temperature is not None:
            out["sampling_sent"] = sampling(temperature, top_p, self.accepted, seed=0 if temperature > 0 else None)
            if SEED in out["sampling_sent"]:
                out["sampling_sent"][SEED] = "per request"
        return out


def _root(base_url: str) -> str:
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


def _stable(value):
    """An answer without the fields that change from one request to the next (vLLM's `created` is the time of the
    request), so that a record compares equal across restarts of the same server."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in ("created", "permission", "permissions")}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    return value


# where servers report what they are: vLLM /version, TGI /info, llama-server /props, Ollama /api/version
VERSION_ROUTES = ("/version", "/info", "/props", "/api/version")
VERSION_KEYS = ("version", "model_id", "model_sha", "model_dtype", "build_info", "model_path", "router",
                "sha", "docker_label")


def identify(base_url: str, key: str | None, models_text: str, headers: dict) -> dict:
    """The server's identity as it reports it: /models, the HTTP Server header, a version route's scalar fields."""
    try:
        models = _stable(json.loads(models_text))
    except ValueError:
        models = models_text[:500]
    out = {"models": models, "server_header": headers.get("server") or headers.get("Server")}
    for route in VERSION_ROUTES:
        try:
            status, text, _ = request(_root(base_url) + route, key, timeout=2.0)
            answer = json.loads(text) if status == 200 else None
        except (urllib.error.URLError, OSError, ValueError):
            continue
        if isinstance(answer, dict):
            found = {k: v for k, v in answer.items() if k in VERSION_KEYS and not isinstance(v, (dict, list))}
            if found:
                out["version"] = {"route": route, **found}
                break
    return out


def _chat(base_url: str, key: str | None, body: dict, timeout: float):
    return request(f"{base_url}/chat/completions", key, body, timeout=timeout)


def accepted_sampling(base_url: str, key: str | None, model: str, timeout: float = 60.0) -> list[str]:
    """The neutral names (and `seed`) the server takes without refusing the request: one 1-token request with all of
    them; when that is refused (4xx), one request per name."""
    base = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": 1, "temperature": 0}
    names = [*NEUTRAL, SEED]
    values = {**NEUTRAL, SEED: 0}
    try:
        status, _, _ = _chat(base_url, key, {**base, **values}, timeout)
        if status < 400:
            return names
        return [n for n in names if _chat(base_url, key, {**base, n: values[n]}, timeout)[0] < 400]
    except (urllib.error.URLError, OSError):
        return []  # a server too slow for one token: its own defaults stand, and the record says none was sent


def probe_dialect(base_url: str, key: str | None, model: str, accepted, budget: float = 60.0):
    """(dialect or None, what each try gave, seconds): the dialects in `DIALECTS` order, each asked the probe's
    question under its constraint; the first that answers exactly {"answer": "ok"} wins. The whole probe stops at
    `budget` seconds: a server that hangs is treated as constraining nothing."""
    started = time.monotonic()
    probed, hung = [], False
    for dialect in DIALECTS:
        left = budget - (time.monotonic() - started)
        if hung or left <= 0:
            why = "the server hung" if hung else f"{budget:.0f} s probe budget spent"
            probed.append(f"{dialect}: not tried ({why})")
            continue
        body = {"model": model, "messages": PROBE_MESSAGES, "max_tokens": PROBE_TOKENS,
                **sampling(0.0, 1.0, accepted), **constrained(dialect, PROBE_SCHEMA, name="probe")}
        try:
            status, text, _ = _chat(base_url, key, body, timeout=left)
        except (urllib.error.URLError, OSError) as error:
            probed.append(f"{dialect}: no answer within {left:.0f} s ({getattr(error, 'reason', error)})")
            hung = True  # a hanging server: ask it nothing more
            continue
        if status != 200:
            probed.append(f"{dialect}: HTTP {status}")
            continue
        try:
            answer = json.loads(text)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            probed.append(f"{dialect}: no chat answer")
            continue
        try:
            exact = json.loads(answer) == {"answer": "ok"}
        except (ValueError, TypeError):
            exact = False
        probed.append(f"{dialect}: {'exact' if exact else 'ignored, answered'} {str(answer)[:60]!r}")
        if exact:
            return dialect, probed, round(time.monotonic() - started, 2)
    return None, probed, round(time.monotonic() - started, 2)


def describe(base_url: str, key: str | None, model: str, models_text: str, headers: dict, structured: bool,
             timeout: float = 60.0) -> Server:
    """Everything the start of a run asks a server: identity, the sampling names it takes, and (when some answers
    must be JSON) its dialect."""
    server = Server(base_url=base_url, model=model, identity=identify(base_url, key, models_text, headers))
    server.accepted = accepted_sampling(base_url, key, model, timeout=timeout)
    if structured:
        server.dialect, server.probed, server.probe_seconds = probe_dialect(base_url, key, model, server.accepted,
                                                                            budget=timeout)
    return server


def advice(base_url: str, probed: list[str]) -> str:
    """The end-of-run message when no dialect worked and labels did not parse."""
    tried = "; ".join(probed) or "nothing"
    return (f"the server at {base_url} constrains no JSON output (probed: {tried}): a small judge's labels rarely "
            f"parse; use a server that does (vLLM, llama.cpp), `--backend transformers`, or a larger judge")
