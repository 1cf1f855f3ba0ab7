"""`smolalign sft`: supervised fine-tuning with TRL's SFTTrainer, SmolLM2's settings by default.

Loss on assistant turns only (their `<|im_end|>` included), BFD packing into rows whose documents never attend to
each other, a data report built from TRL's own tokenized dataset (no second tokenization), exact resume, and a
report at the end. The life of the run (output, resume, record, report) is `run.py`'s.
"""

from __future__ import annotations

from ..errors import UsageError
from .packing import use_packed_rows
from .run import Command, PreparedData, RunFlags, machine_defaults, run_command

# Attention implementations that keep packed documents apart (flash via cu_seqlens; sdpa on CPU one document at a
# time; sdpa on GPU, eager and flex through the explicit block-causal mask of packed rows). Others are refused.
PACKING_SAFE_ATTENTION = {"flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention"}
SFT_PANELS = [("loss", ["loss", "eval_loss"]), ("learning rate", ["learning_rate"]), ("gradient norm", ["grad_norm"])]


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
        **machine_defaults(),
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


def tokenized_report(dataset, max_length: int | None, num_proc: int | None) -> dict:
    """Token counts from TRL's prepared dataset (packed or not): the tokenization the trainer really uses.

    Each document's length is in `seq_lengths` (after TRL cut it to max_length), so a document of exactly
    max_length tokens is counted as cut: it reached the limit."""

    def measure(batch):
        out = {"documents": [], "tokens": [], "trained": [], "at_limit": [], "untrained_documents": []}
        lengths_of = batch.get("seq_lengths") or [[len(ids)] for ids in batch["input_ids"]]
        for labels, lengths in zip(batch["labels"], lengths_of):
            start, untrained = 0, 0
            for length in lengths:
                untrained += all(label == -100 for label in labels[start:start + length])
                start += length
            out["documents"].append(len(lengths))
            out["tokens"].append(sum(lengths))
            out["trained"].append(sum(label != -100 for label in labels))
            out["at_limit"].append(sum(bool(max_length) and length >= max_length for length in lengths))
            out["untrained_documents"].append(untrained)
        return out

    columns = [c for c in ("input_ids", "labels", "seq_lengths") if c in dataset.column_names]
    measured = dataset.select_columns(columns).map(measure, batched=True, num_proc=num_proc,
                                                   remove_columns=columns, desc="Counting tokens")
    documents = sum(measured["documents"])
    return {
        "rows": documents,
        "tokens": sum(measured["tokens"]),
        "trained_tokens": sum(measured["trained"]),
        "rows_cut_by_max_length": sum(measured["at_limit"]),
        "rows_with_no_trained_token": sum(measured["untrained_documents"]),
    }


def load_sft_data(recipe, tokenizer, args) -> PreparedData:
    from ..data import load_data

    data = load_data(recipe.data, task="chat")
    return PreparedData(train=data.train, eval=data.eval, fingerprints=data.fingerprints(),
                        record={"data": data.report}, report=dropped_rows(data.report))


def dropped_rows(data_report: dict) -> dict:
    rows = {}
    for source in data_report["sources"]:
        for why, count in (source.get("rows_dropped") or {}).items():
            rows[f"dropped ({source['dataset']}): {why}"] = count
    return rows


def check_sft_data(trainer, data: PreparedData, recipe, args) -> None:
    report = tokenized_report(trainer.train_dataset, args.max_length, args.dataset_num_proc)
    if report["rows_with_no_trained_token"]:
        raise UsageError(f"{report['rows_with_no_trained_token']} rows have no assistant token inside max_length="
                         f"{args.max_length}: raise training.max_length or drop those rows")
    cut = report["rows_cut_by_max_length"] / max(report["rows"], 1)
    if cut > recipe.data.max_truncated_fraction:
        raise UsageError(f"{cut:.1%} of rows are longer than max_length={args.max_length}, above "
                         f"data.max_truncated_fraction={recipe.data.max_truncated_fraction}: raise one of them")
    data.report = {**report, **data.report}


def prepare_sft_model(model, tokenizer, recipe, args, placement) -> dict:
    from .templates import prepare_chat_tokenizer, set_generation_stop

    check_packing(recipe.training, placement.attn_implementation)
    note = prepare_chat_tokenizer(tokenizer, args.assistant_only_loss)
    set_generation_stop(model, tokenizer)
    return {"chat_template": note}


def build_trainer(model, tokenizer, args, data: PreparedData, recipe):
    from trl import SFTTrainer

    try:
        trainer = SFTTrainer(model=model, args=args, train_dataset=data.train, eval_dataset=data.eval,
                             processing_class=tokenizer, peft_config=recipe.lora_config())
    except RuntimeError as error:
        if "no assistant tokens" in str(error):
            raise UsageError("a row has no assistant tokens to train on: check the chat template's generation "
                             "markers") from error
        raise
    packed_attention = getattr(recipe.sections.get("speed"), "packed_attention", "auto")
    use_packed_rows(trainer, model.config._attn_implementation, packed_attention)
    return trainer


COMMAND = Command(
    kind="sft", defaults=sft_defaults, load_data=load_sft_data, build_trainer=build_trainer, panels=SFT_PANELS,
    metric_keys=["loss", "eval_loss"], prepare=prepare_sft_model, check_data=check_sft_data,
    notes=lambda data, args: [f"{data.report['rows']:,} training rows, {data.report['trained_tokens']:,} trained "
                              f"tokens per epoch"],
)


def run_sft(recipe_name: str, overrides: list[str], model_path: str | None = None, **flag_values) -> dict | None:
    if model_path is not None:
        overrides = [f"model.name_or_path={model_path}", *overrides]
    return run_command(COMMAND, recipe_name, overrides, RunFlags(**flag_values))
