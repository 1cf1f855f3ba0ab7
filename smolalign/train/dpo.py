"""`smolalign dpo`: DPO with TRL's DPOTrainer on UltraFeedback-style pairs, starting from an SFT output.

The SFT output's tokenizer, chat template and end-of-turn token are used as they are.

The reference model is the starting model, frozen. How it comes to exist matters on several GPUs: under DeepSpeed
ZeRO-3 the policy's parameters are partitioned as they load, so a deep copy of it copies one rank's shard (TRL's
own `create_reference_model` refuses that case). So, as TRL does when given no reference: a model saved on disk is
loaded a second time from its path by DPOTrainer, with the policy's dtype and attention, and prepared with
DeepSpeed, FSDP or accelerate like the policy. Only a model that exists nowhere but in memory (a preset) is deep
copied, and only where nothing is sharded. With LoRA the reference is the base with the adapter disabled; with
`precompute_ref_log_probs` TRL caches its log-probs on disk, keyed by model and tokenized data.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from .run import Command, PreparedData, RunFlags, machine_defaults, run_command

DPO_PANELS = [
    ("loss", ["loss", "eval_loss"]),
    ("rewards", ["rewards/chosen", "rewards/rejected", "eval_rewards/chosen", "eval_rewards/rejected"]),
    ("margins", ["rewards/margins", "eval_rewards/margins"]),
    ("accuracy", ["rewards/accuracies", "eval_rewards/accuracies"]),
]
DPO_METRICS = ["loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies",
               "eval_loss", "eval_rewards/chosen", "eval_rewards/rejected", "eval_rewards/margins",
               "eval_rewards/accuracies"]


def dpo_defaults() -> dict:
    return {"training": {
        "output_dir": "runs/dpo",
        "num_train_epochs": 2,
        "beta": 0.5,
        "loss_type": ["sigmoid"],
        "max_length": 1024,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "report_to": ["tensorboard"],
        "include_num_input_tokens_seen": "non_padding",
        "seed": 42,
        **machine_defaults(),
    }}


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


def load_dpo_data(recipe, tokenizer, args) -> PreparedData:
    from ..data import load_data

    data = load_data(recipe.data, task="preference")
    report = preference_report(data.train, tokenizer, args.max_length, args.dataset_num_proc)
    for source in data.report["sources"]:
        for why, count in (source.get("rows_dropped") or {}).items():
            report[f"dropped ({source['dataset']}): {why}"] = count
    cut = report["pairs_cut_by_max_length"] / report["pairs"]
    if cut > recipe.data.max_truncated_fraction:
        raise UsageError(f"{cut:.1%} of pairs are longer than max_length={args.max_length}, above "
                         f"data.max_truncated_fraction={recipe.data.max_truncated_fraction}: raise one of them")
    return PreparedData(train=data.train, eval=data.eval, fingerprints=data.fingerprints(), report=report,
                        record={"data": data.report})


def prepare_dpo_model(model, tokenizer, recipe, args, placement) -> dict:
    if not tokenizer.chat_template:
        raise UsageError(f"model '{recipe.model.name_or_path}' has no chat template: run `smolalign sft` first, "
                         f"and start DPO from its output")
    return {"reference": reference_source(model, args, recipe.lora_config())}  # may refuse: before any write


def build_trainer(model, tokenizer, args, data: PreparedData, recipe):
    return dpo_trainer(model, tokenizer, args, data.train, data.eval, recipe.lora_config())


def dpo_trainer(model, tokenizer, args, train, eval, peft_config):
    from trl import DPOTrainer

    return DPOTrainer(model=model, ref_model=reference_model(model, args, peft_config), args=args,
                      train_dataset=train, eval_dataset=eval, processing_class=tokenizer, peft_config=peft_config)


COMMAND = Command(
    kind="dpo", defaults=dpo_defaults, load_data=load_dpo_data, build_trainer=build_trainer, panels=DPO_PANELS,
    metric_keys=DPO_METRICS, prepare=prepare_dpo_model,
    notes=lambda data, args: [f"{data.report['pairs']:,} preference pairs, beta {args.beta}, loss {args.loss_type}"],
)


def run_dpo(recipe_name: str, overrides: list[str], model_path: str | None = None, **flag_values) -> dict | None:
    if model_path is not None:
        overrides = [f"model.name_or_path={model_path}", *overrides]
    return run_command(COMMAND, recipe_name, overrides, RunFlags(**flag_values))


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
