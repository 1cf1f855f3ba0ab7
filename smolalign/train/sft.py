"""`smolalign sft RECIPE [key=value ...]`: supervised fine-tuning with TRL's SFTTrainer, SmolLM2's settings by default.

    smolalign sft debug/sft                                   # the tiny preset on the shipped task set, CPU
    smolalign sft sft --accelerate-config zero3 --num-processes 8

Loss on assistant turns only (their `<|im_end|>` included), BFD packing into rows whose documents never attend to
each other (packing.py), a data report built from TRL's own tokenized dataset (no second tokenization), exact
resume, and a report at the end. `run_sft` below is the whole run, in order; run.py offers its steps.
"""

from __future__ import annotations

from ..config import SCHEMAS
from ..errors import UsageError
from .packing import use_packed_rows
from .resolve import RunFlags, resolve, run_defaults, with_model
from .run import Run, dropped_rows, refuse_truncation
from .shape import masks_packed_documents, masks_padding, step_shape

KIND = "sft"
SCHEMA = SCHEMAS["sft"]
WEIGHTS = "bfloat16"  # on a bf16 GPU, as the alignment-handbook recipes train (train/speed.py)
SAME_SHAPE = False  # packed rows change shape from batch to batch: torch.compile would recompile each
FUSED_LOSS = False  # TRL scores tokens through its own tiled LM head: Liger adds only its layer kernels
# Attention implementations that keep packed documents apart (flash via cu_seqlens; sdpa by document offsets or the
# explicit block-causal mask; eager and flex through the mask). Others are refused.
PACKING_SAFE_ATTENTION = {"flash_attention_2", "flash_attention_3", "sdpa", "eager", "flex_attention"}
PANELS = [("loss", ["loss", "eval_loss"]), ("learning rate", ["learning_rate"]), ("gradient norm", ["grad_norm"])]
METRICS = ["loss", "eval_loss"]


def defaults() -> dict:
    return {"training": {**run_defaults("runs/sft"), "num_train_epochs": 2, "assistant_only_loss": True,
                         "packing": True, "packing_strategy": "bfd", "max_length": 2048,
                         "include_num_input_tokens_seen": "non_padding"}}


def run_sft(recipe_name: str, overrides: list[str], model_path: str | None = None, **flag_values) -> dict | None:
    """The whole SFT run; returns the final metrics (None when only the config was printed)."""
    from . import sft

    flags = RunFlags(**flag_values)
    recipe = resolve(recipe_name, sft, with_model(overrides, model_path), flags)
    if recipe is None:
        return None
    run = Run.start(recipe, flags)
    with run.stopping_cleanly():
        # model and chat template
        model, tokenizer, placement = run.load_model()
        check_packing(recipe.training, placement.attn_implementation)
        from .templates import prepare_chat_tokenizer, set_generation_stop

        run.record["chat_template"] = prepare_chat_tokenizer(tokenizer, run.args.assistant_only_loss,
                                                             run.args.chat_template_path, model)
        run.args.chat_template_path = None  # applied above: TRL would put the unmarked template back
        set_generation_stop(model, tokenizer)

        # data
        from ..data import load_data

        data = run.read_data(lambda: load_data(recipe.data, task="chat"))
        run.check_resumable(data.fingerprints())

        # trainer, and the rows as TRL tokenized them
        trainer = run.build(lambda: sft_trainer(model, tokenizer, run.args, data, recipe), rows=len(data.train))
        report = {**tokenized_report(trainer.train_dataset, run.args.max_length, run.args.dataset_num_proc),
                  **dropped_rows(data.report)}
        if report["rows_with_no_trained_token"]:
            raise UsageError(f"{report['rows_with_no_trained_token']} rows have no assistant token inside "
                             f"max_length={run.args.max_length}: raise training.max_length or drop those rows")
        refuse_truncation(report["rows_cut_by_max_length"], report["rows"], "rows", run.args, recipe)
        run.show("data", report)

        # train
        run.record.update(data=data.report, data_report=report)
        run.open(data.fingerprints())
        result = run.train(trainer)
        return run.finish(trainer, result, PANELS, METRICS, notes=[
            f"{report['rows']:,} training rows, {report['trained_tokens']:,} trained tokens per epoch"])


def recipe_notes(recipe) -> list[str]:
    """What --print-config and the run's first lines add: the chat template a template-less model gets."""
    from .templates import template_note

    return [template_note(recipe)]


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


def sft_trainer(model, tokenizer, args, data, recipe):
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


# ---------------------------------------------------------------- facts for the checks, speed choice and plan


def check_args(args, problems: list[str]) -> None:
    """What TRL's SFTTrainer accepts but fails on later (guards.py collects these with the shared checks)."""
    import dataclasses

    from trl import SFTConfig

    choices = {f.name: f for f in dataclasses.fields(SFTConfig)}["loss_type"].metadata.get("choices") or ["nll", "dft"]
    if args.loss_type not in choices:
        problems.append(f"training.loss_type={args.loss_type!r} is unknown to TRL's SFTTrainer: use "
                        f"{' or '.join(c for c in choices if c != 'chunked_nll')}")
    if args.packing and args.max_length is None:
        problems.append("training.packing=true needs training.max_length (the packed row length), e.g. 2048")
    if args.padding_free and not args.packing and args.max_length is not None:
        problems.append("training.padding_free=true without packing does not enforce max_length: set "
                        "training.packing=true, or training.max_length=null")


def memory_shape(recipe, micro_batch: int, strategy: str, gpu: bool, flash_installed: bool,
                 checkpointing: bool | None = None):
    """Rows of max_length tokens (packed nearly full), documents kept apart by a 4-D mask where the kernel needs
    one (padded rows: a padding mask), scored through TRL's tiled LM head."""
    packed = bool(recipe.value("packing"))
    mask = masks_packed_documents(recipe, gpu, flash_installed) if packed else masks_padding(recipe, gpu,
                                                                                             flash_installed)
    return step_shape(recipe, micro_batch, recipe.value("max_length") or 1024, strategy, gpu, checkpointing,
                      block_mask=mask, tiled_head=True, reference=False)


def size(recipe, args, processes: int, tokenizer=None, rows=None, tokens_per_row=None):
    """Whole epochs over the chat rows; packed rows hold max_length tokens each."""
    from .size import data_size

    if tokenizer is not None:
        from .templates import prepare_chat_tokenizer

        prepare_chat_tokenizer(tokenizer, args.assistant_only_loss, args.chat_template_path)
    return data_size(recipe, args, processes, tokenizer, rows, tokens_per_row, "chat",
                     lambda row: [row["messages"]], packed=bool(recipe.value("packing")))


def flops(size, parameters: int, config, args) -> float:
    """Training FLOPs by the MFU convention, 6N + 12·L·H·Q·T a token (train/mfu.py)."""
    from .mfu import training_flops

    return training_flops(size, parameters, config)
