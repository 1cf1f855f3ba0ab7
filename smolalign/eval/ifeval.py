"""`smolalign eval MODEL --tasks ifeval`: IFEval offline, from the prompts shipped with the package.

lm-eval's `ifeval` task downloads its prompts from the hub, so it fails on a machine without a network. The 541
prompts are small (200 KB, Apache-2.0, see data/README.md), so smolalign ships them, generates the answers itself
and scores them with the project's IFEval-exact checkers (ifeval_score.py).

Answers are made as SmolLM2's figures were: greedy, through the model's own chat template (its default system
prompt included), at most `max_new_tokens` (1024 by default), stopped at the end-of-turn token; in batches, or as
concurrent requests to an OpenAI-compatible server (`--backend openai`), whose template does the same.

A long run is resumable: each finished batch is appended to `ifeval-responses.jsonl` in the eval directory, under a
header that names the settings (model files, chat template, token limit); the same command after a kill continues
after the last finished batch. A header that does not match (the model was retrained, another limit) starts
over. When every prompt is answered, the responses, their verdicts and the figures go to `eval.json` and the
partial file is removed.
"""

from __future__ import annotations

import hashlib
import json
import time
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from . import ifeval_score

TASK = "ifeval"
DEFAULT_MAX_NEW_TOKENS = 1024  # SmolLM2's IFEval setting
PARTIAL_FILE = "ifeval-responses.jsonl"


def load_prompts(limit: int | None = None) -> list[dict]:
    """The shipped IFEval rows in file order (the first `limit` of them)."""
    text = resources.files("smolalign.eval").joinpath("data/ifeval_input_data.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows[:limit] if limit is not None else rows


def prompts_digest() -> str:
    data = resources.files("smolalign.eval").joinpath("data/ifeval_input_data.jsonl").read_bytes()
    return hashlib.sha256(data).hexdigest()


def model_fingerprint(model: str) -> dict:
    """What identifies the weights: each file of a local model directory by size and modification time (a retrained
    model in the same directory is another model), or the served name."""
    path = Path(model).expanduser()
    if not path.is_dir():
        return {"name": model}
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in (".json", ".safetensors", ".bin", ".jinja"))
    return {"path": str(path.resolve()),
            "files": {p.name: [p.stat().st_size, p.stat().st_mtime_ns] for p in files if p.name != "eval.json"}}


# ---------------------------------------------------------------- the resumable record of answers


