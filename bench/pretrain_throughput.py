"""Pretraining throughput and resume cost, measured in one run on this machine.

1. Tokens/s of `smolalign pretrain` (its Trainer, block index and collator, the whole command) against a bare
   PyTorch loop over the same blocks with the same model, AdamW, WSD schedule and gradient clipping, timed over
   the training itself. Both warm up first, then run in rounds (bare, smolalign); the ratio is the median of the
   rounds' ratios (target: >= 0.98x), by wall clock and by process CPU time (fairer where others load the
   machine too).
2. Resume overhead at two positions. (a) End to end: `smolalign pretrain --resume` from a checkpoint early and
   late in a run (same work after it). (b) Positioning the data at step 10 and at step 1,000,000 through the
   Trainer's own data loader, against the replay transformers does by default (`skip_first_batches`). Target:
   flat.
3. `--gpu [--preset P[:BATCH],...] [--best] [--weights fp32,bf16]`: presets (360M by default) at 2,048 tokens on
   synthetic blocks, with fp32 master weights under bf16 autocast and/or pure bf16 weights: tokens/s,
   MFU (6N + 12·L·H·Q·T FLOPs a token against the device's dense bf16 peak) and peak GPU memory for the pretraining
   Trainer and a bare loop with the same weights and kernels; `--best` gives both the speed settings that
   train/speed.py chooses for the machine. Under 3 minutes a preset on one H100.

Run by hand: `python bench/pretrain_throughput.py [--steps N]`, `--tiny` (a test runs it), `--gpu [--compile]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads "
            f"{torch.get_num_threads()}, {device}, torch {torch.__version__}")


# ---------------------------------------------------------------- 1. smolalign pretrain vs a bare loop (CPU)


def recipe_overrides(out: Path, steps: int, block: int, batch: int, cache: Path) -> list[str]:
    return [f"training.output_dir={out}", f"data.block_size={block}", f"data.cache_dir={cache}",
            f"stages=[{{name: bench, tokens: {steps * batch * block}, mixture: {{prose: 0.5, arith: 0.5}}}}]",
            f"training.per_device_train_batch_size={batch}", "training.save_strategy=no", "training.report_to=[]",
            "training.logging_steps=10", "training.warmup_steps=2"]


class Clock:
    """Wall and process CPU time (all of this process's threads) of one stretch of training. On a machine that
    others load too, CPU time is the fairer comparison; on an idle one the two agree."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def smolalign_run(out: Path, steps: int, block: int, batch: int, cache: Path, extra=()) -> dict:
    """The whole command in this process; the clock covers its `train()` call, as the bare loop's covers its loop."""
    from smolalign.train.pretrain import trainer as pretrain_trainer
    from smolalign.train.pretrain.command import run_pretrain

    clock, train = Clock(), pretrain_trainer.PretrainTrainer.train

    def timed_train(self, *args, **kwargs):
        with clock:
            return train(self, *args, **kwargs)

    pretrain_trainer.PretrainTrainer.train = timed_train  # measurement only; the trainer itself is unchanged
    try:
        run_pretrain("debug/pretrain", recipe_overrides(out, steps, block, batch, cache) + list(extra), overwrite=True)
    finally:
        pretrain_trainer.PretrainTrainer.train = train
    tokens = steps * batch * block
    return {"wall": tokens / clock.wall, "cpu": tokens / clock.cpu}


def bare_loop(steps: int, block: int, batch: int, cache: Path, preset: str = "tiny") -> dict:
    """What a user would write by hand: the same blocks, model, AdamW, WSD schedule and clipping."""
    import torch
    from transformers import AutoTokenizer, get_wsd_schedule

    from smolalign.config import load_recipe
    from smolalign.model.build import build_model
    from smolalign.train.pretrain import command
    from smolalign.train.resolve import recipe_defaults
    from smolalign.train.speed import machine_facts

    recipe = load_recipe("debug/pretrain", "pretrain", recipe_overrides(Path("unused"), steps, block, batch, cache),
                         recipe_defaults(command, machine_facts()), schema=command.SCHEMA)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    index, _ = command.block_index(recipe, command.plan_for(recipe, recipe.training_args()), tokenizer)
    model = build_model(preset, tokenizer, seed=42)
    model.config.use_cache = False
    model.train()
    clock = Clock().__enter__()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01,
                                  fused=True)
    schedule = get_wsd_schedule(optimizer, 2, round(0.1 * steps), num_training_steps=steps, decay_type="linear")
    import numpy as np

    def stack(rows):
        return torch.from_numpy(np.stack([row["input_ids"] for row in rows]))

    loader = torch.utils.data.DataLoader(index, batch_size=batch, shuffle=False, collate_fn=stack)
    for step, ids in enumerate(loader):
        if step == steps:
            break
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 10 == 0:
            loss.item()  # the Trainer reads the loss once per logging interval too
    clock.__exit__()
    return {"wall": steps * batch * block / clock.wall, "cpu": steps * batch * block / clock.cpu}


