"""`smolalign eval MODEL`: held-out figures on the user's data, built-in tasks (IFEval, offline), benchmarks through
lm-eval, one `eval.json`.

The data says which measure fits, from its columns: chosen + rejected -> preference accuracy; a chat format
(the data layer's: messages, conversations, instruction + output, prompt + completion) -> loss and perplexity on
the assistant tokens, plus exact match when every reference answer is short (a task set: exact answers; on
open-ended chat an exact match is noise and costs a generation per row); a text column -> loss and perplexity.
`--metric` overrides the choice. Rows go through the same data layer as training, so what trains also evaluates.

A built-in task (tasks/, one file each: `--tasks ifeval`) is answered here (answers.py), also by a model behind an
OpenAI-compatible server (`--backend openai`), and scored by its own file; other task names go to lm-eval
(harness.py). `run_eval` reads top to bottom: checks, the model or server, the metrics on data, the tasks. Every
problem with the input is found before the model loads. `eval.json` sits next to the model (or under `--output`
for a hub id); a later evaluation updates its entries and keeps the others.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..data import normalise
from ..data.formats import detect_format
from ..data.loading import load_split
from ..errors import UsageError

EVAL_FILE = "eval.json"
KIND_METRICS = {"chat": ("loss", "exact_match"), "text": ("loss",), "preference": ("preference",)}
METRICS = ("loss", "exact_match", "preference")
SHORT_ANSWER_TOKENS = 32  # a task set's answers are short; longer ones are open-ended chat
SAMPLES = 3  # replies kept in eval.json beside each exact match, to see what the model said
EXACT_MATCH_TOKENS = 256  # the longest reply exact match waits for, unless --max-new-tokens says otherwise


def _kind(columns: list[str], name: str, text_column: str) -> tuple[str, str]:
    """(kind, format) from the columns: preference, chat or text."""
    if "chosen" in columns or "rejected" in columns:
        return "preference", detect_format(columns, "preference", name)
    try:
        return "chat", detect_format(columns, "chat", name)
    except UsageError:
        if text_column in columns:
            return "text", "text"
        raise UsageError(
            f"dataset '{name}' has columns {sorted(columns)}: eval reads chat (messages, conversations, "
            f"instruction+output, prompt+completion), preference (chosen+rejected) or plain text "
            f"('{text_column}'): rename a column or set --text-column") from None


def _load(name: str, split: str | None, text_column: str, limit: int | None, metrics: list[str] | None) -> dict:
    """One evaluation set: its normalised rows and the metrics asked of it (None: decided from the answers)."""
    if split is None:
        split = "train" if Path(name).expanduser().is_file() else "test"  # a file holds one split
    try:
        raw = load_split(name, None, split)
    except UsageError as error:
        if f"no split '{split}'" in str(error):
            import re

            known = re.search(r"one of \[(.*?)\]", str(error))  # datasets names the splits there are
            names = re.findall(r"'([^']+)'", known.group(1)) if known else []
            have = f" (it has {', '.join(names)})" if names else ""
            raise UsageError(f"dataset '{name}' has no split '{split}'{have}: choose one with --split") from error
        raise
    kind, fmt = _kind(raw.column_names, name, text_column)
    if limit is not None:
        raw = raw.select(range(min(limit, len(raw))))
    if metrics:
        wrong = [m for m in metrics if m not in KIND_METRICS[kind]]
        if wrong:
            raise UsageError(f"--metric {wrong[0]} does not apply to {kind} data ('{name}'): use "
                             f"{' or '.join(KIND_METRICS[kind])}, or give a dataset with the columns it needs")
    if kind == "text":
        rows = [t for t in raw[text_column] if isinstance(t, str) and t.strip()]
        if not rows:
            raise UsageError(f"dataset '{name}' has no text in column '{text_column}': point --data at text rows")
    else:
        normalised, fmt, _ = normalise(raw, name, fmt, "chat" if kind == "chat" else "preference")
        rows = normalised["messages"] if kind == "chat" else list(normalised)
    return {"dataset": name, "split": split, "kind": kind, "format": fmt, "rows": rows, "metrics": metrics}


def _check_args(data, tasks, metrics, limit, batch_size, max_new_tokens, num_fewshot) -> None:
    if not data and not tasks:
        raise UsageError("nothing to evaluate: give --data PATH (held-out chat, text or preference rows) or "
                         "--tasks NAME (lm-evaluation-harness), e.g. --data recipes/debug/data/tasks-sft")
    unknown = [m for m in metrics or [] if m not in METRICS]
    if unknown:
        raise UsageError(f"unknown metric '{unknown[0]}': choose from {', '.join(METRICS)}")
    for flag, value in (("--limit", limit), ("--batch-size", batch_size), ("--max-new-tokens", max_new_tokens)):
        if value is not None and value < 1:
            raise UsageError(f"{flag}={value} must be at least 1")
    if num_fewshot is not None and num_fewshot < 0:
        raise UsageError(f"--num-fewshot={num_fewshot} must be 0 or more (leave it out for the task's own number)")


def task_names(tasks: list[str] | None) -> list[str]:
    return [t.strip() for item in tasks or [] for t in item.split(",") if t.strip()]


def _check_backend(backend: str, base_url: str | None, data, names: list[str]) -> None:
    """`--backend openai` asks a server for answers, so only generated answers can be scored: built-in tasks."""
    from .tasks import BUILTIN

    if backend == "transformers":
        if base_url:
            raise UsageError("--base-url is for --backend openai: add it, or leave --base-url out")
        return
    if not base_url:
        raise UsageError("--backend openai needs --base-url, e.g. --base-url http://127.0.0.1:8000/v1")
    other = [n for n in names if n not in BUILTIN]
    if data or other or not names:
        raise UsageError(f"--backend openai scores answers from a server, which is --tasks {','.join(BUILTIN)} "
                         f"only: losses and lm-eval tasks need the weights (give a model directory without --backend)")


def _eval_dir(model: str, output: str | None) -> Path:
    from ..outputs import check_writable

    if output is not None:
        place = Path(output).expanduser()
        if place.is_file():
            raise UsageError(f"--output '{output}' is a file: give a directory to hold {EVAL_FILE}")
    elif Path(model).expanduser().is_dir():
        place = Path(model).expanduser()
    else:
        raise UsageError(f"model '{model}' is not a local directory, so {EVAL_FILE} has no place beside it: "
                         f"give --output DIR")
    return check_writable(place, "--output" if output else "model")


def _measure(model, tokenizer, item: dict, batch_size: int, max_new_tokens: int, bar) -> dict:
    from . import metrics as ev

    rows, kind, out = item["rows"], item["kind"], {}
    metrics = item["metrics"] or list(KIND_METRICS[kind])
    label = f"{Path(item['dataset']).name or item['dataset']} [{item['split']}]"
    if kind == "chat" and not item["metrics"]:  # exact match only on a task set (short, exact answers)
        longest = max(len(tokenizer(c[-1]["content"], add_special_tokens=False)["input_ids"]) for c in rows)
        if longest > SHORT_ANSWER_TOKENS:
            metrics.remove("exact_match")
    for metric in metrics:
        step = bar(f"{label} {metric}", len(rows))
        if metric == "loss":
            scores = (ev.chat_loss if kind == "chat" else ev.text_loss)(model, tokenizer, rows, batch_size=batch_size,
                                                                       progress=step)
            out.update(scores)
        elif metric == "exact_match":
            answers = [c[-1]["content"].strip() for c in rows]
            budget = max(len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers) + 2
            replies = ev.generate_replies(model, tokenizer, [c[:-1] for c in rows], batch_size=batch_size,
                                          max_new_tokens=min(budget, max_new_tokens), progress=step)
            out["exact_match"] = sum(r == a for r, a in zip(replies, answers)) / len(rows)
            out["samples"] = [{"prompt": c[-2]["content"], "answer": a, "reply": r}
                              for c, a, r in zip(rows[:SAMPLES], answers, replies)]
        else:
            margins = ev.preference_margins(model, tokenizer, rows, batch_size=batch_size, progress=step)
            out["preference_accuracy"] = sum(m > 0 for m in margins) / len(rows)
            out["mean_margin"] = sum(margins) / len(rows)
    return out


def _write(place: Path, model: str, results: dict, own: list[str]) -> Path:
    from ..outputs import atomic_write_text

    path = place / EVAL_FILE
    try:
        previous = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        previous = {}  # an unreadable old file is replaced, not merged
    merged = {**previous, "model": model, "data": {**previous.get("data", {}), **results["data"]},
              "tasks": {**previous.get("tasks", {}), **results["tasks"]},
              "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    for name in own:
        merged[name] = results[name]  # a built-in task's every response, its verdicts and settings
    atomic_write_text(path, json.dumps(merged, indent=2) + "\n")
    return path


def _table(results: dict, own: list[str]):
    from rich.table import Table

    table = Table(title=f"eval: {results['model']}")
    for column in ("data", "split", "rows", "metric", "value"):
        table.add_column(column, justify="right" if column in ("rows", "value") else "left", overflow="fold")
    for entry in results["data"].values():
        for metric in ("loss", "perplexity", "exact_match", "preference_accuracy", "mean_margin"):
            if metric in entry:
                value = entry[metric]
                table.add_row(entry["dataset"], entry["split"], str(entry["rows"]), metric,
                              f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.4f}")
    for task, values in results["tasks"].items():
        if task in own:
            continue  # a built-in task has tables of its own
        for metric, value in values.items():
            table.add_row(task, "lm-eval", "", metric, f"{value:.4f}")
    return table


def _open(model: str, backend: str, base_url: str | None, sets: list[dict], builtin: list[str]):
    """(model, tokenizer, placement, answerer): the weights loaded here, or a server that answers for them."""
    from .answers import LocalAnswers, ServedAnswers

    if backend == "openai":
        from .remote import ServerAnswers

        return None, None, None, ServedAnswers(ServerAnswers(base_url, model))
    from ..model.load import load_model

    lm, tokenizer, placement = load_model(name_or_path=model)
    lm.to(placement.device)
    if not tokenizer.chat_template and any(item["kind"] != "text" for item in sets):
        raise UsageError(f"model '{model}' has no chat template, and chat and preference data are read through "
                         f"it: evaluate a model saved by `smolalign sft`, or give plain-text data")
    return lm, tokenizer, placement, (LocalAnswers(lm, tokenizer, placement) if builtin else None)


def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True)

    def rows_bar(description: str, total: int):
        task = progress.add_task(description, total=total)
        return lambda done: progress.advance(task, done)

    def answers_bar(description: str):
        task = progress.add_task(description, total=None)
        return lambda done, total: progress.update(task, advance=done, **({"total": total} if total else {}))

    return progress, rows_bar, answers_bar


def run_eval(model: str, data: list[str] | None = None, tasks: list[str] | None = None, output: str | None = None,
             *, metrics: list[str] | None = None, split: str | None = None, limit: int | None = None,
             batch_size: int = 32, max_new_tokens: int | None = None, text_column: str = "text",
             num_fewshot: int | None = None, chat_template: bool | None = None, backend: str = "transformers",
             base_url: str | None = None, overwrite: bool = False, console=None) -> dict:
    """Evaluate MODEL on each --data set and task; print tables, write eval.json, return the figures.

    Built-in tasks (eval/tasks/) are answered and scored here; other tasks go to lm-eval."""
    from rich.console import Console

    from ..model.load import check_model_source
    from .answers import run_task
    from .responses import check, finish, record_path
    from .tasks import BUILTIN, builtin

    # everything the user gave is checked before anything loads
    _check_args(data, tasks, metrics, limit, batch_size, max_new_tokens, num_fewshot)
    names = task_names(tasks)
    _check_backend(backend, base_url, data, names)
    own, harness_tasks = [n for n in names if n in BUILTIN], [n for n in names if n not in BUILTIN]
    if backend == "transformers":
        check_model_source(model)
    place = _eval_dir(model, output)
    for name in own:
        check(record_path(place, name), overwrite)
    prepared = None
    if harness_tasks:
        from .harness import prepare_tasks

        prepared = prepare_tasks(harness_tasks)
    sets = [_load(name, split, text_column, limit, metrics) for name in data or []]

    # the model (or the server that answers for it), then the metrics on data, then the tasks
    lm, tokenizer, placement, answerer = _open(model, backend, base_url, sets, own)
    results = {"model": model, "data": {}, "tasks": {}}
    progress, rows_bar, answers_bar = _progress()
    warn = Console(stderr=True).print
    with progress:
        for item in sets:
            figures = _measure(lm, tokenizer, item, batch_size, max_new_tokens or EXACT_MATCH_TOKENS, rows_bar)
            results["data"][f"{item['dataset']} [{item['split']}]"] = {
                "dataset": item["dataset"], "split": item["split"], "kind": item["kind"], "format": item["format"],
                "rows": len(item["rows"]), **figures}
        for name in own:
            scored = run_task(builtin(name), answerer, model, place, limit=limit, slots=batch_size,
                              max_new_tokens=max_new_tokens, backend=backend, overwrite=overwrite, warn=warn,
                              progress=answers_bar(f"{name} answers"))
            results["tasks"][name], results[name] = scored["figures"], scored["details"]
    if harness_tasks:
        from .harness import is_chat_model, run_tasks

        source = str(Path(model).expanduser().resolve()) if Path(model).expanduser().exists() else model
        chat = is_chat_model(tokenizer) if chat_template is None else chat_template
        del lm, answerer  # lm-eval loads its own copy
        results["tasks"].update(run_tasks(source, prepared, chat=chat, device=placement.device,
                                          dtype=placement.dtype, batch_size=batch_size, limit=limit,
                                          num_fewshot=num_fewshot))

    results["eval_json"] = str(_write(place, model, results, own))
    for name in own:
        finish(record_path(place, name))
    out = console or Console()
    if sets or harness_tasks:
        out.print(_table(results, own))
    for name in own:
        for table in builtin(name).tables({"figures": results["tasks"][name], "details": results[name]}, model):
            out.print(table)
    return results
