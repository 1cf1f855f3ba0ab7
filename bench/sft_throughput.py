"""SFT throughput in real (non-padding) tokens per second: smolalign against plain TRL, measured in one run.

Every side trains the same `tiny` model on the same variable-length chat data with the same optimiser settings.
Plain TRL is what a user writes by hand with `SFTTrainer`; on CPU its best setting is padded batches
(`packing=False`) ordered by `train_sampling_strategy=group_by_length`, since its packed default flattens the
batch into one padding-free sequence, which only flash attention runs in linear memory. So the headline ratio
is smolalign packed against the best of TRL's padded settings, and TRL packed is printed for reference only.
Tokens per step change the speed on CPU (smaller steps keep activations in cache), so the ratios are printed at
equal tokens a step too: smolalign packed at batch 2 (~1,000 tokens) against TRL at batch 8 (~850), and
smolalign at batch 8 (~4,000) against TRL at the batch that carries as many tokens.

Each side trains one epoch, so that every side sees the same tokens: padding and TRL's length-grouped sampler
(which orders batches from long to short within groups of 50) are measured over all of them, not over a window.
Throughput is the steady state, from the first log after the warm-up steps to the last (start-up and compilation
left out): real tokens (the Trainer's `num_input_tokens_seen`) per second of wall time, and per second of the
process's CPU time. On a machine shared with other work, wall time measures the neighbours as much as the code;
CPU time (best with `--threads 1`, where no thread waits on another) measures the work. Each side runs a few
steps once to warm up, then `--reps` times interleaved; the median is printed.

`--smoltalk` is the recipe's shape on a GPU: multi-turn rows whose lengths follow SmolTalk's (log-normal turns, a
long tail past 8,192 tokens), max_length 8,192, ~64k tokens a step through accumulation, smolalign packed (4-D mask,
and torch's varlen kernel) against TRL's best GPU setting and TRL's padded, length-grouped batches at equal tokens
a step, with the peak memory of each (bench/gpu.sh runs it).

Run by hand: `python bench/sft_throughput.py [--reps 3] [--attn sdpa] [--no-compile] [--threads N]`
(`--steps N` stops each side after N steps instead of an epoch; `--sides "a;=b"` runs only the sides whose names
contain a or are b). `--tiny` runs every side in seconds (tests/test_bench.py) and measures nothing worth quoting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Settings:
    rows: int = 1500
    max_length: int = 512
    batch: int = 8
    steps: int = -1  # -1: one epoch
    warmup_steps: int = 5  # excluded from the steady state
    logging_steps: int = 5
    reps: int = 3
    attn: str | None = None  # None: each side's own choice (smolalign: its speed settings; TRL: sdpa)
    compile: bool = True
    threads: int | None = None  # torch's choice
    preset: str = "tiny"
    model: str | None = None  # a saved model directory (e.g. the real SmolLM2 from `smolalign model import`)
    accumulation: int = 1  # gradient accumulation of every side (equal tokens a step)
    smoltalk: bool = False  # SmolTalk-like multi-turn lengths (the recipe's shape) instead of repeated words


TINY = Settings(rows=48, max_length=96, batch=2, steps=4, warmup_steps=2, logging_steps=2, reps=1, compile=False,
                threads=1)


@dataclass(frozen=True)
class Side:
    name: str
    tool: str  # "smolalign" | "trl"
    packing: bool
    batch: int
    compile: bool = False
    grouped: bool = False  # TRL: train_sampling_strategy=group_by_length (less padding)
    block_mask: bool = False  # smolalign packed rows with the 4-D block-causal mask (its GPU path) on CPU too
    by_document: bool = False  # smolalign packed rows with per-document attention (its CPU path) on GPU too
    best: bool = False  # TRL's best GPU setting: padding-free, flash-attn where installed, Liger, fused AdamW
    varlen: bool = False  # smolalign packed rows through torch's varlen kernel (speed.packed_attention=varlen)


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def machine() -> str:
    import torch

    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    gpu = f"; {torch.cuda.get_device_name()} (bf16)" if torch.cuda.is_available() else ""
    return (f"{model}; {os.cpu_count()} cores ({usable} usable); torch {torch.__version__} with "
            f"{torch.get_num_threads()} threads; load average {load}{gpu}")


def variable_length_data(path: Path, rows: int, max_length: int, seed: int = 0) -> Path:
    """Chat rows from ~40 tokens up to about `max_length`, log-uniform: where padding wastes work and packing
    should pay. (A word repeated is one token; the template and question take ~40.)"""
    from smolalign.data.debug_tasks import WORDS

    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        word, times = rng.choice(WORDS), int(math.exp(rng.uniform(0, math.log(max_length - 50))))
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"Repeat the word {word} {times} times."},
            {"role": "assistant", "content": " ".join([word] * times)}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def smoltalk_like_data(path: Path, rows: int, max_length: int, seed: int = 0) -> Path:
    """Multi-turn chat rows shaped like SmolTalk's: 1-4 turns, user turns log-normal around 60 tokens and answers
    around 300, so that rows average several hundred tokens and a tail reaches past `max_length` (cut there, as
    TRL cuts them). Each word is one token of the debug tokenizer."""
    from smolalign.data.debug_tasks import WORDS

    rng = random.Random(seed)
    scale = min(1.0, max_length / 2048)  # a short max_length (--tiny) shrinks the turns with it
    lines = []
    for _ in range(rows):
        messages = []
        for _turn in range(rng.choice((1, 1, 2, 3, 4))):
            for role, median in (("user", 60 * scale), ("assistant", 300 * scale)):
                # a first question longer than half the window would leave no answer token to train on
                cap = max_length // 2 if role == "user" else max_length
                words = max(1, min(cap, int(rng.lognormvariate(math.log(median), 1.0))))
                messages.append({"role": role, "content": " ".join(rng.choice(WORDS) for _ in range(words))})
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines) + "\n")
    return path


def chat_tokenizer(model: str | None = None):
    from transformers import AutoTokenizer

    from smolalign.train.templates import prepare_chat_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(model or REPO / "recipes/debug/tokenizer")
    prepare_chat_tokenizer(tokenizer)
    return tokenizer


def token_lengths(data: Path, max_length: int, model: str | None = None) -> list[int]:
    tokenizer = chat_tokenizer(model)
    return [min(max_length, len(tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=True,
                                                              return_dict=True)["input_ids"]))
            for line in data.open()]


def clock(records: list):
    """A callback noting (step, real tokens, wall time, CPU time) at each training log: one clock for all sides."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                records.append((state.global_step, state.num_input_tokens_seen, time.perf_counter(),
                                time.process_time()))

    return Clock()