def compare_throughput(tmp: Path, steps: int, block: int, batch: int, repeats: int, warm_up: bool = True) -> dict:
    cache = tmp / "blocks"
    if warm_up:  # both sides (imports, caches, first-call allocations)
        bare_loop(3, block, batch, cache)
        smolalign_run(tmp / "warm", 3, block, batch, cache)
    bare, ours = [], []
    for round_ in range(repeats):
        bare.append(bare_loop(steps, block, batch, cache))
        ours.append(smolalign_run(tmp / f"run{round_}", steps, block, batch, cache))
    # each round's two runs are neighbours in time: the median of their ratios resists load that drifts
    return {clock: {"bare": statistics.median(r[clock] for r in bare),
                    "smolalign": statistics.median(r[clock] for r in ours),
                    "ratio": statistics.median(o[clock] / b[clock] for o, b in zip(ours, bare)),
                    "bare runs": [r[clock] for r in bare], "smolalign runs": [r[clock] for r in ours]}
            for clock in ("wall", "cpu")}


# ---------------------------------------------------------------- 2. resume overhead


def resume_end_to_end(tmp: Path, steps: int, block: int, batch: int, positions: tuple[int, int],
                      warm_up: bool = True) -> dict:
    """Resume from a checkpoint at each position and train 2 more steps; the difference is what position costs.
    A first, unmeasured resume pays the one-time costs of loading a checkpoint in this process."""
    from smolalign.train.checkpoints import checkpoints

    cache, base = tmp / "blocks", tmp / "resume-base"
    save = ["training.save_strategy=steps", f"training.save_steps={positions[0]}"]
    smolalign_run(base, steps, block, batch, cache, save)
    from smolalign.train.pretrain.command import run_pretrain

    clocks = {}
    for number, position in enumerate(positions[:1] * warm_up + positions):
        run = tmp / f"resume-{number}-{position}"
        shutil.copytree(base, run)
        for step, path in checkpoints(run):
            if step != position:
                shutil.rmtree(path)
        with Clock() as clocks[position]:
            run_pretrain("debug/pretrain", recipe_overrides(run, steps, block, batch, cache) + save
                         + [f"training.max_steps={position + 2}"], resume=True)
    return clocks


def positioning(tmp: Path, block: int, batch: int, steps_at: tuple[int, int]) -> dict:
    """Seconds to the first batch at a resumed step: our sampler's start vs transformers' default replay."""
    import torch
    from accelerate import skip_first_batches
    from transformers import AutoTokenizer, TrainingArguments

    from smolalign.config import load_recipe
    from smolalign.data.blocks import IndexStage, MixtureIndex
    from smolalign.model.build import build_model
    from smolalign.train.pretrain import command
    from smolalign.train.resolve import recipe_defaults
    from smolalign.train.speed import machine_facts
    from smolalign.train.pretrain.command import make_trainer
    from smolalign.train.pretrain.stages import Stage, make_plan

    cache = tmp / "blocks"
    recipe = load_recipe("debug/pretrain", "pretrain", recipe_overrides(Path("unused"), 10, block, batch, cache),
                         recipe_defaults(command, machine_facts()), schema=command.SCHEMA)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    _, files = command.block_index(recipe, command.plan_for(recipe, recipe.training_args()), tokenizer)
    mixture = {"prose": 0.5, "arith": 0.5}
    plan = make_plan([Stage("big", 1e12, mixture, block)], batch, 1, 1)  # ~4e9 blocks, indexed lazily
    index = MixtureIndex([IndexStage("big", plan.total_steps * batch, block, mixture)], files, seed=42)
    training = {"warmup_steps": 2, "lr_scheduler_kwargs": {"num_decay_steps": 0.1}}
    args = TrainingArguments(output_dir=str(tmp / "pos"), per_device_train_batch_size=batch, report_to=[],
                             lr_scheduler_type="warmup_stable_decay", use_cpu=not torch.cuda.is_available())
    trainer = make_trainer(build_model("tiny", tokenizer), tokenizer, args, index, plan, training)
    trainer.state.global_step = 0
    next(iter(trainer.get_train_dataloader()))  # warm-up: open the block files, build the permutations
    out = {}
    for step in steps_at:
        trainer.state.global_step = step
        loader = trainer.get_train_dataloader()
        started = time.perf_counter()
        next(iter(loader))
        ours = time.perf_counter() - started
        trainer.state.global_step = 0  # what transformers does by default: start at 0 and skip `step` batches
        replay = skip_first_batches(trainer.get_train_dataloader(), step)
        started = time.perf_counter()
        next(iter(replay))
        out[step] = (ours, time.perf_counter() - started)
    return out


