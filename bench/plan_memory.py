"""`smolalign plan`'s memory estimate against what a training step really holds, measured in one run.

On a GPU: for each case (preset, micro-batch of 2,048-token rows, gradient checkpointing, Liger when installed, the
4-D block-causal mask of packed SFT rows), three steps of forward, backward and fused AdamW on one device with the
weights in the dtype smolalign loads them in (bf16), then `torch.cuda.max_memory_allocated` against the plan's
single-device total (plan/memory.py). On CPU (`--tiny`, which a test runs): the tiny preset in fp32, the bytes of
its weights, gradients and AdamW states and of the tensors autograd saves for backward, against the same formulas.

Run by hand: `python bench/plan_memory.py [--presets smollm2-135m,smollm2-360m] [--tiny]`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def build(preset: str, vocab: int | None, dtype, device: str, liger: bool):
    import torch
    from transformers import AutoModelForCausalLM

    from smolalign.model.build import llama_config

    config = llama_config(preset, vocab_size=vocab)
    config._attn_implementation, config.use_cache = "sdpa", False
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
    if liger:
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        _apply_liger_kernel_to_instance(model=model)
    model.train()
    return model, config


def batch(config, rows: int, length: int, device: str, block_mask: bool):
    """Random token rows; with `block_mask`, packed rows of documents of random lengths and their 4-D mask."""
    import torch

    from smolalign.train.packing import block_causal_mask

    ids = torch.randint(0, config.vocab_size, (rows, length), device=device)
    inputs = {"input_ids": ids, "labels": ids}
    if block_mask:
        positions = torch.cat([torch.arange(n, device=device) for n in (length // 4, length // 2, length // 4)])
        positions = positions.expand(rows, length).contiguous()
        inputs.update(position_ids=positions,
                      attention_mask=block_causal_mask(positions, torch.ones_like(ids)))
    return inputs


def gpu_case(preset: str, rows: int, checkpointing: bool, liger: bool, block_mask: bool,
             master: bool = False) -> tuple[float, float]:
    """(measured peak bytes, planned bytes) on this GPU; `master`: fp32 weights under bf16 autocast (pretraining's
    default on a GPU), else bf16 weights."""
    import torch

    from smolalign.plan.memory import Shape, estimate
    from smolalign.plan.model import arch_of

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model, config = build(preset, None, torch.float32 if master else torch.bfloat16, "cuda", liger)
    if checkpointing:
        model.activation_checkpointing_enable()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    for _ in range(3):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=master):
            loss = model(**batch(config, rows, 2048, "cuda", block_mask)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated()
    shape = Shape(rows=rows, sequence=2048, checkpointing=checkpointing, liger=liger, block_mask=block_mask,
                  weight_bytes=4 if master else 2, compute_bytes=2)
    planned = estimate(arch_of(config), shape, "single", 1).total
    del model, optimizer
    return measured, planned


def cpu_case() -> list[tuple[str, float, float]]:
    """(what, measured bytes, planned bytes) for the tiny preset in fp32 on CPU."""
    import torch

    from smolalign.plan.memory import Shape, activations, model_states
    from smolalign.plan.model import arch_of

    model, config = build("tiny", 512, torch.float32, "cpu", liger=False)
    inputs = batch(config, 4, 128, "cpu", block_mask=False)
    seen: dict[int, int] = {}
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(tensor):
        seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**inputs).loss.backward()
    saved = sum(size for pointer, size in seen.items() if pointer not in weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    optimizer.step()
    states = sum(t.numel() * t.element_size() for p in model.parameters() for t in (p, p.grad)) + sum(
        t.numel() * t.element_size() for s in optimizer.state.values() for k, t in s.items() if k != "step")
    arch = arch_of(config)
    shape = Shape(rows=4, sequence=128, weight_bytes=4, compute_bytes=4)
    return [("weights, gradients, AdamW states", states, sum(model_states(arch, shape, "single", 1))),
            ("activations saved for backward", saved, activations(arch, shape)[0])]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="CPU: the tiny preset's bytes against the formulas")
    parser.add_argument("--presets", default="smollm2-135m,smollm2-360m,smollm2-1.7b")
    options = parser.parse_args()
    import torch

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"machine: {os.cpu_count()} CPUs, {device}, torch {torch.__version__}", flush=True)
    if options.tiny or not torch.cuda.is_available():
        for what, measured, planned in cpu_case():
            print(f"{what:36s} measured {measured / 2**20:9.2f} MiB   plan {planned / 2**20:9.2f} MiB")
            print(f"ratio measured / plan (tiny, fp32, CPU, {what}): {measured / planned:.3f}x")
        return
    liger = importlib.util.find_spec("liger_kernel") is not None
    print(f"bf16 weights (or fp32 under bf16 autocast where named), fused AdamW, sdpa, rows of 2,048 tokens; Liger "
          f"{'installed' if liger else 'not installed'}")
    for preset in options.presets.split(","):
        rows = {"smollm2-1.7b": 4}.get(preset, 8)
        cases = [(False, False, False, False), (True, False, False, False), (False, False, True, False),
                 (False, False, False, True)] + [(False, True, False, False)] * liger
        for checkpointing, with_liger, mask, master in cases:
            name = (f"{preset}, {rows} rows, checkpointing {'on' if checkpointing else 'off'}"
                    + (", Liger" if with_liger else "") + (", 4-D mask" if mask else "")
                    + (", fp32 master weights" if master else ""))
            try:
                measured, planned = gpu_case(preset, rows, checkpointing, with_liger, mask, master)
            except torch.OutOfMemoryError:
                print(f"{name}: out of memory")
                continue
            print(f"{name:60s} max_memory_allocated {measured / 2**30:7.2f} GiB   plan {planned / 2**30:7.2f} GiB")
            print(f"ratio measured / plan ({name}): {measured / planned:.3f}x", flush=True)


if __name__ == "__main__":
    main()