def smolalign_run(side: Side, data: Path, out: Path, s: Settings, records: list) -> None:
    import smolalign.train.sft as sft
    from smolalign.train.packing import use_document_attention, use_packed_rows

    def packed_rows(trainer, attn, packed_attention="auto"):  # sft.py calls this on every trainer: our way in
        trainer.add_callback(clock(records))
        used = use_packed_rows(trainer, attn, packed_attention)
        if used and side.block_mask:  # back to plain sdpa over the 4-D mask
            trainer.model.config._attn_implementation = attn
            trainer.data_collator.by_document = False
        if used and side.by_document:
            use_document_attention(trainer.model)
            trainer.data_collator.by_document = True
        return used

    overrides = [
        f"data.dataset={data}", "data.eval_split=null",
        f"model.name_or_path={s.model}" if s.model else f"model.preset={s.preset}",
        "speed.fit_micro_batch=false",  # equal tokens a step on every side; the other speed settings stay on
        f"training.output_dir={out}", f"training.max_steps={s.steps}", "training.num_train_epochs=1",
        "training.save_strategy=no",
        "training.eval_strategy=no", "training.report_to=[]", f"training.logging_steps={s.logging_steps}",
        f"training.max_length={s.max_length}", f"training.per_device_train_batch_size={side.batch}",
        f"training.packing={str(side.packing).lower()}", f"training.torch_compile={str(side.compile).lower()}",
        f"training.gradient_accumulation_steps={s.accumulation}", "data.max_truncated_fraction=1.0",
    ] + ([f"model.attn_implementation={s.attn}"] if s.attn else []) + (
        ["speed.packed_attention=varlen"] if side.varlen else [])
    sft.use_packed_rows = packed_rows
    try:
        sft.run_sft("debug/sft", overrides, overwrite=True)
    finally:
        sft.use_packed_rows = use_packed_rows


