"""SFT throughput in real (non-padding) tokens per second, measured in one run on this machine.

1. `smolalign sft` against a plain script that calls TRL's SFTTrainer directly, same model, data and settings
   (target: at least 1.0x).
2. Packed (BFD, padding-free) against unpacked (padded batches), on variable-length chat data
   (target on CPU: at least 1.2x), with the attention implementation named.

Run by hand: `python bench/sft_throughput.py [--steps N] [--attn sdpa]`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def variable_length_data(path: Path, rows: int = 3000, seed: int = 0) -> Path:
    """Chat rows from 20 to ~500 tokens: where padding wastes work and packing should pay."""
    from smolalign.tasks import WORDS

    rng = random.Random(seed)
    lines = []
    for _ in range(rows):
        word, times = rng.choice(WORDS), int(rng.paretovariate(1.2) * 2) % 120 + 1
        lines.append(json.dumps({"messages": [
            {"role": "user", "content": f"Repeat the word {word} {times} times."},
            {"role": "assistant", "content": " ".join([word] * times)}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def training_settings(out: Path, steps: int, packing: bool, attn: str) -> list[str]:
    return [f"training.output_dir={out}", f"training.max_steps={steps}", "training.save_strategy=no",
            "training.report_to=[]", "training.logging_steps=5", "training.max_length=512",
            "training.per_device_train_batch_size=8", f"training.packing={str(packing).lower()}",
            f"model.attn_implementation={attn}", "data.eval_split=null"]


def smolalign_tokens_per_second(data: Path, out: Path, steps: int, packing: bool, attn: str) -> float:
    from smolalign.train.sft import run_sft

    run_sft("debug/sft", [f"data.dataset={data}", *training_settings(out, steps, packing, attn)], overwrite=True)
    final = [json.loads(line) for line in (out / "metrics.jsonl").open()][-1]
    return final["tokens_seen"] / final["train_runtime"]


def plain_trl_tokens_per_second(data: Path, out: Path, steps: int, packing: bool, attn: str) -> float:
    """What a user would write by hand with TRL: same model, template, data and settings, no smolalign."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from smolalign.chat_template import SMOLLM2_CHAT_TEMPLATE
    from smolalign.modeling import build_model

    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes/debug/tokenizer")
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.eos_token = "<|im_end|>"
    model = build_model("tiny", tokenizer, seed=42)
    model.config._attn_implementation = attn
    args = SFTConfig(output_dir=str(out), max_steps=steps, save_strategy="no", report_to=[], logging_steps=5,
                     max_length=512, per_device_train_batch_size=8, packing=packing, bf16=False,
                     activation_checkpointing=False, assistant_only_loss=True, learning_rate=3e-3,
                     lr_scheduler_type="cosine", warmup_steps=0.1, seed=42,
                     include_num_input_tokens_seen="non_padding")
    train = datasets.load_dataset("json", data_files=str(data), split="train")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    result = trainer.train()
    return trainer.state.num_input_tokens_seen / result.metrics["train_runtime"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--attn", default="sdpa")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = variable_length_data(tmp / "varlen.jsonl")
        rows = {}
        # warm-up so the first measured run does not pay for imports and caches
        plain_trl_tokens_per_second(data, tmp / "warm", 5, True, options.attn)
        rows["plain TRL, packed"] = plain_trl_tokens_per_second(data, tmp / "a", options.steps, True, options.attn)
        rows["smolalign, packed"] = smolalign_tokens_per_second(data, tmp / "b", options.steps, True, options.attn)
        rows["smolalign, unpacked"] = smolalign_tokens_per_second(data, tmp / "c", options.steps, False, options.attn)
    print(f"\nreal (non-padding) tokens/s, tiny preset, {options.attn}, CPU threads {os.cpu_count()}:")
    for name, value in rows.items():
        print(f"  {name:22s} {value:10,.0f}")
    print(f"ratio smolalign / plain TRL (packed):   {rows['smolalign, packed'] / rows['plain TRL, packed']:.2f}x "
          f"(target >= 1.0x)")
    print(f"ratio packed / unpacked (smolalign):    {rows['smolalign, packed'] / rows['smolalign, unpacked']:.2f}x "
          f"(target >= 1.2x on CPU)")


if __name__ == "__main__":
    main()
