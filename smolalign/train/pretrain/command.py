"""`smolalign pretrain [RECIPE] [key=value ...]`: SmolLM2's multi-stage base pretraining on transformers' Trainer.

    smolalign pretrain debug/pretrain                        # the tiny preset on two shipped text sources, CPU
    smolalign pretrain pretrain --accelerate-config fsdp --num-processes 8

A recipe names text sources (`data.sources`: hub id, file or directory, and its text column) and an ordered
list of `stages`, each a token budget over a mixture of sources whose weights are token shares; a stage may
also change the block size and RoPE base (context extension). Sources become token blocks on disk once
(`smolalign.data.blocks`), a seeded index draws each stage's blocks in exact shares, one warmup-stable-decay
schedule spans the stages, and the run's steps (output directory, resume, progress, report) are run.py's, as
every other command's. The output is a standard model directory that `smolalign sft` loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import ModelSection, RecipeSchema, SpeedSection, TokensBatch, check_model
from ...config.schema import training_defaults
from ...errors import UsageError
from ..resolve import RunFlags, resolve, run_defaults
from ..run import Run
from ..shape import masks_packed_documents, step_shape
from .stages import (SourceSection, check_schedule, check_sources, make_plan, parse_stages, schedule_steps,
                     world_size_hint)


@dataclass
class PretrainData:
    block_size: int = 2048
    """Tokens per training sequence (a stage may set its own, e.g. 8192 for context extension)."""
    sources: dict | None = None
    """Name -> {dataset, text_column (default text), config, split}: hub id, local file or directory."""
    seed: int = 42
    """Seeds the order of each source's blocks (the mixture itself is deterministic)."""
    cross_document_attention: bool = True
    """true: plain causal attention over the whole block, documents included, as SmolLM2 trained. false: each
    document attends only to itself (position ids restart after <|endoftext|>) and no label crosses a boundary."""
    cache_dir: str | None = None
    """Where tokenised blocks are cached (default: $HF_HOME/smolalign/blocks)."""
    num_proc: int | None = None
    """Processes for tokenising (datasets.map); null: one."""


TRAINING = ("transformers", "TrainingArguments")


def check_pretrain(checked: dict) -> list[str]:
    """The cross-field rules of a pretraining recipe: sources, stages, the steps they make and the schedule."""
    problems = check_model(checked)
    data = checked.get("data") or {}
    training = checked.get("training") or {}
    sources = data.get("sources")
    problems += check_sources(sources)
    block_size = data.get("block_size", PretrainData.block_size)
    if block_size < 2:
        problems.append(f"data.block_size={block_size} must be at least 2 tokens (SmolLM2: 2048)")
        return problems  # every stage's steps are counted in blocks of this size
    stages = parse_stages(checked.get("stages"), sources if isinstance(sources, dict) else {}, block_size, problems)
    if stages:
        library = training_defaults(*TRAINING)
        plan = make_plan(stages, training.get("per_device_train_batch_size", library["per_device_train_batch_size"]),
                         training.get("gradient_accumulation_steps", library["gradient_accumulation_steps"]),
                         world_size_hint(), problems)
        problems += check_schedule(training, plan.total_steps)
        max_steps = training.get("max_steps", -1)
        if max_steps > plan.total_steps:
            problems.append(f"training.max_steps={max_steps} is beyond the {plan.total_steps} steps the stages make: "
                            f"raise the stages' tokens instead (max_steps can only stop a run early)")
    return problems


KIND = "pretrain"
SCHEMA = RecipeSchema(kind="pretrain", sections={"model": ModelSection, "data": PretrainData,
                                                 "speed": SpeedSection, "batch": TokensBatch},
                      training=TRAINING, free=("stages",), check=check_pretrain,
                      paths=("model.name_or_path", "model.tokenizer", "data.sources.*.dataset"))
WEIGHTS = "float32"  # fp32 master weights under bf16 autocast on a bf16 GPU, as nanotron pretrains (speed.py)
SAME_SHAPE = True  # every batch is blocks of the stage's size: one compiled graph serves a stage
FUSED_LOSS = True  # transformers' Trainer: Liger fuses the LM head and the cross-entropy (no logits held)
METRICS = ["loss", "tokens_per_second", "mfu"]


def defaults() -> dict:
    """SmolLM2's released pretraining settings; recipes set the model, data, stages and batch."""
    return {"training": {
        **run_defaults("runs/pretrain"), "save_steps": 1000,
        "learning_rate": 5e-4, "lr_scheduler_type": "warmup_stable_decay", "warmup_steps": 2000,
        "lr_scheduler_kwargs": {"num_decay_steps": 0.1, "decay_type": "linear", "min_lr_ratio": 0.0},
        "adam_beta1": 0.9, "adam_beta2": 0.95, "adam_epsilon": 1e-8, "weight_decay": 0.01, "max_grad_norm": 1.0,
        "include_num_input_tokens_seen": "all", "ddp_find_unused_parameters": False,
    }}