def trl_run(side: Side, data: Path, out: Path, s: Settings, records: list) -> None:
    """What a user writes by hand with TRL: same model, template, data and settings as the debug recipe."""
    import datasets
    from trl import SFTConfig, SFTTrainer

    from smolalign.model.build import build_model

    tokenizer = chat_tokenizer(s.model)
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(s.model) if s.model else build_model(s.preset, tokenizer, seed=42)
    attn = s.attn or "sdpa"
    if side.best and not s.attn and installed("flash_attn"):
        attn = "flash_attention_2"
    model.config._attn_implementation = attn
    best = {"use_liger_kernel": installed("liger_kernel"), "optim": "adamw_torch_fused"} if side.best else {}
    args = SFTConfig(output_dir=str(out), max_steps=s.steps, num_train_epochs=1, save_strategy="no", report_to=[],
                     logging_steps=s.logging_steps, max_length=s.max_length, per_device_train_batch_size=side.batch,
                     gradient_accumulation_steps=s.accumulation,
                     packing=side.packing, bf16=torch.cuda.is_available(), activation_checkpointing=False, assistant_only_loss=True,
                     learning_rate=3e-3, lr_scheduler_type="cosine", warmup_steps=0.1, seed=42,
                     include_num_input_tokens_seen="non_padding", torch_compile=side.compile,
                     train_sampling_strategy="group_by_length" if side.grouped else "random", **best)
    train = datasets.load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer,
                         callbacks=[clock(records)])
    trainer.train()


def measure(side: Side, data: Path, out: Path, s: Settings) -> tuple[float, float, float, float]:
    """(real tokens per wall second, per CPU second, per step) from the first log after the warm-up to the last,
    and the peak GPU memory in GiB (0 on CPU)."""
    import torch

    records = []
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    (smolalign_run if side.tool == "smolalign" else trl_run)(side, data, out, s, records)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0
    start = next(r for r in records if r[0] >= s.warmup_steps)
    end = records[-1]
    tokens = end[1] - start[1]
    return tokens / (end[2] - start[2]), tokens / (end[3] - start[3]), tokens / (end[0] - start[0]), peak


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def realistic_sides(s: Settings, equal_batch: int) -> list[Side]:
    """The recipe's shape: packed rows of max_length against TRL at the batch that carries as many real tokens."""
    rows = [Side("smolalign packed", "smolalign", True, s.batch),
            Side("TRL unpacked, group_by_length", "trl", False, equal_batch, grouped=True)]
    if on_gpu():
        rows.insert(1, Side("smolalign packed, varlen", "smolalign", True, s.batch, varlen=True))
        rows.append(Side("TRL best GPU setting (padding-free, flash-attn if installed, Liger, fused AdamW)", "trl",
                         True, s.batch, best=True))
    return rows


