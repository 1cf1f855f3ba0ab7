"""`smolalign dpo [RECIPE] [key=value ...]`: DPO with TRL's DPOTrainer on UltraFeedback-style pairs, from an SFT
output.

    smolalign sft debug/sft && smolalign dpo debug/dpo        # the tiny chain on the shipped pairs, CPU
    smolalign dpo --model runs/smollm2-1.7b-sft --accelerate-config zero3 --num-processes 8

The SFT output's tokenizer, chat template and end-of-turn token are used as they are.

The reference model is the starting model, frozen. How it comes to exist matters on several GPUs: under DeepSpeed
ZeRO-3 the policy's parameters are partitioned as they load, so a deep copy of it copies one rank's shard (TRL's
own `create_reference_model` refuses that case). So, as TRL does when given no reference: a model saved on disk is
loaded a second time from its path by DPOTrainer, with the policy's dtype and attention, and prepared with
DeepSpeed, FSDP or accelerate like the policy. Only a model that exists nowhere but in memory (a preset) is deep
copied, and only where nothing is sharded. With LoRA the reference is the base with the adapter disabled; with
`precompute_ref_log_probs` TRL computes its log-probs once, before training, and caches them beside the dataset's
own cache files, keyed by the data and the reference's weights, so a resume or a second run reuses them.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..config import SCHEMAS
from ..errors import UsageError
from .resolve import RunFlags, resolve, run_defaults, with_model
from .run import Run, dropped_rows, refuse_truncation
from .shape import masks_padding, step_shape

KIND = "dpo"
SCHEMA = SCHEMAS["dpo"]
WEIGHTS = "bfloat16"  # on a bf16 GPU, as the alignment-handbook recipes train (train/speed.py)
SAME_SHAPE = False  # pairs change length from batch to batch
FUSED_LOSS = False  # TRL scores tokens through its own tiled LM head
PANELS = [
    ("loss", ["loss", "eval_loss"]),
    ("rewards", ["rewards/chosen", "rewards/rejected", "eval_rewards/chosen", "eval_rewards/rejected"]),
    ("margins", ["rewards/margins", "eval_rewards/margins"]),
    ("accuracy", ["rewards/accuracies", "eval_rewards/accuracies"]),
]
METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
           "eval_loss", "eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/margins",
           "eval_rewards/accuracies"]


def defaults() -> dict:
    return {"training": {**run_defaults("runs/dpo"), "num_train_epochs": 2, "beta": 0.5, "loss_type": ["sigmoid"],
                         "max_length": 1024, "include_num_input_tokens_seen": "non_padding"}}


def run_dpo(recipe_name: str, overrides: list[str], model_path: str | None = None, **flag_values) -> dict | None:
    """The whole DPO run; returns the final metrics (None when only the config was printed)."""
    from . import dpo

    flags = RunFlags(**flag_values)
    recipe = resolve(recipe_name, dpo, with_model(overrides, model_path), flags)
    if recipe is None:
        return None
    run = Run.start(recipe, flags)
    with run.stopping_cleanly():
        # model and its reference
        from ..model.info import has_chat_template

        no_template = UsageError(f"model '{recipe.model.name_or_path}' has no chat template: run `smolalign sft` "
                                 f"first, and start DPO from its output")
        if has_chat_template(recipe.model.name_or_path, recipe.model.gguf_file) is False:  # before any dequantizing
            raise no_template
        model, tokenizer, _ = run.load_model()
        if not tokenizer.chat_template:
            raise no_template
        run.record["reference"] = reference_source(model, run.args, recipe.lora_config())  # may refuse: no write yet

        # data: the pairs, checked after templating
        from ..data import load_data

        data = run.read_data(lambda: load_data(recipe.data, task="preference"))
        report = {**preference_report(data.train, tokenizer, run.args.max_length, run.args.dataset_num_proc),
                  **dropped_rows(data.report)}
        refuse_truncation(report["pairs_cut_by_max_length"], report["pairs"], "pairs", run.args, recipe)
        run.check_resumable(data.fingerprints())

        # trainer
        trainer = run.build(lambda: dpo_trainer(model, tokenizer, run.args, data.train, data.eval,
                                                recipe.lora_config()), rows=len(data.train))
        run.show("data", report)

        # train
        run.record.update(data=data.report, data_report=report)
        run.open(data.fingerprints())
        result = run.train(trainer)
        return run.finish(trainer, result, PANELS, METRICS, notes=[
            f"{report['pairs']:,} preference pairs, beta {run.args.beta}, loss {run.args.loss_type}"])


def preference_report(dataset, tokenizer, max_length: int | None, num_proc: int | None) -> dict:
    """Check, after templating, that chosen and rejected continue the very same prompt tokens; count lengths."""

    def measure(batch):
        out = {"shared_prompt": [], "longest": []}
        for prompt, chosen, rejected in zip(batch["prompt"], batch["chosen"], batch["rejected"]):
            p = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True,
                                              return_dict=True)["input_ids"]
            c = tokenizer.apply_chat_template(prompt + chosen, tokenize=True, return_dict=True)["input_ids"]
            r = tokenizer.apply_chat_template(prompt + rejected, tokenize=True, return_dict=True)["input_ids"]
            out["shared_prompt"].append(c[:len(p)] == p and r[:len(p)] == p)
            out["longest"].append(max(len(c), len(r)))
        return out

    measured = dataset.map(measure, batched=True, num_proc=num_proc, remove_columns=dataset.column_names,
                           desc="Checking pairs")
    differ = [i for i, same in enumerate(measured["shared_prompt"]) if not same]
    if differ:
        raise UsageError(f"row {differ[0]}: chosen and rejected do not share the templated prompt tokens "
                         f"({len(differ)} such rows): fix the pairs or the chat template")
    longest = measured["longest"]
    limit = max_length or max(longest)
    return {"pairs": len(longest), "tokens (longer side)": sum(longest),
            "pairs_cut_by_max_length": sum(n > limit for n in longest)}


def dpo_trainer(model, tokenizer, args, train, eval, peft_config):
    from trl import DPOTrainer

    return DPOTrainer(model=model, ref_model=reference_model(model, args, peft_config), args=args,
                      train_dataset=train, eval_dataset=eval, processing_class=tokenizer, peft_config=peft_config)


# ---------------------------------------------------------------- the reference model

SHARDED = ("DEEPSPEED", "FSDP")


def saved_path(model) -> str | None:
    """Where the model can be loaded from again, or None when it exists only in memory (a fresh preset)."""
    from ..hub import looks_like_local_path

    name = getattr(model.config, "_name_or_path", "") or ""
    if not name or name.startswith("preset:"):
        return None
    local = Path(name).expanduser()
    if local.exists():
        return name if (local / "config.json").is_file() else None
    return None if looks_like_local_path(name) else name  # a hub id: loaded once already, so it is in the cache


def reference_plan(saved: str | None, lora: bool, precompute: bool, distributed_type: str) -> str:
    """How the reference comes to exist: "adapter-disabled base", "precomputed", "loaded from <path>" or
    "deep copy". Mirrors DPOTrainer's own choice, and refuses the deep copy where the policy is sharded."""
    sharded = distributed_type in SHARDED
    if lora:
        return "adapter-disabled base"
    if precompute and distributed_type != "FSDP":  # under FSDP, TRL still loads a reference for the precompute
        return "precomputed"
    if saved is not None:
        return f"loaded from {saved}"
    if sharded:
        raise UsageError(f"under {distributed_type} the DPO reference must be loaded from disk, but the starting "
                         f"model exists only in memory (a preset): save it first with `smolalign model init` and "
                         f"start from that directory, or add a lora section")
    return "deep copy"


