"""`smolalign sft`: supervised fine-tuning with TRL's SFTTrainer, SmolLM2's settings by default.

Loss on assistant turns only (their `<|im_end|>` included), BFD packing with padding-free batches (documents
never attend to each other), a data report before training, exact resume, and a report at the end.
"""

from __future__ import annotations

from ..errors import UsageError
from .packing import use_packed_rows
from .run import (RunFlags, check_resumable_data, finish, install_callbacks, load_recipe_model, open_output,
                  plan_output, process_state, resolve)

# Attention implementations that keep packed documents apart from `position_ids` alone (flash via cu_seqlens,
# sdpa/eager/flex through transformers' packed-sequence masks). Others are refused with packing.
PACKING_SAFE_ATTENTION = {"flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention"}
SFT_PANELS = [("loss", ["loss", "eval_loss"]), ("learning rate", ["learning_rate"]), ("gradient norm", ["grad_norm"])]


def gpu_defaults() -> dict:
    import torch

    on_gpu = torch.cuda.is_available()
    # TRL defaults to bf16 and gradient checkpointing even on CPU, where both only cost time (~3x).
    return {"bf16": on_gpu and torch.cuda.is_bf16_supported(), "activation_checkpointing": on_gpu}


def sft_defaults() -> dict:
    return {"training": {
        "output_dir": "runs/sft",
        "num_train_epochs": 2,
        "assistant_only_loss": True,
        "packing": True,
        "packing_strategy": "bfd",
        "max_length": 2048,
        "logging_steps": 10,
        "save_strategy": "steps",
        "save_steps": 500,
        "report_to": ["tensorboard"],
        "include_num_input_tokens_seen": "non_padding",
        "seed": 42,
        **gpu_defaults(),
    }}


def check_packing(training: dict, attn_implementation: str) -> None:
    packed = training.get("packing") or training.get("padding_free")
    if training.get("packing") and training.get("packing_strategy") == "wrapped":
        raise UsageError("packing_strategy=wrapped cuts documents and lets them attend to each other: use bfd")
    if packed and training.get("use_cache"):
        raise UsageError("training.use_cache=true with packing lets packed documents attend to each other "
                         "(transformers skips packed-sequence masks when a cache exists): leave use_cache false")
    if packed and attn_implementation not in PACKING_SAFE_ATTENTION:
        raise UsageError(
            f"packing with attn_implementation={attn_implementation} cannot keep documents apart: use sdpa or "
            f"flash_attention_2 (model.attn_implementation), or set training.packing=false"
        )


def data_report(dataset, tokenizer, max_length: int | None, assistant_only: bool, num_proc: int | None) -> dict:
    """Token counts the way the trainer will see them; fails on a row with no trainable (assistant) token."""

    def measure(batch):
        lengths, trained = [], []
        for messages in batch["messages"]:
            out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True,
                                                return_assistant_tokens_mask=assistant_only)
            lengths.append(len(out["input_ids"]))
            mask = out.get("assistant_masks") or [1] * len(out["input_ids"])
            trained.append(sum(mask[:max_length] if max_length else mask))
        return {"n_tokens": lengths, "n_trained": trained}

    measured = dataset.map(measure, batched=True, num_proc=num_proc, remove_columns=dataset.column_names,
                           desc="Measuring tokens")
    lengths, trained = measured["n_tokens"], measured["n_trained"]
    empty = [i for i, n in enumerate(trained) if n == 0]
    limit = max_length or max(lengths)
    over = [n for n in lengths if n > limit]
    report = {
        "rows": len(lengths),
        "tokens": sum(lengths),
        "trained_tokens": sum(trained),
        "rows_cut_by_max_length": len(over),
        "tokens_cut_by_max_length": sum(n - limit for n in over),
        "rows_with_no_trained_token": len(empty),
    }
    if empty and len(empty) == len(lengths):
        raise UsageError("no row has an assistant token inside max_length: the loss would be zero; check the chat "
                         "template's {% generation %} markers and training.max_length")
    if empty:
        raise UsageError(f"row {empty[0]} has no assistant token inside max_length ({len(empty)} such rows): raise "
                         f"training.max_length or drop those rows")
    return report


def _print_data_report(report: dict, dropped: list[dict]) -> None:
    from .report import print_summary

    rows = dict(report)
    for source in dropped:
        for why, count in (source.get("rows_dropped") or {}).items():
            rows[f"dropped ({source['dataset']}): {why}"] = count
    print_summary("data", rows)


def run_sft(recipe_name: str, overrides: list[str], **flag_values) -> None:
    flags = RunFlags(**flag_values)
    recipe = resolve(recipe_name, "sft", overrides, sft_defaults(), flags)
    if recipe is None:
        return
    plan = plan_output(recipe, flags)
    args = recipe.training_args()
    from ..data import load_data
    from .chat import prepare_chat_tokenizer, set_generation_stop

    from ..modeling import choose_placement

    check_packing(recipe.training, choose_placement(recipe.model.dtype, recipe.model.attn_implementation).attn_implementation)
    model, tokenizer, placement = load_recipe_model(recipe, args.seed)
    template_note = prepare_chat_tokenizer(tokenizer, args.assistant_only_loss)
    set_generation_stop(model, tokenizer)

    with process_state().main_process_first():  # one process fills the datasets cache, the others read it
        data = load_data(recipe.data, task="chat")
        fingerprints = data.fingerprints()
        check_resumable_data(plan, fingerprints)
        report = data_report(data.train, tokenizer, args.max_length, args.assistant_only_loss, args.dataset_num_proc)
    if process_state().is_main_process:
        _print_data_report(report, data.report["sources"])
    cut = report["rows_cut_by_max_length"] / report["rows"]
    if cut > recipe.data.max_truncated_fraction:
        raise UsageError(f"{cut:.1%} of rows are longer than max_length={args.max_length}, above "
                         f"data.max_truncated_fraction={recipe.data.max_truncated_fraction}: raise one of them")

    open_output(plan, recipe, fingerprints, flags, {
        "data": data.report, "data_report": report, "chat_template": template_note,
        "placement": vars(placement), "resumed_from": str(plan.resume_from) if plan.resume_from else None,
    })
    trainer = build_trainer(model, tokenizer, args, data, recipe.lora_config())
    use_packed_rows(trainer, placement.attn_implementation)
    install_callbacks(trainer, plan)
    result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
    finish(trainer, recipe, plan, result, flags.merge, panels=SFT_PANELS, metric_keys=["loss", "eval_loss"],
           notes=[f"{report['rows']:,} training rows, {report['trained_tokens']:,} trained tokens per epoch"])


def build_trainer(model, tokenizer, args, data, peft_config):
    from trl import SFTTrainer

    try:
        return SFTTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                          processing_class=tokenizer, peft_config=peft_config)
    except RuntimeError as error:
        if "no assistant tokens" in str(error):
            raise UsageError("a row has no assistant tokens to train on: check the chat template's generation "
                             "markers") from error
        raise