def sides(s: Settings, equal_batch: int) -> list[Side]:
    if s.smoltalk:
        return realistic_sides(s, equal_batch)
    b, small = s.batch, max(1, s.batch // 4)
    rows = [
        Side("smolalign packed", "smolalign", True, b),
        # the other attention path: on CPU the default is per-document attention, on GPU the 4-D mask
        Side("smolalign packed, per-document attention", "smolalign", True, b, by_document=True) if on_gpu()
        else Side("smolalign packed, 4-D mask", "smolalign", True, b, block_mask=True),
        Side(f"smolalign packed, batch {small}", "smolalign", True, small),
        Side("smolalign unpacked", "smolalign", False, b),
        Side("TRL unpacked (padded)", "trl", False, b),
        Side("TRL unpacked, group_by_length", "trl", False, b, grouped=True),
        Side("TRL packed (padding-free)", "trl", True, b),
        Side(f"smolalign unpacked, batch {equal_batch}", "smolalign", False, equal_batch),
        Side(f"TRL unpacked, group_by_length, batch {equal_batch}", "trl", False, equal_batch, grouped=True),
    ]
    if on_gpu():
        rows.append(Side("TRL best GPU setting (padding-free, flash-attn if installed, Liger, fused AdamW)", "trl",
                         True, b, best=True))
    if s.compile:  # compile on both sides: a TRL user could set torch_compile too
        rows.insert(1, Side("smolalign packed, torch_compile", "smolalign", True, b, compile=True))
        rows.insert(7, Side("TRL unpacked, group_by_length, torch_compile", "trl", False, b, compile=True,
                            grouped=True))
    return rows


def report(runs: dict[str, list], s: Settings, lengths: list[int], equal_batch: int) -> None:
    """The table, then every ratio whose two sides ran (`--sides` may leave some out)."""
    results = {name: [statistics.median(r[i] for r in done) for i in range(4)] for name, done in runs.items()}
    print(f"\nmachine: {machine()}")
    print(f"data: {s.rows} {'SmolTalk-like multi-turn' if s.smoltalk else 'chat'} rows, {s.batch} x "
          f"{s.accumulation} accumulation a step ({s.batch * s.accumulation * s.max_length:,} packed tokens), "
          f"tokens per row mean {statistics.mean(lengths):.0f}, median "
          f"{statistics.median(lengths):.0f}, max {max(lengths)}; max_length {s.max_length}, attention "
          f"{s.attn or 'each side its own (smolalign: its speed settings; TRL: sdpa, or flash for its best)'}; "
          f"flash-attn {'installed' if installed('flash_attn') else 'not installed'}, liger-kernel "
          f"{'installed' if installed('liger_kernel') else 'not installed'}, "
          f"{'model ' + s.model if s.model else 'preset ' + s.preset}, "
          f"{'one epoch' if s.steps < 0 else f'{s.steps} steps'} (first {s.warmup_steps} left out), "
          f"median of {s.reps}")
    gpu = on_gpu()
    print(f"\n{'side':48s} {'real tok/s':>10s} {'tok/CPU-s':>10s} {'tok/step':>9s}" + (" peak GiB" if gpu else "")
          + "  runs (tok/s; tok/CPU-s)")
    for name, (wall, cpu, per_step, peak) in results.items():
        runs_text = " ".join(f"{r[0]:,.0f}" for r in runs[name]) + "; " + " ".join(f"{r[1]:,.0f}" for r in runs[name])
        memory = f" {peak:8.1f}" if gpu else ""
        print(f"{name:48s} {wall:10,.0f} {cpu:10,.0f} {per_step:9,.0f}{memory}  {runs_text}")

    def best(prefix: str) -> list[str]:
        names = [n for n in results if n.startswith(prefix)]
        return [max(names, key=lambda n: results[n][i]) for i in (0, 1)] if names else ["?", "?"]

    trl_best, ours_best = best("TRL unpacked"), best("smolalign packed")
    print(f"\nTRL's best padded setting here: {trl_best[0]} (wall time); {trl_best[1]} (CPU time)")
    print(f"smolalign's best: {ours_best[0]} (wall time); {ours_best[1]} (CPU time)")

    def line(text: str, a: str | list[str], b: str | list[str], note: str = "") -> None:
        a, b = ([x] * 2 if isinstance(x, str) else x for x in (a, b))
        if not all(name in results for name in a + b):
            return
        wall, cpu = (results[a[i]][i] / results[b[i]][i] for i in (0, 1))
        print(f"ratio {text}: {wall:.2f}x (per CPU-second {cpu:.2f}x){note}")

    small = f"smolalign packed, batch {max(1, s.batch // 4)}"
    line("smolalign packed / TRL best CPU setting", "smolalign packed", trl_best, " (target >= 1.3x)")
    line("best of each", ours_best, trl_best)
    line(f"equal tokens a step, {small} / TRL group_by_length batch {s.batch}", small,
         "TRL unpacked, group_by_length")
    line(f"equal tokens a step, smolalign packed / TRL group_by_length batch {equal_batch}", "smolalign packed",
         f"TRL unpacked, group_by_length, batch {equal_batch}")
    if s.compile:
        line("torch_compile / eager, smolalign packed", "smolalign packed, torch_compile", "smolalign packed")
        line("torch_compile / eager, TRL group_by_length", "TRL unpacked, group_by_length, torch_compile",
             "TRL unpacked, group_by_length")
    if on_gpu():
        line("per-document attention / 4-D mask, smolalign packed", "smolalign packed, per-document attention",
             "smolalign packed")
    else:
        line("per-document attention / 4-D mask, smolalign packed", "smolalign packed", "smolalign packed, 4-D mask")
    best_gpu = "TRL best GPU setting (padding-free, flash-attn if installed, Liger, fused AdamW)"
    line("smolalign (its GPU speed settings) / TRL best GPU setting, equal tokens a step", "smolalign packed",
         best_gpu, " (target >= 1.0x)")
    line("smolalign packed / TRL packed (padding-free)", "smolalign packed", "TRL packed (padding-free)",
         " (reference)")
    line("smolalign packed, varlen / TRL best GPU setting, equal tokens a step", "smolalign packed, varlen", best_gpu,
         " (target >= 1.2x)")
    line("varlen / 4-D mask, smolalign packed", "smolalign packed, varlen", "smolalign packed")
    if s.smoltalk:
        line("smolalign packed / TRL group_by_length, equal tokens a step", "smolalign packed",
             "TRL unpacked, group_by_length")
    line("smolalign unpacked / TRL unpacked (same)", "smolalign unpacked", "TRL unpacked (padded)",
         " (target >= 0.98x)")
    line("packed / unpacked at equal tokens a step", "smolalign packed", f"smolalign unpacked, batch {equal_batch}")


def chosen(name: str, part: str) -> bool:
    """`--sides` parts: "=name" is that side alone, any other text the sides whose names contain it."""
    return name == part[1:] if part.startswith("=") else part in name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="every side in seconds: checks the bench runs")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--reps", type=int)
    parser.add_argument("--attn")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--preset", help="model preset (default tiny; on a GPU e.g. smollm2-135m)")
    parser.add_argument("--model", help="a saved model directory instead of a preset (e.g. the real SmolLM2-135M "
                        "from `smolalign model import`)")
    parser.add_argument("--max-length", type=int, help="max_length of every side (default 512)")
    parser.add_argument("--batch", type=int, help="rows a step of the main sides (default 8)")
    parser.add_argument("--rows", type=int, help="chat rows (default 1500)")
    parser.add_argument("--sides", help='run only these sides: "part of a name;=whole name;..."')
    parser.add_argument("--accumulation", type=int, help="gradient accumulation of every side (default 1)")
    parser.add_argument("--smoltalk", action="store_true", help="the recipe's shape: SmolTalk-like multi-turn rows, "
                        "max_length 8192, 1 packed row x 8 accumulation (~64k tokens a step) unless given")
    options = parser.parse_args(argv)
    s = TINY if options.tiny else Settings()
    if options.smoltalk:
        s = replace(s, smoltalk=True, **({} if options.tiny else {"max_length": 8192, "batch": 1, "accumulation": 8,
                                                                   "rows": 2000, "steps": 12, "warmup_steps": 4,
                                                                   "logging_steps": 2}))
    s = replace(s, accumulation=options.accumulation or s.accumulation, steps=options.steps or s.steps,
                reps=options.reps or s.reps, attn=options.attn or s.attn,
                compile=s.compile and not options.no_compile, threads=options.threads or s.threads,
                preset=options.preset or s.preset, rows=options.rows or s.rows, model=options.model or s.model,
                max_length=options.max_length or s.max_length, batch=options.batch or s.batch)
    if s.threads:
        import torch

        torch.set_num_threads(s.threads)
    if 0 < s.steps < s.warmup_steps + s.logging_steps:
        parser.error(f"--steps must be at least {s.warmup_steps + s.logging_steps}: the first {s.warmup_steps} "
                     f"are warm-up, and the steady state needs a log after them")
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = (smoltalk_like_data if s.smoltalk else variable_length_data)(tmp / "rows.jsonl", s.rows, s.max_length)
        lengths = token_lengths(data, s.max_length, s.model)
        # unpacked rows per step that carry as many real tokens as a full packed step
        equal_batch = max(s.batch, round(s.batch * s.max_length / statistics.mean(lengths)))
        rows = [side for side in sides(s, equal_batch)
                if not options.sides or any(chosen(side.name, part) for part in options.sides.split(";"))]
        quick = replace(s, steps=s.warmup_steps + s.logging_steps)
        for side in rows if not options.tiny else []:  # warm-up: imports, allocator, compile caches
            measure(side, data, tmp / "warm", quick)
        runs = {side.name: [] for side in rows}
        for rep in range(s.reps):  # interleaved, so that a change in machine load hits every side alike
            for side in rows:
                runs[side.name].append(measure(side, data, tmp / f"{rep}-{len(runs[side.name])}", s))
                print(f"measured: rep {rep + 1}, {side.name}: {runs[side.name][-1][0]:,.0f} real tok/s",
                      file=sys.stderr, flush=True)
    report(runs, s, lengths, equal_batch)


if __name__ == "__main__":
    main()