def _distributed_type(args) -> str:
    kind = getattr(args.distributed_state, "distributed_type", None)  # accelerate's DistributedType, a str enum
    return kind.value if kind is not None else "NO"


def reference_source(model, args, peft_config) -> str:
    return reference_plan(saved_path(model), peft_config is not None, bool(args.precompute_ref_log_probs),
                          _distributed_type(args))


def reference_model(model, args, peft_config):
    """The `ref_model` to hand DPOTrainer: None wherever TRL builds the reference itself (from the model's path,
    sharding-aware), a frozen deep copy only for an in-memory model in an unsharded run."""
    if reference_source(model, args, peft_config) != "deep copy":
        return None
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


# ---------------------------------------------------------------- facts for the checks, speed choice and plan


def loss_types() -> list[str]:
    """The loss names DPOTrainer knows, read from DPOConfig's own field help (`'sigmoid'`, `'hinge'`, ...), so a
    TRL upgrade that adds one needs no change here."""
    return re.findall(r"`'(\w+)'`", _config_help("loss_type"))


def _config_help(name: str) -> str:
    import dataclasses

    from trl import DPOConfig

    fields = {f.name: f for f in dataclasses.fields(DPOConfig)}
    return fields[name].metadata.get("help", "") if name in fields else ""


def check_args(args, problems: list[str]) -> None:
    """What TRL's DPOTrainer accepts but fails on later (guards.py collects these with the shared checks)."""
    from .guards import plain_value

    if args.beta <= 0:
        problems.append(f"training.beta={args.beta} must be > 0 (SmolLM2's DPO uses 0.5)")
    known = loss_types()
    unknown = [name for name in args.loss_type if name not in known]
    if unknown:
        problems.append(f"training.loss_type has {', '.join(map(repr, unknown))}, unknown to TRL's DPOTrainer: "
                        f"choose from {', '.join(known)}")
    divergence = plain_value(args.f_divergence_type)
    if divergence != "reverse_kl":
        allowed = re.findall(r"`'(\w+)'`", _config_help("f_divergence_type"))
        others = [name for name in args.loss_type if name in known and name not in allowed]
        if allowed and others:
            problems.append(f"training.f_divergence_type={divergence} does not work with loss {', '.join(others)}: "
                            f"use f_divergence_type=reverse_kl or one of {', '.join(allowed)}")
    if "exo_pair" in args.loss_type and args.label_smoothing == 0:
        problems.append("training.loss_type exo_pair needs training.label_smoothing > 0 (the EXO paper uses 1e-3)")
    if args.use_weighting and {"aot", "aot_unpaired"} & set(args.loss_type):
        problems.append("training.use_weighting=true does not work with loss aot / aot_unpaired: turn one off")


