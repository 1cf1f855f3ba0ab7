"""How packed SFT rows keep documents apart under sdpa, each way checked and timed on one packed batch.

The ways (train/packing.py, `speed.packed_attention`): the 4-D block-causal mask (every document pair of a row is
computed, then masked), `by_document` (sdpa on each document alone: one launch a document) and `varlen` (torch's
own FlashAttention varlen kernel over the same document offsets: one launch a layer, no mask, no cross-document
work). On one batch of SmolTalk-like rows packed to 8,192 tokens, each way's loss and gradients must equal the
4-D mask's, and forward + backward is timed (median of 10 after 3 warm-ups) with its peak memory.

On a GPU (CUDA torch >= 2.10): the real varlen kernel, bf16, the 135M preset. `--tiny` (no GPU): a reference
stand-in for the CUDA-only kernel (per-document sdpa on the flattened tokens), fp32, the tiny preset, 256 tokens:
it checks everything around the kernel and proves the script runs (tests/test_bench.py).

    python bench/packed_attention.py [--tiny] [--preset smollm2-135m] [--max-length 8192] [--rows 2]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def reference_varlen(query, key, value, offsets, longest, scale, gqa):
    """CPU stand-in for torch's CUDA varlen kernel: causal sdpa on each segment of [tokens, heads, dim]."""
    import torch

    bounds = offsets.tolist()
    return torch.cat([torch.nn.functional.scaled_dot_product_attention(
        query[a:b].transpose(0, 1), key[a:b].transpose(0, 1), value[a:b].transpose(0, 1), is_causal=True,
        scale=scale, enable_gqa=gqa).transpose(0, 1) for a, b in zip(bounds, bounds[1:])])


def packed_batch(tokenizer, rows: int, max_length: int, device):
    """`rows` packed rows of SmolTalk-like conversations (bench/sft_throughput.py's generator), as the SFT
    collator makes them: input ids, labels, position ids, document offsets."""
    import tempfile

    import datasets
    from trl.data_utils import pack_dataset

    from sft_throughput import smoltalk_like_data
    from smolalign.train.packing import PackedRowsCollator

    with tempfile.TemporaryDirectory() as tmp:
        path = smoltalk_like_data(Path(tmp) / "rows.jsonl", 400, max_length)
        data = datasets.load_dataset("json", data_files=str(path), split="train")
        tokenized = data.map(lambda row: {"input_ids": tokenizer.apply_chat_template(row["messages"], tokenize=True,
                                                                                    return_dict=True)["input_ids"]},
                             remove_columns=data.column_names)
        tokenized = tokenized.map(lambda row: {"input_ids": row["input_ids"][:max_length]})
        packed = pack_dataset(tokenized, max_length, strategy="bfd")
        examples = [packed[i] for i in range(rows)]
    collator = PackedRowsCollator(pad_token_id=tokenizer.pad_token_id, pad_to_multiple_of=max_length,
                                  by_document=True)
    batch = collator(examples)
    return {key: value.to(device) if hasattr(value, "to") else value for key, value in batch.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--preset", default="smollm2-135m")
    parser.add_argument("--max-length", type=int, default=8192)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    import torch
    from transformers import AttentionInterface, AutoTokenizer
    from transformers.masking_utils import AttentionMaskInterface

    from smolalign.model.build import build_model
    from smolalign.train.packing import (_mask_for_document_attention, block_causal_mask, sdpa_by_document,
                                         sdpa_varlen, varlen_available)
    from smolalign.train.templates import prepare_chat_tokenizer

    gpu = torch.cuda.is_available() and not options.tiny
    preset, max_length, repeats = ("tiny", 256, 2) if options.tiny else (options.preset, options.max_length,
                                                                          options.repeats)
    device = torch.device("cuda" if gpu else "cpu")
    dtype = torch.bfloat16 if gpu else torch.float32
    print(f"machine: {torch.cuda.get_device_name() if gpu else 'CPU'}, torch {torch.__version__}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(REPO / "recipes/debug/tokenizer")
    prepare_chat_tokenizer(tokenizer)
    model = build_model(preset, tokenizer, seed=0, dtype=dtype).to(device)
    model.config.use_cache = False
    batch = packed_batch(tokenizer, options.rows, max_length, device)
    real = batch["input_ids"] != tokenizer.pad_token_id
    varlen = sdpa_varlen if gpu and varlen_available() else functools.partial(sdpa_varlen, kernel=reference_varlen)
    for name, function in (("bench_by_document", sdpa_by_document), ("bench_varlen", varlen)):
        AttentionInterface.register(name, function)
        AttentionMaskInterface.register(name, _mask_for_document_attention)
    ways = {
        "4-D mask": ("sdpa", {"attention_mask": block_causal_mask(batch["position_ids"], real)}),
        "by_document": ("bench_by_document", {"cu_seq_lens_q": batch["cu_seq_lens_q"]}),
        "varlen" + ("" if gpu else " (CPU stand-in)"): ("bench_varlen", {
            "cu_seq_lens_q": batch["cu_seq_lens_q"], "max_length_q": batch["max_length_q"]}),
    }
    documents = len(batch["cu_seq_lens_q"]) - 1
    print(f"{preset}, {options.rows} packed rows of {max_length} tokens, {documents} segments, {int(real.sum()):,} "
          f"real tokens, {str(dtype).split('.')[-1]}")

    def step(attention: str, extra: dict):
        model.config._attn_implementation = attention
        model.zero_grad(set_to_none=True)
        out = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], labels=batch["labels"],
                    **extra)
        out.loss.backward()
        return out.loss.detach().float(), [p.grad.float() for p in model.parameters() if p.grad is not None]

    results, reference = {}, None
    for name, (attention, extra) in ways.items():
        loss, grads = step(attention, extra)
        if reference is None:
            reference = (loss, grads)
        worst = max(float((a - b).abs().max() / (b.abs().max() + 1e-12)) for a, b in zip(grads, reference[1]))
        same = bool(torch.isclose(loss, reference[0], rtol=2e-2 if gpu else 1e-5)) and worst < (5e-2 if gpu else
                                                                                                  1e-4)
        for _ in range(3 if not options.tiny else 1):
            step(attention, extra)
        times = []
        if gpu:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        for _ in range(repeats):
            started = time.perf_counter()
            step(attention, extra)
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else float("nan")
        results[name] = statistics.median(times)
        print(f"  {name:24s} loss {float(loss):.5f}  worst gradient difference {worst:.2e} (relative)  "
              f"{'EQUAL' if same else 'DIFFERENT'}  fwd+bwd {results[name] * 1e3:8.1f} ms  peak {peak:.2f} GiB",
              flush=True)
        if not same:
            print(f"FAILED: {name} does not equal the 4-D mask")
            sys.exit(1)
    mask = results["4-D mask"]
    for name, seconds in results.items():
        if name != "4-D mask":
            print(f"ratio {name} / 4-D mask (speed, fwd+bwd): {mask / seconds:.2f}x")


if __name__ == "__main__":
    main()
