"""Where do pretrain-135m's NaN gradients come from? One forward and backward per case, about 2 minutes on a GPU.

The first H200 run of the smoke's pretraining (bench/gpu_smoke.py) had NaN gradients from step 1 with a finite loss:
fp32 master weights under bf16 autocast, sdpa with torch's own backend choice (cuDNN first on sm90 with torch for
CUDA 13), micro-batch 32 of 2,048-token blocks, neither Liger nor compile, and the separator's input row at zero
(the embedding's padding index then). The same run is finite on CPU. This probe rebuilds that first step with
smolalign's own code (the smoke's recipe resolved for this machine, its blocks drawn by the pretraining index, the
preset built by model/build.py) and runs it once per case, each changing one thing of the failed step:
- each SDPA backend forced (cuDNN, flash, memory-efficient, math);
- micro-batch 8, 16 and 64 (32 is the failed one);
- bf16 weights instead of fp32 master weights;
- the separator's input row drawn like every other row instead of zero;
- eager attention at micro-batch 8.
Each case prints one line: the backend sdpa chose for the model's attention shape, the loss, the gradient norm and
the first layer, in backward order (from the top), whose gradients are not finite. The first failing case is then
run again under anomaly mode, which names the backward op that made the first NaN. A case that does not fit the
GPU runs again with activation checkpointing (same kernels, recomputed), and says so.

    python bench/gpu_nan_probe.py                 # on the GPU (bench/gpu.sh runs it first)
    python bench/gpu_nan_probe.py --tiny --inject-nan 2    # CPU: the tiny preset; a NaN injected into layer 2's
                                                           # attention backward, which the probe must find
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


@dataclass(frozen=True)
class Case:
    name: str
    rows: int = 32
    backend: str | None = None
    """An SDPA backend forced (torch.nn.attention.SDPBackend's name); None: torch's own choice."""
    weights: str = "float32"
    separator_zero: bool = True
    attention: str = "sdpa"


FAILED = Case("as failed: 32 rows, fp32 master")
CASES = [FAILED,
         *(replace(FAILED, name=f"sdpa forced: {backend}", backend=backend)
           for backend in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")),
         *(replace(FAILED, name=f"micro-batch {rows}", rows=rows) for rows in (8, 16, 64)),
         replace(FAILED, name="bf16 weights", weights="bfloat16"),
         replace(FAILED, name="separator row drawn", separator_zero=False),
         replace(FAILED, name="eager attention, 8 rows", attention="eager", rows=8)]


def first_step_blocks(tiny: bool, rows: int):
    """(tokenizer, recipe, the first `rows` blocks as the pretraining index draws them, the collator), from the
    smoke's pretraining command line, resolved for this machine as `smolalign pretrain` resolves it."""
    from gpu_smoke import pretrain_argv

    from smolalign.data.blocks import document_separator
    from smolalign.model.load import load_tokenizer
    from smolalign.train.pretrain import command
    from smolalign.train.pretrain.command import block_index, plan_for
    from smolalign.train.pretrain.trainer import BlockCollator
    from smolalign.train.resolve import resolve_recipe
    from smolalign.train.speed import machine_facts

    argv = pretrain_argv(Path("/tmp/unused"), tiny)
    recipe = resolve_recipe(argv[1], command, [a for a in argv[2:] if not a.startswith("--")], machine_facts()).recipe
    tokenizer = load_tokenizer(recipe.model.tokenizer)
    plan = plan_for(recipe, recipe.training_args())
    index, _ = block_index(recipe, plan, tokenizer)
    collator = BlockCollator(separator_id=document_separator(tokenizer))
    return tokenizer, recipe, [index[i % len(index)] for i in range(rows)], collator


def build(recipe, tokenizer, case: Case, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    from smolalign.model.build import llama_config

    config = llama_config(recipe.model.preset, tokenizer=tokenizer)
    if case.separator_zero:  # as the failed run built it: the pad id (the separator) as the padding index
        config.pad_token_id = tokenizer.pad_token_id
    config._attn_implementation, config.use_cache = case.attention, False
    torch.manual_seed(recipe.training["seed"])
    dtype = torch.bfloat16 if case.weights == "bfloat16" else torch.float32
    return AutoModelForCausalLM.from_config(config, dtype=dtype).to(device).train()


def chosen_backend(model, rows: int, sequence: int, device: str, forced: str | None) -> str:
    """The backend sdpa picks for this model's attention (GQA, causal, no mask), as torch reports it."""
    import torch

    if forced:
        return forced.split("_")[0].lower()
    if model.config._attn_implementation != "sdpa":
        return model.config._attn_implementation
    config = model.config
    head = config.hidden_size // config.num_attention_heads
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    q = torch.empty(rows, config.num_attention_heads, sequence, head, device=device, dtype=dtype)
    kv = torch.empty(rows, config.num_key_value_heads, sequence, head, device=device, dtype=dtype)
    try:
        choice = torch._fused_sdp_choice(q, kv, kv, None, 0.0, True, scale=None, enable_gqa=True)
        return torch.nn.attention.SDPBackend(choice).name.split("_")[0].lower()
    except (RuntimeError, TypeError, ValueError) as error:
        return f"? ({str(error).splitlines()[0][:40]})"


def inject_nan(model, layer: int):
    """An injected fault, for the CPU test: the gradient entering layer `layer`'s attention output projection
    becomes NaN, so its q/k/v projections (and everything below) get NaN gradients, as a broken attention backward
    would give them."""
    import torch

    def poison(module, inputs):
        if inputs[0].requires_grad:
            inputs[0].register_hook(lambda grad: torch.full_like(grad, float("nan")))

    return model.model.layers[layer].self_attn.o_proj.register_forward_pre_hook(poison)


def first_nonfinite(model) -> str | None:
    """The first layer, in backward order (from the top), whose gradients are not finite, and which of its
    parameters: "model.layers.2 (input_layernorm, q_proj, k_proj, v_proj)"."""
    import torch

    broken: dict[str, list[str]] = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all():
            parts = name.removesuffix(".weight").split(".")
            layer = 3 if parts[:2] == ["model", "layers"] else len(parts) - 1
            broken.setdefault(".".join(parts[:layer]), []).append(parts[-1])
    if not broken:
        return None
    top = list(broken)[-1]  # parameters come bottom-up: the embedding, layer 0, ..., the final norm
    return f"{top} ({', '.join(broken[top])})"


def step(model, batch, case: Case, device: str, anomaly: bool = False) -> tuple[float, float, str | None]:
    """One forward and backward of the failed step under `case`: (loss, gradient norm, first non-finite layer)."""
    import contextlib

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model.zero_grad(set_to_none=True)
    batch = {key: value.to(device) for key, value in batch.items()}
    forced = sdpa_kernel([getattr(SDPBackend, case.backend)]) if case.backend else contextlib.nullcontext()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()
    with forced, autocast, torch.autograd.set_detect_anomaly(anomaly, check_nan=True):
        loss = model(**batch).loss
        loss.backward()
    norms = [p.grad.float().norm() for p in model.parameters() if p.grad is not None]
    return loss.item(), torch.stack(norms).norm().item(), first_nonfinite(model)


def run_case(recipe, tokenizer, blocks, collator, case: Case, device: str, inject: int | None,
             anomaly: bool = False):
    """(the case's line, whether its gradients were finite); a case that does not fit runs again checkpointed."""
    import torch

    model = build(recipe, tokenizer, case, device)
    if inject is not None:
        inject_nan(model, inject)
    batch = collator(blocks[:case.rows])
    backend = chosen_backend(model, case.rows, batch["input_ids"].shape[1], device, case.backend)
    note = ""
    try:
        try:
            loss, norm, bad = step(model, batch, case, device, anomaly)
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            model.gradient_checkpointing_enable()
            note = " (checkpointed: did not fit)"
            loss, norm, bad = step(model, batch, case, device, anomaly)
    except RuntimeError as error:  # a forced backend that cannot run this shape, or anomaly mode's finding
        if anomaly:
            raise
        first = str(error).strip().splitlines()[0][:110]
        return f"{case.name:34s} {'':8s} not run here: {first}", True
    finally:
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    finite = math.isfinite(loss) and math.isfinite(norm) and bad is None
    return (f"{case.name:34s} {backend:8s} loss {loss:8.4f}  grad norm {norm:10.4g}  first non-finite: "
            f"{bad or '-'}{note}"), finite


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="no GPU: the tiny preset on 64-token blocks, fp32")
    parser.add_argument("--inject-nan", type=int, default=None, metavar="LAYER",
                        help="an injected fault (the CPU test): NaN gradients from LAYER's attention")
    options = parser.parse_args()
    import torch

    device = "cuda" if torch.cuda.is_available() and not options.tiny else "cpu"
    started = time.perf_counter()
    tokenizer, recipe, blocks, collator = first_step_blocks(options.tiny, max(case.rows for case in CASES))
    where = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"probe on {where}, torch {torch.__version__}: preset {recipe.model.preset}, blocks of "
          f"{len(blocks[0]['input_ids'])} tokens" + (f", NaN injected at layer {options.inject_nan}"
                                                      if options.inject_nan is not None else ""), flush=True)
    print(f"{'case':34s} {'backend':8s} result", flush=True)
    failing = None
    for case in CASES:
        line, finite = run_case(recipe, tokenizer, blocks, collator, case, device, options.inject_nan)
        print(line, flush=True)
        if not finite and failing is None:
            failing = case
    if failing is None:
        print("every case finite")
    else:
        try:
            with warnings.catch_warnings():  # anomaly mode's forward traceback: the error's first line names the op
                warnings.simplefilter("ignore")
                run_case(recipe, tokenizer, blocks, collator, failing, device, options.inject_nan, anomaly=True)
            print(f"anomaly mode, {failing.name}: no NaN seen in a backward op")
        except RuntimeError as error:
            print(f"anomaly mode, {failing.name}: {str(error).strip().splitlines()[0]}")
    print(f"probe: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