def memory_shape(recipe, micro_batch: int, strategy: str, gpu: bool, flash_installed: bool,
                 checkpointing: bool | None = None):
    """A pair is two sequences (chosen and rejected) of up to max_length tokens, padded; a frozen reference sits
    beside the policy only where TRL keeps one (`reference_plan`): not with LoRA (the base with its adapter off),
    nor with precomputed log-probs (computed once before training, then dropped) unless FSDP loads one anyway."""
    plan = reference_plan("the starting model", recipe.lora is not None,
                          bool(recipe.value("precompute_ref_log_probs")), "FSDP" if strategy == "FSDP" else "NO")
    kept = plan not in ("adapter-disabled base", "precomputed")
    return step_shape(recipe, 2 * micro_batch, recipe.value("max_length") or 1024, strategy, gpu, checkpointing,
                      block_mask=masks_padding(recipe, gpu, flash_installed), tiled_head=True, reference=kept)


def size(recipe, args, processes: int, tokenizer=None, rows=None, tokens_per_row=None):
    """Whole epochs over the pairs; a pair's tokens are its chosen and rejected sequences together."""
    from .size import data_size

    return data_size(recipe, args, processes, tokenizer, rows, tokens_per_row, "preference",
                     lambda row: [row["prompt"] + row["chosen"], row["prompt"] + row["rejected"]], packed=False)


def flops(size, parameters: int, config, args) -> float:
    """The policy's training FLOPs (6N + 12·L·H·Q·T a token), and the reference's forward, a third of that: once
    per epoch, or once over the data when its log-probs are precomputed."""
    from .mfu import training_flops

    policy = training_flops(size, parameters, config)
    once = 1 / size.epochs if getattr(args, "precompute_ref_log_probs", False) and size.epochs else 1
    return policy + once * policy / 3
