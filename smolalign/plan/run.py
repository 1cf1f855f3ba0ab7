"""`smolalign plan RECIPE [key=value ...]`: what a training run will cost before it starts, from the recipe alone.

    smolalign plan pretrain --accelerate-config fsdp --gpus 8      # the paper's 1.7B run on one node of H100s

The recipe is read as the training command reads it (train/resolve.py's `resolve_recipe`: the command's defaults,
schema and overrides, the speed settings the named GPU would get, the accumulation of a global batch, the micro-batch
that fits) and checked by the same checks, so a bad recipe fails with the same one-line error. Everything that is a
command's own comes from the command's module (train/resolve.py's `TrainingCommand`): its memory shape, its size
(stages, or epochs over its data) and its FLOPs. The model is sized on the meta device (plan/model.py), the memory by
model/memory.py's formulas, and time at a stated MFU: by default the last one measured in bench/ (MEASURED_MFU).
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager

from ..errors import UsageError
from ..model.memory import GiB, STRATEGIES, estimate, verdict
from .gpus import gpu, launch_of, local_gpu
from .model import model_facts, offline

MEASURED_MFU = 0.199
MEASURED_AT = ("measured in bench/: smolalign pretrain, 360M preset, 2,048 tokens, bf16, sdpa, batch 8, one H100 "
               "80GB (bash bench/gpu.sh, README Benchmarks)")


@contextmanager
def world_size(processes: int):
    """Recipe checks that count steps (pretraining's stages) see the processes the run will have, as they do in
    each worker `accelerate launch` starts."""
    before = os.environ.get("WORLD_SIZE")
    os.environ["WORLD_SIZE"] = str(processes)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("WORLD_SIZE", None)
        else:
            os.environ["WORLD_SIZE"] = before


def stand_in_args(recipe):
    """The recipe's training arguments; on a machine without a GPU, built without bf16/fp16 (which transformers
    refuses there) and torch_compile (which it warns about), so that every other check runs as the GPU run's."""
    import torch

    from ..config import build_training_args

    if torch.cuda.is_available():
        return recipe.training_args()
    return build_training_args(recipe.training_spec, {**recipe.training, "bf16": False, "fp16": False,
                                                      "torch_compile": False})


def read_tokenizer(name: str | None, notes: list[str]):
    from ..model.load import load_tokenizer

    if not name:
        return None
    try:
        return load_tokenizer(name)
    except UsageError:
        if not offline(name):
            raise
        notes.append(f"tokenizer {name} not readable here (the hub does not answer)")
        return None


