"""Answering a built-in task's prompts: from a model in this process (continuous batching, generate.py) or from an
OpenAI-compatible server (concurrent requests, remote.py), each answer recorded the moment it is made.

Both answerers take the task's rows and yield `(row, response, cut at the limit)` as answers finish, in whatever
order they finish; `run_task` appends each to the record (responses.py) before asking for the next, so a kill
loses only the answers being made, and the same command asks nothing twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import UsageError
from . import responses


class LocalAnswers:
    """Greedy answers with a loaded model, through its chat template, stopped at its stop tokens."""

    def __init__(self, model, tokenizer, placement):
        if not tokenizer.chat_template:
            raise UsageError("--tasks ifeval asks a chat model, but this model has no chat template: evaluate a "
                             "model saved by `smolalign sft` (or one with a template)")
        self.model, self.tokenizer, self.placement = model, tokenizer, placement

    def identity(self) -> dict:
        """What about the answering goes into the settings: the template, the weights' dtype and device, size."""
        return {"chat_template_sha256": hashlib.sha256(self.tokenizer.chat_template.encode()).hexdigest(),
                "dtype": self.placement.dtype, "device": self.placement.device,
                "parameters": self.model.num_parameters()}

    def stream(self, task, rows: list[dict], max_new_tokens: int, slots: int) -> Iterator[tuple[dict, str, bool]]:
        from ..model.chat_template import stop_token_ids
        from .generate import greedy_stream
        from .metrics import chat_prompt_ids

        stops = stop_token_ids(self.model, self.tokenizer)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else stops[0]
        encoded = [chat_prompt_ids(self.tokenizer, task.messages(row)) for row in rows]
        for index, tokens, cut in greedy_stream(self.model, encoded, max_new_tokens, set(stops), pad, slots):
            yield rows[index], self.tokenizer.decode(tokens, skip_special_tokens=True).strip(), cut


class ServedAnswers:
    """Answers from a server: `slots` requests in flight at once (vLLM batches them on its side), longest prompts
    first, each recorded as it returns."""

    def __init__(self, server):
        self.server = server  # remote.ServerAnswers: one greedy chat completion per row

    def identity(self) -> dict:
        return {"chat_template_sha256": hashlib.sha256(self.server.template().encode()).hexdigest(),
                **getattr(self.server, "record", {})}  # the sampling sent and the server's own word

    def stream(self, task, rows: list[dict], max_new_tokens: int, slots: int) -> Iterator[tuple[dict, str, bool]]:
        from concurrent.futures import ThreadPoolExecutor, as_completed

        ordered = sorted(rows, key=lambda row: -len(row["prompt"]))
        pool = ThreadPoolExecutor(max_workers=max(1, min(slots, len(rows))))
        try:
            asked = {pool.submit(self.server.answer, [row], max_new_tokens): row for row in ordered}
            for future in as_completed(asked):
                text, cut = future.result()[0]
                yield asked[future], text, cut
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a failed request ends the run now, not after the rest


def model_fingerprint(model: str) -> dict:
    """What identifies the weights: each file of a local model directory by size and modification time (a retrained
    model in the same directory is another model), or the served name."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"name": model}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".jinja"))
    return {"path": str(path.resolve()),
            "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.name != "eval.json"}}


def run_task(task, answerer, model: str, place: Path, *, limit: int | None, slots: int, max_new_tokens: int | None,
             backend: str, overwrite: bool = False, warn=print, progress=None) -> dict:
    """Answer every prompt of the task not answered yet, score them all; returns the figures and the details
    (which name every setting)."""
    rows = task.load_prompts(limit)
    settings = {**task.GENERATION, **({"max_new_tokens": max_new_tokens} if max_new_tokens else {}),
                "backend": backend, **answerer.identity(), "model": model_fingerprint(model),
                "prompts": task.prompts_digest()}
    record = responses.record_path(place, task.NAME)
    done = responses.read(record, settings, overwrite, warn)
    responses.start(record, settings, done)
    todo = [row for row in rows if row["key"] not in done]
    started = time.monotonic()
    if progress:
        progress(len(rows) - len(todo), len(rows))
    for row, text, cut in answerer.stream(task, todo, settings["max_new_tokens"], slots):
        entry = {"key": row["key"], "response": text, "truncated": cut}
        responses.append(record, entry)
        done[row["key"]] = entry
        if progress:
            progress(1, None)
    result = task.score(rows, done)
    result["details"].update(settings=settings, generation_seconds=round(time.monotonic() - started, 1),
                             resumed_answers=len(rows) - len(todo))
    return result
