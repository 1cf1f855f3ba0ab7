"""SFT preprocessing time on N chat rows: the data report built from TRL's own tokenized dataset (today) against
the earlier report that tokenised every row a second time through the chat template before TRL did.

Both sides load the same rows and build the same SFTTrainer (tokenize, labels, BFD packing); the earlier side also
runs the second tokenization. Median of 3, one run, this machine. Run by hand:
`python bench/sft_preprocess.py [--rows 100000] [--repeats 3]`.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def second_tokenization_report(dataset, tokenizer, max_length):
    """The earlier report: every row through the chat template again, with the assistant mask."""

    def measure(batch):
        lengths, trained = [], []
        for messages in batch["messages"]:
            out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=True)
            lengths.append(len(out["input_ids"]))
            trained.append(sum(out["assistant_masks"][:max_length]))
        return {"n_tokens": lengths, "n_trained": trained}

    measured = dataset.map(measure, batched=True, remove_columns=dataset.column_names, desc="Measuring tokens")
    return {"rows": len(measured), "tokens": sum(measured["n_tokens"]), "trained_tokens": sum(measured["n_trained"])}


def preprocess_seconds(rows: int, second_pass: bool, work: Path) -> tuple[float, dict]:
    import datasets
    from trl import SFTConfig, SFTTrainer

    from smolalign.config import DataSection
    from smolalign.data import load_data
    from smolalign.model.build import build_model
    from smolalign.model.load import load_tokenizer
    from smolalign.data.debug_tasks import chat_rows
    from smolalign.train.templates import prepare_chat_tokenizer
    from smolalign.train.sft import tokenized_report

    datasets.disable_caching()  # every repetition pays for its own tokenization, as a fresh run would
    base = chat_rows("train")
    path = work / f"rows-{rows}.jsonl"
    if not path.exists():
        import json

        path.write_text("".join(json.dumps(base[i % len(base)]) + "\n" for i in range(rows)))
    tokenizer = load_tokenizer(str(REPO / "recipes/debug/tokenizer"))
    prepare_chat_tokenizer(tokenizer)
    model = build_model("tiny", tokenizer)
    started = time.perf_counter()
    data = load_data(DataSection(dataset=str(path)), "chat")
    if second_pass:
        report = second_tokenization_report(data.train, tokenizer, 512)
    args = SFTConfig(output_dir=str(work / "out"), max_length=512, packing=True, assistant_only_loss=True,
                     bf16=False, activation_checkpointing=False, report_to=[])
    trainer = SFTTrainer(model=model, args=args, train_dataset=data.train, processing_class=tokenizer)
    if not second_pass:
        report = tokenized_report(trainer.train_dataset, 512, None)
    return time.perf_counter() - started, report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        preprocess_seconds(min(options.rows, 500), True, work)  # warm-up: imports, first-call costs
        before, after = [], []
        for _ in range(options.repeats):
            seconds, old = preprocess_seconds(options.rows, True, work)
            before.append(seconds)
            seconds, new = preprocess_seconds(options.rows, False, work)
            after.append(seconds)
    print(f"\nSFT preprocessing of {options.rows:,} chat rows, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, median of {options.repeats}:")
    print(f"  second tokenization for the report (before): {statistics.median(before):8.2f} s")
    print(f"  report from TRL's tokenized dataset (now):   {statistics.median(after):8.2f} s")
    print(f"  ratio before / now: {statistics.median(before) / statistics.median(after):.2f}x")
    print(f"  same counts: rows {old['rows']} / {new['rows']}, trained tokens {old['trained_tokens']} / "
          f"{new['trained_tokens']}")


if __name__ == "__main__":
    main()
