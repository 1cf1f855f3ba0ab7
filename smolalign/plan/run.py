"""`smolalign plan`: what a training run will cost before it starts, from the recipe alone.

The recipe is read as the training command reads it (`train.speed.load_command_recipe`: its defaults, schema,
overrides, the speed settings the named GPU would get, the micro-batch that fits it) and checked by the same checks,
so a bad recipe fails with the same one-line error. The model is sized on the meta device (plan/model.py), the run
by its stages or its data (plan/size.py), the memory by plan/memory.py's formulas, FLOPs by the MFU convention
(6N + 12·L·H·Q·T a trained token, train/mfu.py), and time at a stated MFU: by default the last one measured in
bench/ (MEASURED_MFU).
"""

from __future__ import annotations

import importlib.util
import os
from contextlib import contextmanager

from ..errors import UsageError
from .gpus import gpu, launch_of, local_gpu
from .memory import GiB, STRATEGIES, estimate, verdict
from .model import model_facts, offline
from .shape import shape_of, training_value
from .size import Size, cut_at, epoch_phases, row_tokens

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
    from ..config.schema import TRAINING_CLASSES

    if torch.cuda.is_available():
        return recipe.training_args()
    spec = recipe.schema.training if recipe.schema else TRAINING_CLASSES[recipe.kind]
    return build_training_args(spec, {**recipe.training, "bf16": False, "fp16": False, "torch_compile": False})


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


def data_size(recipe, tokenizer, args, processes: int, rows: int | None, tokens_per_row: float | None) -> Size:
    """SFT and DPO: rows from the data layer, tokens a row from the tokenizer (or both given)."""
    kind, size = recipe.kind, Size()
    max_length = args.max_length or 1024
    if rows is None:
        from ..data import load_data

        names = [m["dataset"] for m in recipe.data.mixture] if recipe.data.mixture else [recipe.data.dataset]
        try:
            dataset = load_data(recipe.data, task="chat" if kind == "sft" else "preference").train
        except UsageError:
            if not any(offline(name) for name in names):
                raise
            size.notes.append(f"data {', '.join(names)} not readable here (the hub does not answer): give --rows "
                              f"and --tokens-per-row for steps and time")
            return size
        rows = len(dataset)
        if tokens_per_row is None and tokenizer is not None:
            if kind == "sft":
                from ..train.templates import prepare_chat_tokenizer

                prepare_chat_tokenizer(tokenizer, args.assistant_only_loss)
            tokens_per_row = row_tokens(dataset, tokenizer, kind, max_length)
    size.rows, size.tokens_per_row = rows, tokens_per_row
    if tokens_per_row is None:
        size.notes.append("tokens a row unknown (no tokenizer here): give --tokens-per-row")
        return size
    size.phases, size.epochs = epoch_phases(
        kind, bool(training_value(recipe, "packing")), rows, tokens_per_row, max_length,
        args.per_device_train_batch_size, args.gradient_accumulation_steps, processes, args.num_train_epochs,
        args.max_steps)
    return size


def run_flops(kind: str, size: Size, parameters: int, config, precompute: bool) -> float:
    """Training FLOPs by the MFU convention; DPO adds the reference's forward (a third of 6N + attention), once
    over the data when its log-probs are precomputed."""
    from ..train.mfu import flops_per_token

    total = sum(p.tokens * flops_per_token(parameters, config, p.sequence) for p in size.phases)
    if kind == "dpo":
        once = 1 / size.epochs if precompute and size.epochs else 1
        total += once * total / 3
    return total


def plan_run(command, recipe_name: str, overrides: list[str], gpus: int | None = None, gpu_name: str | None = None,
             accelerate_config: str | None = None, mfu: float | None = None, rows: int | None = None,
             tokens_per_row: float | None = None) -> dict:
    """The plan of a run of `command` (a train.run.Command) as one dict: what `smolalign plan --json` prints."""
    from ..train.run import check_recipe
    from ..train.speed import Machine, explain, load_command_recipe

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
        resolved = load_command_recipe(recipe_name, command.kind, overrides, command.defaults(), command.schema,
                                       machine)
    recipe = resolved.recipe
    args = stand_in_args(recipe)
    check_recipe(recipe, command.kind, args=args)
    notes = [resolved.note] if resolved.note else []
    facts = model_facts(recipe.model, recipe.lora_config())
    tokenizer = read_tokenizer(recipe.model.tokenizer or facts.tokenizer, notes)
    if facts.source.startswith("preset") and tokenizer is not None and len(tokenizer) != facts.arch.vocab:
        facts = model_facts(recipe.model, recipe.lora_config(), vocab=len(tokenizer))
    notes += facts.notes
    if command.size is not None:
        size = Size(phases=command.size(recipe, args, launch.processes))
        if args.max_steps > 0:
            size.phases = cut_at(size.phases, args.max_steps)
    else:
        size = data_size(recipe, tokenizer, args, launch.processes, rows, tokens_per_row)
    notes += size.notes
    arch, micro = facts.arch, args.per_device_train_batch_size
    memory = []
    for strategy in STRATEGIES:
        world = 1 if strategy == "single" else launch.processes
        for checkpointing in (False, True):
            shape = shape_of(recipe, micro, strategy, gpu=True, flash_installed=machine.flash_attn,
                             checkpointing=checkpointing)
            m = estimate(arch, shape, strategy, world)
            memory.append({"strategy": strategy, "devices": world, "checkpointing": checkpointing,
                           "weights": m.weights, "gradients": m.gradients, "optimizer": m.optimizer,
                           "activations": m.activations, "total": m.total, "fits": verdict(m.total, device.memory),
                           "this_run": strategy == launch.strategy and checkpointing == bool(
                               args.activation_checkpointing)})
    flops = run_flops(recipe.kind, size, arch.parameters, facts.config, bool(getattr(args, "precompute_ref_log_probs",
                                                                                      False))) if size.known else None
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
