"""DPO at its recipe's max_length: pairs a second and peak memory, smolalign against TRL's best GPU setting, and
with the reference's log-probs precomputed (the reference model is then never on the GPU while training).

Sides, all on the same model (a preset), the same UltraFeedback-shaped pairs (prompts log-normal around 150 tokens,
answers around 300, cut at max_length 1,024 as the recipe does) and the same batch of pairs a step:
- `smolalign dpo`, the command with its GPU defaults (recipes/dpo.yaml, size shrunk);
- the same with `training.precompute_ref_log_probs=true`;
- TRL's DPOTrainer as a competent user sets it on a GPU: bf16, Liger's fused DPO loss where installed, fused AdamW,
  padding-free where flash-attn is installed.
Steady state: the first logs are left out; one run a side after a warm-up (bench/gpu.sh's time is short).

    python bench/dpo_throughput.py [--tiny] [--preset smollm2-135m] [--steps 16] [--batch 8]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TOKENIZER = REPO / "recipes" / "debug" / "tokenizer"


def pairs(path: Path, rows: int, seed: int = 0) -> Path:
    from smolalign.data.debug_tasks import WORDS

    rng = random.Random(seed)

    def text(median: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(max(1, min(900, int(rng.lognormvariate(math.log(median),
                                                                                                 0.8))))))

    lines = [json.dumps({"prompt": [{"role": "user", "content": text(150)}],
                         "chosen": [{"role": "assistant", "content": text(300)}],
                         "rejected": [{"role": "assistant", "content": text(300)}]}) for _ in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def clock(records: list):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                records.append((state.global_step, time.perf_counter()))

    return Clock()


def smolalign_side(data: Path, out: Path, preset: str, steps: int, batch: int, max_length: int, records: list,
                   extra: list[str]) -> None:
    import smolalign.train.dpo as dpo

    build = dpo.dpo_trainer

    def timed(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(clock(records))
        return trainer

    dpo.dpo_trainer = timed
    cpu = [] if gpu() else ["training.bf16=false"]
    try:
        dpo.run_dpo("dpo", ["model.name_or_path=null", f"model.preset={preset}", f"model.tokenizer={TOKENIZER}",
                            f"data.dataset={data}", "data.split=train", "data.eval_split=null",
                            "data.max_truncated_fraction=1.0", f"training.output_dir={out}",
                            f"training.max_steps={steps}", "training.logging_steps=2", "training.save_strategy=no",
                            "training.eval_strategy=no", "training.report_to=[]", f"training.max_length={max_length}",
                            f"batch.global_rows={batch}", f"training.per_device_train_batch_size={batch}",
                            "speed.fit_micro_batch=false", *cpu, *extra], overwrite=True)
    finally:
        dpo.dpo_trainer = build


def trl_side(data: Path, out: Path, preset: str, steps: int, batch: int, max_length: int, records: list) -> None:
    import datasets
    import importlib.util
    import torch
    from transformers import AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from smolalign.model.build import build_model

    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    on_gpu = gpu()
    model = build_model(preset, tokenizer, seed=0, dtype=torch.bfloat16 if on_gpu else torch.float32)
    flash = on_gpu and importlib.util.find_spec("flash_attn") is not None
    model.config._attn_implementation = "flash_attention_2" if flash else "sdpa"
    args = DPOConfig(output_dir=str(out), max_steps=steps, logging_steps=2, save_strategy="no", report_to=[],
                     per_device_train_batch_size=batch, max_length=max_length, beta=0.5, learning_rate=1e-6,
                     bf16=on_gpu, activation_checkpointing=on_gpu, padding_free=flash,
                     use_liger_kernel=on_gpu and importlib.util.find_spec("liger_kernel") is not None,
                     optim="adamw_torch_fused" if on_gpu else "adamw_torch", use_cpu=not on_gpu)
    train = datasets.load_dataset("json", data_files=str(data), split="train")
    # a model built in memory has no path for TRL to load the reference from: the same weights, frozen
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    DPOTrainer(model=model, ref_model=reference, args=args, train_dataset=train, processing_class=tokenizer,
               callbacks=[clock(records)]).train()


def gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    options = parser.parse_args()
    import torch

    from smolalign.quiet import quiet_output

    quiet_output()
    preset, steps, batch, max_length = ("tiny", 6, 2, 256) if options.tiny else (
        options.preset, options.steps, options.batch, 1024)
    print(f"machine: {torch.cuda.get_device_name() if gpu() else 'CPU'}, torch {torch.__version__}; {preset}, "
          f"{batch} pairs a step, max_length {max_length}", flush=True)
    sides = {"smolalign dpo": lambda *a: smolalign_side(*a, extra=[]),
             "smolalign dpo, precomputed reference": lambda *a: smolalign_side(
                 *a, extra=["training.precompute_ref_log_probs=true"]),
             "TRL best GPU setting": trl_side}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = pairs(Path(tmp) / "pairs.jsonl", max(64, steps * batch * 2))
        if not options.tiny:  # imports, allocator, kernels
            smolalign_side(data, Path(tmp) / "warm", preset, 4, batch, max_length, [], extra=[])
        for name, side in sides.items():
            records = []
            if gpu():
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats()
            side(data, Path(tmp) / name.replace(" ", "-"), preset, steps, batch, max_length, records)
            peak = torch.cuda.max_memory_allocated() / 2**30 if gpu() else float("nan")
            (first_step, first), (last_step, last) = records[1 if len(records) > 2 else 0], records[-1]
            rate = (last_step - first_step) * batch / (last - first) if last > first else float("nan")
            results[name] = (rate, peak)
            print(f"  {name:40s} {rate:8.1f} pairs/s   peak {peak:6.2f} GiB", flush=True)
    ours, precomputed, trl = (results[name] for name in sides)
    print(f"ratio smolalign dpo / TRL best GPU setting (pairs/s): {ours[0] / trl[0]:.2f}x")
    print(f"ratio smolalign dpo, precomputed reference / TRL best GPU setting (pairs/s): "
          f"{precomputed[0] / trl[0]:.2f}x")
    if gpu():
        print(f"peak memory: smolalign {ours[1]:.2f} GiB, precomputed reference {precomputed[1]:.2f} GiB, TRL "
              f"{trl[1]:.2f} GiB")


if __name__ == "__main__":
    main()