def run_pretrain(recipe_name: str, overrides: list[str], **flag_values) -> dict | None:
    """The whole pretraining run; returns the final metrics (None when only the config was printed)."""
    from . import command

    flags = RunFlags(**flag_values)
    recipe = resolve(recipe_name, command, overrides, flags)
    if recipe is None:
        return None
    run = Run.start(recipe, flags)
    with run.stopping_cleanly():
        # model: no KV cache while training (it also stops document masks being skipped)
        model, tokenizer, placement = run.load_model()
        from ...data.blocks import document_separator
        from ...model.build import count_parameters

        if document_separator(tokenizer) is None:
            raise UsageError("the tokenizer has neither <|endoftext|> nor an eos token to separate documents: use a "
                             "tokenizer that has one")
        model.config.use_cache = False
        run.record["parameters"] = count_parameters(model.config)

        # data: every source read, tokenised into blocks once (a cache outside the run), drawn by stage
        plan = plan_for(recipe, run.args)
        index, files = run.read_data(lambda: block_index(recipe, plan, tokenizer))
        fingerprints = {f"{name}@{size}": file.key for (name, size), file in sorted(files.items())}
        # the stages and seed are in the recipe, which a resume compares too; the processes are not, and the
        # sampler's resume position depends on them
        fingerprints["blocks per step"] = plan.samples_per_step
        run.check_resumable(fingerprints)

        # trainer
        packed_attention = getattr(recipe.sections.get("speed"), "packed_attention", "auto")
        trainer = run.build(lambda: make_trainer(model, tokenizer, run.args, index, plan, recipe.training,
                                                 recipe.data.cross_document_attention,
                                                 placement.attn_implementation, packed_attention))
        report = data_report(plan, files, index)
        run.show("data", report)

        # train
        run.record.update(data_report=report, plan={
            "samples_per_step": plan.samples_per_step, "total_steps": plan.total_steps,
            "stages": [{"name": s.name, "steps": s.steps, "block_size": s.block_size} for s in plan.stages]})
        run.open(fingerprints)
        result = run.train(trainer)
        return run.finish(trainer, result, panels(recipe), METRICS, notes=notes(report, trainer.summary))


def plan_for(recipe, args, processes: int | None = None):
    """Stages and steps for this recipe on this many processes (the training arguments' own by default)."""
    problems: list[str] = []
    stages = parse_stages(recipe.sections["stages"], recipe.data.sources, recipe.data.block_size, problems)
    plan = make_plan(stages, args.per_device_train_batch_size, args.gradient_accumulation_steps,
                     processes or args.world_size, problems)
    if problems:
        raise UsageError("; ".join(problems))
    return plan


def block_index(recipe, plan, tokenizer):
    """(the mixture index the sampler draws from, the block files by (source, block size)). Every source is read
    first, so a missing column fails before anything is tokenised; writes only into the block cache."""
    from ...data.blocks import IndexStage, MixtureIndex, check_text_column, tokenize_source
    from ...data.loading import load_split

    sources = {name: SourceSection(**raw) for name, raw in recipe.data.sources.items()}
    used = {(name, stage.block_size) for stage in plan.stages for name in stage.mixture}
    datasets = {}
    for name in sorted({name for name, _ in used}):
        source = sources[name]
        datasets[name] = load_split(source.dataset, source.config, source.split)
        check_text_column(datasets[name], name, source.text_column)
    files = {(name, block_size): tokenize_source(datasets[name], name, sources[name].text_column, tokenizer,
                                                 block_size, cache_dir=recipe.data.cache_dir,
                                                 num_proc=recipe.data.num_proc)
             for name, block_size in sorted(used)}
    index = MixtureIndex([IndexStage(s.name, s.steps * plan.samples_per_step, s.block_size, s.mixture)
                          for s in plan.stages], files, recipe.data.seed)
    return index, files


