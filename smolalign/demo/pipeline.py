"""`smolalign demo`: the whole SmolLM2 pipeline on one CPU, each stage proven by a number.

tokenizer (shipped text) -> pretrain (`tiny` preset, debug recipe) -> gen (a small SmolTalk-style set from the
pretrained model over a real local server: mechanics only, the text is gibberish and is not trained on) -> SFT
(shipped task set) -> DPO (shipped pairs), with an evaluation after each stage. Every stage calls the same plain
function its command calls and writes a standard directory the other commands load on their own. A rerun
resumes at the first unfinished stage. The figures land in DIR/report.json and DIR/report.md with plots.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..outputs import atomic_write_text, check_writable
from ..resources import shipped_dir

STATE_FILE = "report.json"


@dataclass
class Size:
    pretrain: list[str]
    sft: list[str]
    dpo: list[str]
    gen_rows: int
    eval_rows: int


SIZES = {
    # the full demo: the debug recipes as shipped (about 10 minutes on 2 idle cores)
    "small": Size(pretrain=[], sft=[], dpo=[], gen_rows=6, eval_rows=200),
    # a reduced run for CI and a first look (a few minutes): fewer steps everywhere, same code paths
    "tiny": Size(pretrain=["training.max_steps=40"],
                 sft=["training.num_train_epochs=2", "data.num_samples=2000"],
                 dpo=["training.num_train_epochs=1", "data.num_samples=800"], gen_rows=2, eval_rows=100),
}
STAGES = ("tokenizer", "pretrain", "gen", "sft", "dpo")


def _held_out(name: str, rows: int) -> list[dict]:
    path = shipped_dir("recipes") / "debug" / "data" / name / "test.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()[:rows]]


def _load(model_dir: Path):
    from ..model.load import load_model

    model, tokenizer, _ = load_model(name_or_path=str(model_dir))
    return model, tokenizer


def exact_match_of(model_dir: Path, rows: int) -> float:
    from ..eval.metrics import exact_match
    from ..train.templates import prepare_chat_tokenizer

    model, tokenizer = _load(model_dir)
    prepare_chat_tokenizer(tokenizer)  # a base model has no chat template yet: the one SFT will give it
    return exact_match(model, tokenizer, [row["messages"] for row in _held_out("tasks-sft", rows)])


def preference_accuracy_of(model_dir: Path, rows: int) -> float:
    from ..data.formats import to_preference
    from ..eval.metrics import preference_accuracy

    model, tokenizer = _load(model_dir)
    return preference_accuracy(model, tokenizer, [to_preference(row) for row in _held_out("tasks-dpo", rows)])


def _losses(run_dir: Path) -> list[tuple[int, float]]:
    from ..train.report import read_metrics

    return [(r["step"], r["loss"]) for r in read_metrics(run_dir) if r.get("loss") is not None]


# ---------------------------------------------------------------- stages


def stage_tokenizer(out: Path, size: Size) -> dict:
    from ..model.tokenizer import train_tokenizer

    data = shipped_dir("recipes") / "debug" / "data"
    corpus = [str(data / "tasks-corpus.txt"), *sorted(str(p) for p in (data / "pretrain").glob("*.jsonl"))]
    tokenizer = train_tokenizer(corpus, 512, str(out / "tokenizer"), overwrite=True)
    return {"vocab_size": len(tokenizer), "model": str(out / "tokenizer")}


def stage_pretrain(out: Path, size: Size) -> dict:
    from ..train.pretrain.command import run_pretrain

    run_pretrain("debug/pretrain", [f"model.tokenizer={out / 'tokenizer'}", f"training.output_dir={out / 'pretrain'}",
                                    "training.report_to=[]", *size.pretrain], overwrite=True)
    losses = _losses(out / "pretrain")
    vocab = json.loads((out / "pretrain" / "config.json").read_text())["vocab_size"]
    return {"loss_start": losses[0][1], "loss_end": losses[-1][1], "ln_vocab": math.log(vocab),
            "model": str(out / "pretrain")}


def stage_gen(out: Path, size: Size) -> dict:
    from ..gen import run_gen
    from ..serve import local_server

    # The demo's generator is the tiny model pretrained a minute ago: its 24-token continuations never end a turn
    # and, over so small a vocabulary, resemble each other (MinHash dropped 5 of 6). The stage shows the mechanics,
    # so the two filters meant for a real model's data are off here; the rows are not trained on.
    demo_only = ["llm.max_new_tokens=24", "llm.batch_size=2", "filters.drop_truncated=false", "minhash.enabled=false"]
    # `transformers serve` samples only where the model's generation_config says do_sample: otherwise it decodes
    # greedily whatever temperature a request names, and this tiny model's greedy answer is newlines alone (empty once
    # stripped). The spec's sampling applies for the stage's length only; later stages evaluate greedily as saved.
    config = out / "pretrain" / "generation_config.json"
    saved = config.read_text()
    config.write_text(json.dumps({**json.loads(saved), "do_sample": True}, indent=2) + "\n")
    try:
        with local_server(out / "pretrain", out / "serve.log") as url:
            counts = run_gen("smol-rewrite", demo_only, backend="openai", model=str(out / "pretrain"), base_url=url,
                             num_rows=size.gen_rows, output=str(out / "gen"), overwrite=True)
    finally:
        config.write_text(saved)
    return {"rows": counts.get("kept", counts.get("generated")), "requested": counts.get("requested"),
            "counts": counts, "model": str(out / "gen")}


def stage_sft(out: Path, size: Size) -> dict:
    from ..train.sft import run_sft

    before = exact_match_of(out / "pretrain", size.eval_rows)
    run_sft("debug/sft", [f"training.output_dir={out / 'sft'}", "training.report_to=[]",
                          "training.save_strategy=no", *size.sft], model_path=str(out / "pretrain"), overwrite=True)
    return {"exact_match_before": before, "exact_match_after": exact_match_of(out / "sft", size.eval_rows),
            "model": str(out / "sft")}


def stage_dpo(out: Path, size: Size) -> dict:
    from ..train.dpo import run_dpo

    before = preference_accuracy_of(out / "sft", size.eval_rows)
    run_dpo("debug/dpo", [f"training.output_dir={out / 'dpo'}", "training.report_to=[]",
                          "training.save_strategy=no", *size.dpo], model_path=str(out / "sft"), overwrite=True)
    return {"preference_accuracy_before": before,
            "preference_accuracy_after": preference_accuracy_of(out / "dpo", size.eval_rows),
            "model": str(out / "dpo")}


RUNNERS = {"tokenizer": stage_tokenizer, "pretrain": stage_pretrain, "gen": stage_gen, "sft": stage_sft,
           "dpo": stage_dpo}
TITLES = {"tokenizer": "train a byte-level BPE tokenizer on the shipped text",
          "pretrain": "pretrain the tiny preset (debug/pretrain: 3 stages, WSD)",
          "gen": "generate a SmolTalk-style set over a local server (mechanics only)",
          "sft": "SFT on the shipped task set (debug/sft)",
          "dpo": "DPO on the shipped preference pairs (debug/dpo)"}


# ---------------------------------------------------------------- the whole run


def _read_state(out: Path, size: str) -> dict:
    path = out / STATE_FILE
    if not path.is_file():
        return {}
    state = json.loads(path.read_text())
    if state.get("size") != size:
        raise UsageError(f"'{out}' holds a demo of size {state.get('size')}: rerun with --size {state.get('size')}, "
                         f"or choose another --output")
    return state


def run_demo(output: str = "runs/demo", size: str = "small", console=None) -> dict:
    """Run every unfinished stage; returns the report (what DIR/report.json holds)."""
    from rich.console import Console

    if size not in SIZES:
        raise UsageError(f"--size {size} is unknown: choose one of {', '.join(SIZES)}")
    out = check_writable(output)
    if out.is_dir() and any(out.iterdir()) and not (out / STATE_FILE).is_file():
        raise UsageError(f"'{out}' is not empty and holds no demo: choose another --output")
    console = console or Console(stderr=True)
    state = _read_state(out, size) or {"size": size}
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number, stage in enumerate(STAGES, start=1):
        if stage in state:
            console.print(f"[dim][{number}/{len(STAGES)}] {stage}: done before, skipped[/dim]")
            continue
        console.rule(f"[bold][{number}/{len(STAGES)}] {stage}[/bold]: {TITLES[stage]}")
        began = time.perf_counter()
        state[stage] = {**RUNNERS[stage](out, SIZES[size]), "seconds": round(time.perf_counter() - began, 1)}
        atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")  # a rerun starts after this stage
    state["seconds_this_run"] = round(time.perf_counter() - started, 1)
    atomic_write_text(out / STATE_FILE, json.dumps(state, indent=2) + "\n")
    from .report import write_report

    write_report(out, state)
    console.rule("[bold]demo done")
    console.print(f"report: {out / 'report.md'}")
    return state