# ---------------------------------------------------------------- 3. GPU: MFU of the 360M preset at 2048


def synthetic_files(root: Path, vocab: int, block: int, blocks: int) -> dict:
    import numpy as np

    from smolalign.data.blocks import BlockFile

    rng = np.random.default_rng(0)
    files = {}
    for name in ("web", "code"):
        (root / name).mkdir(parents=True, exist_ok=True)
        rng.integers(0, vocab, size=blocks * block, dtype=np.uint16).tofile(root / name / "blocks.bin")
        files[(name, block)] = BlockFile(name, root / name, block, blocks, "uint16", name, blocks)
    return files


def gpu_mfu(tmp: Path, preset: str, block: int, batch: int, steps: int, compile_: bool, best: bool = False,
            weights: str = "bf16") -> None:
    """Tokens/s, MFU and peak memory of the pretraining Trainer and of a bare loop with the same weights and the same
    kernels. `weights`: fp32 (master weights under bf16 autocast: `smolalign pretrain`'s default on a GPU) or bf16
    (pure bf16, `model.dtype=bfloat16`). `best`: the speed settings train/speed.py chooses for this machine (Liger
    where installed, else torch.compile; fused AdamW; flash-attn where installed; cuDNN attention off), on both
    sides."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainingArguments

    from smolalign.data.blocks import IndexStage, MixtureIndex
    from smolalign.model.build import count_parameters, llama_config
    from smolalign.model.load import choose_placement
    from smolalign.train.mfu import device_peak_flops, flops_per_token, mfu
    from smolalign.train.pretrain.command import make_trainer
    from smolalign.train.pretrain import command as pretrain
    from smolalign.train.pretrain.stages import Stage, make_plan
    from smolalign.train.speed import choose_speed, machine_facts

    on_gpu = torch.cuda.is_available()
    speed = {s.key: s.value for s in choose_speed(machine_facts(), pretrain)} if best else {}
    liger = bool(speed.get("training.use_liger_kernel"))
    compile_ = compile_ or bool(speed.get("training.torch_compile"))
    attention = speed.get("model.attn_implementation") or "sdpa"
    if speed.get("speed.cudnn_attention") is not None:  # both sides: the run's default (train/speed.py)
        torch.backends.cuda.enable_cudnn_sdp(speed["speed.cudnn_attention"])
    dtype = torch.float32 if weights == "fp32" or not on_gpu else choose_placement().torch_dtype
    config = llama_config(preset, vocab_size=49_152)
    config._attn_implementation = attention
    config.use_cache = False
    n = count_parameters(config)
    per_token = flops_per_token(n, config, block)
    peak, device = device_peak_flops()
    files = synthetic_files(tmp / "synthetic", 49_152, block, max(64, batch * 8))
    mixture = {"web": 0.7, "code": 0.3}
    plan = make_plan([Stage("bench", steps * batch * block, mixture, block)], batch, 1, 1)
    index = MixtureIndex([IndexStage("bench", plan.total_steps * batch, block, mixture)], files, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)  # only its eos id and saving are used

    def new_model():
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=dtype).to("cuda" if on_gpu else "cpu")

    def peak_memory() -> float | None:
        return torch.cuda.max_memory_allocated() if on_gpu else None

    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    args = TrainingArguments(output_dir=str(tmp / "gpu"), per_device_train_batch_size=batch, bf16=on_gpu,
                             learning_rate=3e-3, adam_beta2=0.95, weight_decay=0.01, max_grad_norm=1.0,
                             lr_scheduler_type="warmup_stable_decay", logging_steps=5, save_strategy="no",
                             report_to=[], include_num_input_tokens_seen="all", torch_compile=compile_,
                             optim="adamw_torch_fused", use_liger_kernel=liger,
                             dataloader_num_workers=2, use_cpu=not on_gpu, disable_tqdm=True)
    trainer = make_trainer(new_model(), tokenizer, args, index, plan,
                           {"warmup_steps": 2, "lr_scheduler_kwargs": {"num_decay_steps": 0.1}},
                           attn_implementation=attention)
    trainer.train()
    logs = [r for r in trainer.state.log_history if "tokens_per_second" in r][1:]  # the first interval warms up
    ours, ours_memory = statistics.median(r["tokens_per_second"] for r in logs), peak_memory()
    del trainer
    if on_gpu:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    model = new_model()
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    model = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    loader = torch.utils.data.DataLoader(index, batch_size=batch, num_workers=2, pin_memory=on_gpu)
    device_type = "cuda" if on_gpu else "cpu"
    marks = []
    for step, batch_ in enumerate(loader):
        if step == steps:
            break
        ids = batch_["input_ids"].to(device_type, non_blocking=True)
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=on_gpu):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % 5 == 4:
            loss.item()
            marks.append(time.perf_counter())
    rates = [5 * batch * block / (b - a) for a, b in zip(marks, marks[1:])]
    rates = rates[1:] if len(rates) > 1 else rates  # the first interval warms up
    bare, bare_memory = statistics.median(rates), peak_memory()
    print(f"{preset} ({n:,} parameters) at {block} tokens, batch {batch}, weights {str(dtype).split('.')[-1]}, "
          f"bf16={on_gpu}, {attention}, compile={compile_}, Liger={liger}, fused AdamW, {device}, peak "
          f"{peak / 1e12 if peak else float('nan'):.0f} TFLOP/s, {per_token / 1e9:.2f} GFLOP a token")
    for name, rate, memory in (("smolalign pretrain", ours, ours_memory), ("bare PyTorch loop", bare, bare_memory)):
        value = mfu(rate, per_token, peak, 1)
        peak_text = f"   peak memory {memory / 2**30:.1f} GiB" if memory is not None else ""
        print(f"  {name:20s} {rate:12,.0f} tokens/s   MFU {f'{value:.1%}' if value is not None else 'n/a'}{peak_text}")
    print(f"ratio smolalign pretrain / bare PyTorch loop (GPU, {preset}, {weights} weights): {ours / bare:.3f}x "
          f"(target >= 0.98x)", flush=True)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="Rounds of (bare loop, smolalign); median.")
    parser.add_argument("--tiny", action="store_true", help="A few steps, one repeat: proves the bench still runs.")
    parser.add_argument("--gpu", action="store_true", help="MFU of the 360M preset at 2048 in bf16.")
    parser.add_argument("--preset", default="smollm2-360m")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--best", action="store_true", help="With --gpu: the speed settings train/speed.py chooses.")
    parser.add_argument("--weights", default="bf16", help="With --gpu: fp32 (master weights, bf16 autocast), bf16, "
                        "or both as fp32,bf16.")
    options = parser.parse_args()
    print(machine(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if options.gpu:  # presets and weights may be lists: one process, one compile cache, every figure
            for preset_batch in options.preset.split(","):
                preset, _, batch = preset_batch.partition(":")
                for weights in options.weights.split(","):
                    gpu_mfu(tmp, preset, 2048 if options.block == 256 else options.block, int(batch or options.batch),
                            options.steps, options.compile, options.best, weights)
            return
        steps, repeats = (4, 1) if options.tiny else (options.steps, options.repeats)
        block = 64 if options.tiny else options.block
        speed = compare_throughput(tmp, steps, block, options.batch, repeats, warm_up=not options.tiny)
        resume_steps = 6 if options.tiny else options.steps
        early = max(1, resume_steps // 5)  # checkpoints every `early` steps; resume at the first and the fourth
        walls = resume_end_to_end(tmp, resume_steps, block, options.batch, (early, 4 * early), not options.tiny)
        late = 4 * early
        placed = positioning(tmp, block, options.batch, (10, 1000 if options.tiny else 1_000_000))
    for clock, unit in (("wall", "tokens/s"), ("cpu", "tokens per CPU-second")):
        rates = speed[clock]
        print(f"\n{unit}, tiny preset, {options.batch} x {block} tokens a step, {steps} steps, median of {repeats}:")
        for name, key in (("bare PyTorch loop", "bare"), ("smolalign pretrain", "smolalign")):
            runs = ", ".join(f"{v:,.0f}" for v in rates[f"{key} runs"])
            print(f"  {name:18s}  {rates[key]:10,.0f}   (runs: {runs})")
        print(f"ratio smolalign pretrain / bare PyTorch loop ({clock}): {rates['ratio']:.3f}x (median of the "
              f"rounds' ratios; target >= 0.98x)")
    first, second = walls[early], walls[late]
    print(f"\nresume overhead, end to end (`--resume`, then 2 steps): from step {early}: {first.wall:.2f} s wall, "
          f"{first.cpu:.2f} s CPU; from step {late}: {second.wall:.2f} s wall, {second.cpu:.2f} s CPU")
    print(f"ratio resume late / early (CPU time): {second.cpu / first.cpu:.2f}x (target: flat, ~1.0x)")
    (a, (ours_a, replay_a)), (b, (ours_b, replay_b)) = sorted(placed.items())
    print(f"resume overhead, data positioning: step {a:,}: {ours_a * 1e3:.1f} ms (transformers' replay "
          f"{replay_a * 1e3:.1f} ms); step {b:,}: {ours_b * 1e3:.1f} ms (replay {replay_b * 1e3:.1f} ms)")
    print(f"ratio positioning step {b:,} / step {a:,}: {ours_b / ours_a:.2f}x (target: flat; replay "
          f"{replay_b / replay_a:.0f}x)")


if __name__ == "__main__":
    main()