def read_partial(path: Path, settings: dict) -> dict[int, dict]:
    """Answers already made under the same settings, by prompt key; a torn last line (a kill mid-write) is
    skipped."""
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except ValueError:
        header = {}
    if header.get("settings") != settings:
        return {}
    done = {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[entry["key"]] = entry
        except (ValueError, KeyError, TypeError):
            continue
    return done


def start_partial(path: Path, settings: dict, done: dict[int, dict]) -> None:
    """(Re)write the record with its header and the answers kept, so later appends follow the right header."""
    from ..outputs import atomic_write_text

    lines = [json.dumps({"settings": settings})] + [json.dumps(entry) for entry in done.values()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def append_partial(path: Path, entries: list[dict]) -> None:
    import os

    with path.open("a", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(entry) + "\n" for entry in entries))
        handle.flush()
        os.fsync(handle.fileno())


# ---------------------------------------------------------------- answering


class LocalAnswers:
    """Batched greedy generation with a loaded model and its tokenizer."""

    def __init__(self, model, tokenizer):
        if not tokenizer.chat_template:
            raise UsageError("--tasks ifeval asks a chat model, but this model has no chat template: evaluate a "
                             "model saved by `smolalign sft` (or one with a template)")
        self.model, self.tokenizer = model, tokenizer

    def template(self) -> str:
        return self.tokenizer.chat_template

    def answer(self, rows: list[dict], max_new_tokens: int) -> list[tuple[str, bool]]:
        from .metrics import chat_prompt_ids, generate_batch

        encoded = [chat_prompt_ids(self.tokenizer, _messages(row)) for row in rows]
        return generate_batch(self.model, self.tokenizer, encoded, max_new_tokens)


def _messages(row: dict) -> list[dict]:
    return [{"role": "user", "content": row["prompt"]}]


def run_ifeval(answers, model: str, place: Path, limit: int | None, batch_size: int, max_new_tokens: int,
               backend: str, progress=None) -> dict:
    """Answer every prompt not answered yet, score them all; returns the task's figures and details."""
    rows = load_prompts(limit)
    settings = {"backend": backend, "model": model_fingerprint(model), "max_new_tokens": max_new_tokens,
                "chat_template": hashlib.sha256((answers.template() or "").encode()).hexdigest(),
                "prompts": prompts_digest(), **getattr(answers, "record", {})}  # a server's sampling and identity
    partial = place / PARTIAL_FILE
    done = read_partial(partial, settings)
    start_partial(partial, settings, done)
    # file order, so that the first batches of a run are the first prompts: a shorter `--limit` reuses them
    todo = [row for row in rows if row["key"] not in done]
    started = time.monotonic()
    if progress:
        progress(len(rows) - len(todo), len(rows))
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        made = [{"key": row["key"], "response": text, "truncated": cut}
                for row, (text, cut) in zip(batch, answers.answer(batch, max_new_tokens))]
        append_partial(partial, made)
        done.update({entry["key"]: entry for entry in made})
        if progress:
            progress(len(made), None)
    return score(rows, done, settings, time.monotonic() - started, resumed=len(rows) - len(todo))


def score(rows: list[dict], done: dict[int, dict], settings: dict, seconds: float, resumed: int) -> dict:
    """The figures for `tasks` in eval.json, and the details (families, truncations, every response)."""
    verdicts = [ifeval_score.score_response(row, done[row["key"]]["response"]) for row in rows]
    figures = ifeval_score.accuracies(rows, verdicts)
    responses = [{"key": row["key"], "prompt": row["prompt"], "instruction_id_list": row["instruction_id_list"],
                  "response": done[row["key"]]["response"], "truncated": done[row["key"]]["truncated"],
                  "strict": verdict["strict"], "loose": verdict["loose"]} for row, verdict in zip(rows, verdicts)]
    details = {"prompts": len(rows), "instructions": sum(len(r["instruction_id_list"]) for r in rows),
               "truncated": sum(entry["truncated"] for entry in responses), "settings": settings,
               "generation_seconds": round(seconds, 1), "resumed_answers": resumed,
               "families": ifeval_score.by_family(rows, verdicts), "responses": responses}
    return {"figures": figures, "details": details}


def finish(place: Path) -> None:
    """Every answer is in eval.json now: the record of a run in progress has done its job."""
    (place / PARTIAL_FILE).unlink(missing_ok=True)


def tables(result: dict, model: str):
    """Rich tables: the four accuracies and averages (in percent, as model cards give them), then the families."""
    from rich.table import Table

    figures, details = result["figures"], result["details"]
    head = Table(title=f"IFEval: {model} ({details['prompts']} prompts, {details['instructions']} instructions, "
                       f"{details['truncated']} answers cut at {details['settings']['max_new_tokens']} tokens)")
    for column in ("", "strict", "loose"):
        head.add_column(column, justify="left" if not column else "right")
    for level in ("prompt_level", "inst_level"):
        head.add_row(level.replace("_", " ").replace("inst", "instruction"),
                     *(f"{100 * figures[f'{level}_{r}_acc']:.1f}" for r in ("strict", "loose")))
    head.add_row("average (as model cards give it)", *(f"{100 * figures[f'average_{r}']:.1f}" for r in
                                                       ("strict", "loose")))
    families = Table(title="IFEval by instruction family (instruction level)")
    for column in ("family", "instructions", "strict", "loose"):
        families.add_column(column, justify="left" if column == "family" else "right")
    for name, entry in details["families"].items():
        families.add_row(name, str(entry["instructions"]), f"{100 * entry['strict_acc']:.1f}",
                         f"{100 * entry['loose_acc']:.1f}")
    return head, families