def make_trainer(model, tokenizer, args, index, plan, training: dict, cross_document_attention: bool = True,
                 attn_implementation: str = "sdpa", packed_attention: str = "auto"):
    """The pretraining Trainer over an index and its plan (also used as is by bench/pretrain_throughput.py)."""
    from ...data.blocks import document_separator
    from ...model.build import count_parameters
    from ..packing import attend_documents_alone
    from .trainer import BlockCollator, PretrainTrainer, rope_by_stage

    total = plan.total_steps
    args.max_steps = args.max_steps if 0 < args.max_steps <= total else total
    warmup, decay = schedule_steps(training, total)
    args.warmup_steps = warmup
    if decay is not None:
        args.lr_scheduler_kwargs = {**(args.lr_scheduler_kwargs or {}), "num_decay_steps": decay}
    args.ignore_data_skip = True  # the sampler starts at the resumed step itself (see trainer.py)
    args.remove_unused_columns = False
    final_positions = rope_by_stage(plan, model.config)[-1][1]
    tokenizer.model_max_length = max(final_positions, plan.stages[-1].block_size)
    # documents kept apart by their offsets where train/packing.py chooses so (sdpa on CPU), else the 4-D mask
    by_document = not cross_document_attention and attend_documents_alone(model, attn_implementation, args.device,
                                                                           packed_attention)
    collator = BlockCollator(separator_id=document_separator(tokenizer), by_document=by_document,
                             cross_document_attention=cross_document_attention, attn_implementation=attn_implementation)
    return PretrainTrainer(model=model, args=args, train_dataset=index, data_collator=collator,
                           processing_class=tokenizer, plan=plan, index=index,
                           parameters=count_parameters(model.config))


def data_report(plan, files, index) -> dict:
    report = {"steps": plan.total_steps, "blocks per step": plan.samples_per_step}
    for number, stage in enumerate(plan.stages):
        start, tokens = plan.starts[number], stage.steps * plan.tokens_per_step(number)
        shares = ", ".join(f"{name} {weight:g}" for name, weight in stage.mixture.items())
        report[f"stage {stage.name}"] = (f"steps {start}-{start + stage.steps}, {tokens:,} tokens, block "
                                         f"{stage.block_size}, {shares}")
    for (name, size), file in sorted(files.items()):
        report[f"source {name} @ {size}"] = (f"{file.num_blocks * size:,} tokens in {file.documents:,} documents, "
                                             f"read {index.draws.get((name, size), 0) / file.num_blocks:.2f}x")
    return report


def notes(report: dict, summary: dict) -> list[str]:
    """Lines for the model card: the stages, and the throughput the trainer measured (its `summary`)."""
    lines = [f"{key}: {value}" for key, value in report.items() if key.startswith("stage ")]
    mfu = summary.get("mfu (last log)")
    rate = summary.get("tokens/s (last log)")
    if rate:
        where = summary.get("device", "this machine")
        lines.append(f"throughput (last log): {rate:,.0f} tokens/s on {where}, MFU "
                     + (f"{mfu:.1%}" if mfu is not None else "n/a (no known dense bf16 peak for this device)"))
    return lines


def panels(recipe) -> list[tuple[str, list[str]]]:
    """The curves of the report; the per-source token counts are named after the recipe's sources."""
    return [("loss", ["loss"]), ("learning rate", ["learning_rate"]),
            ("tokens per source", [f"tokens/{name}" for name in recipe.data.sources]),
            ("throughput", ["tokens_per_second"]), ("MFU", ["mfu"]), ("stage", ["stage"]),
            ("gradient norm", ["grad_norm"])]


# ---------------------------------------------------------------- facts for the checks, speed choice and plan


def check_args(args, problems: list[str]) -> None:
    """Pretraining's own argument checks live in `check_pretrain` (they need the stages)."""


def memory_shape(recipe, micro_batch: int, strategy: str, gpu: bool, flash_installed: bool,
                 checkpointing: bool | None = None):
    """Blocks of the longest stage's size; a 4-D mask only where documents are kept apart without a varlen kernel;
    the LM head's logits held (or, with Liger, fused into the loss)."""
    stages = recipe.sections.get("stages") or []
    sequence = max([s.get("block_size") or recipe.data.block_size for s in stages if isinstance(s, dict)]
                   or [recipe.data.block_size])
    mask = not recipe.data.cross_document_attention and masks_packed_documents(recipe, gpu, flash_installed)
    return step_shape(recipe, micro_batch, sequence, strategy, gpu, checkpointing, block_mask=mask,
                      tiled_head=False, reference=False)


def size(recipe, args, processes: int, tokenizer=None, rows=None, tokens_per_row=None):
    """The stages, as the run counts them (the very plan it follows), on `processes` devices."""
    from ..size import Phase, Size, cut_at

    plan = plan_for(recipe, args, processes)
    phases = [Phase(stage.name, stage.steps * plan.tokens_per_step(n), stage.steps, stage.block_size,
                    plan.tokens_per_step(n)) for n, stage in enumerate(plan.stages)]
    return Size(phases=cut_at(phases, args.max_steps) if args.max_steps > 0 else phases)


def flops(size, parameters: int, config, args) -> float:
    """Training FLOPs by the MFU convention, 6N + 12·L·H·Q·T a token (train/mfu.py)."""
    from ..mfu import training_flops

    return training_flops(size, parameters, config)
