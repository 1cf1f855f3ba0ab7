"""Answers from a model behind an OpenAI-compatible server (`smolalign eval NAME --backend openai --base-url URL`).

The server applies the model's chat template (and its default system prompt), so a prompt goes as one user
message to `/v1/chat/completions`, at most `max_tokens` new tokens; a reply whose `finish_reason` is "length" was cut
at the limit. Greedy means greedy whatever the server's defaults: temperature 0 alone is not (llama-cpp-python's
server adds repeat_penalty 1.1, top_k 40 and min_p 0.05 to a request that does not name them), so every request
names each neutral setting the server takes (smolalign/servers.py), and `record` (in eval.json) says what was sent
and what the server reported itself to be. A batch is sent as concurrent requests: vLLM or TGI batch them on their
side. Plain HTTP through the standard library: nothing here needs a client package.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from ..errors import UsageError
from ..servers import describe, request, sampling

TIMEOUT_S = 900  # one long answer on a slow CPU server
GREEDY = {"temperature": 0.0, "top_p": 1.0}


class ServerAnswers:
    def __init__(self, base_url: str, model: str):
        self.base_url, self.model = base_url.rstrip("/"), model
        try:
            status, text, headers = request(f"{self.base_url}/models", None, timeout=30)
            if status != 200:
                from ..serve import no_models_route

                raise UsageError(no_models_route(base_url, status))
            json.loads(text)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise UsageError(f"no OpenAI-compatible server answers at --base-url {base_url} ({_reason(error)}): "
                             f"start it, or give its URL ending in /v1") from None
        server = describe(self.base_url, None, model, text, headers, structured=False)
        self.sampling = sampling(GREEDY["temperature"], GREEDY["top_p"], server.accepted)
        self.record = {"sampling_sent": self.sampling, "server": server.identity}
        """What eval.json says of the protocol: the sampling every request sent, and the server's own word."""

    def template(self) -> str:
        return f"served by {self.base_url}"  # the template lives on the server; its URL stands for it

    def answer(self, rows: list[dict], max_new_tokens: int) -> list[tuple[str, bool]]:
        pool = ThreadPoolExecutor(max_workers=len(rows))
        try:
            return list(pool.map(lambda row: self._one(row["prompt"], max_new_tokens), rows))
        finally:  # ctrl-C does not wait for the requests in flight (the process ends without their threads)
            pool.shutdown(wait=False, cancel_futures=True)

    def _one(self, prompt: str, max_new_tokens: int) -> tuple[str, bool]:
        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], **self.sampling,
                "max_tokens": max_new_tokens, "stream": False}
        request = urllib.request.Request(f"{self.base_url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                choice = json.load(response)["choices"][0]
        except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError) as error:
            raise UsageError(f"the server at {self.base_url} failed to answer for model '{self.model}' "
                             f"({_reason(error)}): check the model name it serves; the answers so far are kept, "
                             f"the same command continues") from None
        text = (choice.get("message") or {}).get("content") or ""
        return text.strip(), choice.get("finish_reason") == "length"


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    return str(getattr(error, "reason", None) or error) or type(error).__name__
