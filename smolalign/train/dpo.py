"""`smolalign dpo`: DPO with TRL's DPOTrainer on UltraFeedback-style pairs, starting from an SFT output.

The SFT output's tokenizer, chat template and end-of-turn token are used as they are. The reference model is a
frozen copy of the starting model (the adapter-disabled base with LoRA); with `precompute_ref_log_probs` TRL
caches its log-probs on disk, keyed by model and tokenized data, and no reference copy is kept in memory.
"""

from __future__ import annotations

from ..errors import UsageError
from .run import (RunFlags, check_resumable_data, finish, install_callbacks, load_recipe_model, open_output,
                  plan_output, process_state, resolve)
from .sft import gpu_defaults

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
        **gpu_defaults(),
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


def run_dpo(recipe_name: str, overrides: list[str], model_path: str | None = None, **flag_values) -> None:
    flags = RunFlags(**flag_values)
    if model_path is not None:
        overrides = [f"model.name_or_path={model_path}", "model.preset=null", *overrides]
    recipe = resolve(recipe_name, "dpo", overrides, dpo_defaults(), flags)
    if recipe is None:
        return
    plan = plan_output(recipe, flags)
    args = recipe.training_args()

    from ..data import load_data

    model, tokenizer, placement = load_recipe_model(recipe, args.seed)
    if not tokenizer.chat_template:
        raise UsageError(f"model '{recipe.model.name_or_path}' has no chat template: run `smolalign sft` first, "
                         f"and start DPO from its output")
    with process_state().main_process_first():  # one process fills the datasets cache, the others read it
        data = load_data(recipe.data, task="preference")
        fingerprints = data.fingerprints()
        check_resumable_data(plan, fingerprints)
        report = preference_report(data.train, tokenizer, args.max_length, args.dataset_num_proc)
    for source in data.report["sources"]:
        for why, count in (source.get("rows_dropped") or {}).items():
            report[f"dropped ({source['dataset']}): {why}"] = count
    from .report import print_summary

    if process_state().is_main_process:
        print_summary("preference data", report)
    cut = report["pairs_cut_by_max_length"] / report["pairs"]
    if cut > recipe.data.max_truncated_fraction:
        raise UsageError(f"{cut:.1%} of pairs are longer than max_length={args.max_length}, above "
                         f"data.max_truncated_fraction={recipe.data.max_truncated_fraction}: raise one of them")

    open_output(plan, recipe, fingerprints, flags, {
        "data": data.report, "data_report": report, "placement": vars(placement),
        "resumed_from": str(plan.resume_from) if plan.resume_from else None,
    })
    trainer = build_trainer(model, tokenizer, args, data, recipe.lora_config())
    install_callbacks(trainer, plan)
    result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
    finish(trainer, recipe, plan, result, flags.merge, panels=DPO_PANELS, metric_keys=DPO_METRICS,
           notes=[f"{report['pairs']:,} preference pairs, beta {args.beta}, loss {args.loss_type}"])


def reference_model(model, args, peft_config):
    """A frozen copy of the starting model, unless LoRA (the base is the reference) or precomputed log-probs
    (computed once before training, so no copy needs to stay in memory). Passing the copy explicitly also
    covers models that exist only in memory, which TRL would try to reload from a path."""
    if peft_config is not None or args.precompute_ref_log_probs:
        return None
    import copy

    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def build_trainer(model, tokenizer, args, data, peft_config):
    from trl import DPOTrainer

    return DPOTrainer(model=model, ref_model=reference_model(model, args, peft_config), args=args,
                      train_dataset=data.train, eval_dataset=data.eval, processing_class=tokenizer,
                      peft_config=peft_config)