def plan_run(command, recipe_name: str, overrides: list[str], gpus: int | None = None, gpu_name: str | None = None,
             accelerate_config: str | None = None, mfu: float | None = None, rows: int | None = None,
             tokens_per_row: float | None = None) -> dict:
    """The plan of a run of `command` (a training command module) as one dict: what `smolalign plan --json`
    prints."""
    from ..train.resolve import check_recipe, resolve_recipe
    from ..train.speed import Machine, explain

    if mfu is not None and not 0 < mfu <= 1:
        raise UsageError(f"--mfu {mfu}: a share of the peak, above 0 and at most 1 (e.g. 0.4)")
    if rows is not None and rows < 1:
        raise UsageError(f"--rows {rows}: give the number of training rows, at least 1")
    if tokens_per_row is not None and not tokens_per_row > 0:
        raise UsageError(f"--tokens-per-row {tokens_per_row}: give the templated tokens of a row, above 0")
    launch = launch_of(accelerate_config, gpus)
    device = gpu(gpu_name) if gpu_name else (local_gpu() or gpu("H100"))
    machine = Machine(gpu=True, bf16=True, name=device.name, memory=device.memory,
                      liger=importlib.util.find_spec("liger_kernel") is not None,
                      flash_attn=importlib.util.find_spec("flash_attn") is not None,
                      processes=launch.processes, strategy=launch.strategy)
    with world_size(launch.processes):
        resolved = resolve_recipe(recipe_name, command, overrides, machine,
                                   arch_for=lambda recipe: model_facts(recipe.model, recipe.lora_config()).arch)
    recipe = resolved.recipe
    args = stand_in_args(recipe)
    check_recipe(recipe, command, args=args)
    notes = list(resolved.notes)
    facts = model_facts(recipe.model, recipe.lora_config())
    tokenizer = read_tokenizer(recipe.model.tokenizer or facts.tokenizer, notes)
    if facts.source.startswith("preset") and tokenizer is not None and len(tokenizer) != facts.arch.vocab:
        facts = model_facts(recipe.model, recipe.lora_config(), vocab=len(tokenizer))
    notes += facts.notes
    size = command.size(recipe, args, launch.processes, tokenizer=tokenizer, rows=rows, tokens_per_row=tokens_per_row)
    notes += size.notes
    arch, micro = facts.arch, args.per_device_train_batch_size
    memory = []
    for strategy in STRATEGIES:
        world = 1 if strategy == "single" else launch.processes
        for checkpointing in (False, True):
            shape = command.memory_shape(recipe, micro, strategy, gpu=True, flash_installed=machine.flash_attn,
                                         checkpointing=checkpointing)
            m = estimate(arch, shape, strategy, world)
            memory.append({"strategy": strategy, "devices": world, "checkpointing": checkpointing,
                           "weights": m.weights, "gradients": m.gradients, "optimizer": m.optimizer,
                           "activations": m.activations, "total": m.total, "fits": verdict(m.total, device.memory),
                           "this_run": strategy == launch.strategy and checkpointing == bool(
                               args.activation_checkpointing)})
    flops = command.flops(size, arch.parameters, facts.config, args) if size.known else None
    rate = mfu if mfu is not None else MEASURED_MFU
    seconds = flops / (rate * device.peak * launch.processes) if flops and device.peak else None
    return {
        "recipe": recipe.path, "kind": recipe.kind, "notes": notes,
        "model": {"source": facts.source, "parameters": arch.parameters, "trainable": arch.trained,
                  "layers": arch.layers, "hidden": arch.hidden, "vocab": arch.vocab},
        "machine": {"gpu": device.name, "memory_gib": device.memory / GiB, "peak_tflops":
                    device.peak / 1e12 if device.peak else None, "gpus": launch.processes,
                    "strategy": launch.strategy, "launch": launch.source},
        "batch": {"micro_batch": micro, "accumulation": args.gradient_accumulation_steps,
                  "processes": launch.processes, "sequence": shape.sequence,
                  "rows_per_step": micro * args.gradient_accumulation_steps * launch.processes,
                  "activation_checkpointing": bool(args.activation_checkpointing)},
        "run": {"phases": [vars(p) for p in size.phases], "steps": size.steps if size.known else None,
                "tokens": size.tokens if size.known else None, "epochs": size.epochs, "rows": size.rows,
                "tokens_per_row": size.tokens_per_row},
        "flops": {"total": flops, "per_token": flops / size.tokens if flops else None},
        "memory": memory,
        "time": {"mfu": rate, "mfu_source": "given (--mfu)" if mfu is not None else MEASURED_AT,
                 "seconds": seconds, "gpu_hours": seconds * launch.processes / 3600 if seconds else None},
        "speed": explain(resolved.speed, recipe, machine),
    }


KINDS = ("sft", "dpo", "pretrain")


def recipe_kind(recipe_name: str) -> str:
    """The command a recipe is for, from its `recipe:` line (every shipped recipe has one)."""
    from ..config import read_yaml
    from ..resources import resolve_recipe

    path = resolve_recipe(recipe_name)
    data = read_yaml(path)
    kind = data.get("recipe") if isinstance(data, dict) else None
    if kind not in KINDS:
        raise UsageError(f"recipe {path} does not say which command it is for: add a line `recipe: sft` (or dpo, "
                         f"pretrain)" if kind is None else f"recipe {path} is for `{kind}`, which plan does not "
                         f"cover: plan covers {', '.join(KINDS)}")
    return kind
