"""The life of a training run, once, for every command (sft, dpo, pretrain):

recipe -> (relaunch under accelerate) -> checks -> output directory + lock -> model -> data -> trainer -> first
write (run record) -> callbacks -> train (or resume) -> save -> report.

A command gives only what is its own (a `Command`: defaults, schema, data, trainer). Every check that can fail on
bad input runs before the first write, so a failed command leaves nothing behind and the corrected one just runs.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..config import Recipe, RecipeSchema
from ..errors import UsageError
from ..outputs import Replacement, check_output_dir
from ..quiet import show_data_progress
from ..runinfo import read_run_info, write_run_info
from .checkpoints import newest_complete_checkpoint, remove_incomplete
from .launch import inside_launch, relaunch


@dataclass
class RunFlags:
    print_config: bool = False
    overwrite: bool = False
    resume: bool = False
    merge: bool = False
    accelerate_config: str | None = None
    num_processes: int | None = None
    recipe_given: bool = True
    """False: the command line named no recipe and the command's paper recipe stands in (pretrain, dpo)."""


@dataclass
class PreparedData:
    """What a command's data step hands to the run: datasets, fingerprints (for resume), and a report."""

    train: object
    eval: object | None
    fingerprints: dict
    report: dict = field(default_factory=dict)
    """Printed as the data table before training and kept in the run record."""
    record: dict = field(default_factory=dict)
    """Further entries for the run record (e.g. the data layer's per-source report)."""


@dataclass
class Command:
    """What one training command brings to the shared run lifecycle."""

    kind: str
    defaults: Callable[[], dict]
    load_data: Callable  # (recipe, tokenizer, args) -> PreparedData; reads only, runs main-process-first
    build_trainer: Callable  # (model, tokenizer, args, data: PreparedData, recipe) -> Trainer
    panels: list | Callable  # [(title, [metric keys])], or a function of the recipe that gives them
    metric_keys: list
    schema: RecipeSchema | None = None
    prepare: Callable | None = None
    """(model, tokenizer, recipe, args, placement) -> dict of run-record entries; checks and readies the model."""
    check_data: Callable | None = None
    """(trainer, data: PreparedData, recipe, args) -> None; checks that need the built trainer (e.g. its
    tokenized dataset); may add to data.report."""
    notes: Callable = lambda data, args: []
    """(data, args) -> lines for the model card."""
    size: Callable | None = None
    """(recipe, args, processes) -> [plan.size.Phase]: the run's phases as `smolalign plan` counts them, without data;
    None: counted from the data (sft, dpo)."""


def machine_defaults() -> dict:
    """Training defaults that depend on the machine, shared by every command (speed.py's `base_defaults`)."""
    from .speed import base_defaults, machine_facts

    return base_defaults(machine_facts())


def process_state():
    """accelerate's process state; on a machine without GPUs, several processes talk over gloo on the CPU."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return process_state().is_main_process


def resolve(recipe_name: str, kind: str, overrides: list[str], defaults: dict, flags: RunFlags,
            schema: RecipeSchema | None = None) -> Recipe | None:
    """Load and validate the recipe; print it, or hand the run to accelerate, when asked. None: nothing to train."""
    import os

    from .speed import explain, load_command_recipe, machine_facts

    check_launch_flags(flags)
    machine = machine_facts()
    if flags.accelerate_config and not inside_launch():  # the checks count the processes the launch will start
        from .launch import launched_processes

        machine = dataclasses.replace(machine, processes=launched_processes(flags.accelerate_config,
                                                                            flags.num_processes))
    try:
        resolved = load_command_recipe(recipe_name, kind, overrides, defaults, schema, machine)
        if not flags.print_config:
            check_recipe(resolved.recipe, kind, flags.merge)
    except UsageError as error:
        if flags.recipe_given:
            raise
        raise UsageError(f"no recipe was given, so `smolalign {kind}` used the paper's recipe '{recipe_name}' "
                         f"(recipes/{recipe_name}.yaml, for GPUs), which fails here: {error}. Name a recipe for this "
                         f"machine, e.g. `smolalign {kind} debug/{kind}`") from error
    recipe = resolved.recipe
    if flags.print_config:
        click.echo(recipe.to_yaml(), nl=False)
        lines = explain(resolved.speed, recipe, machine) + ([f"  {resolved.note}"] if resolved.note else [])
        click.echo("\n".join(f"# {line}" for line in lines))
        return None
    if resolved.note and os.environ.get("RANK", "0") == "0":
        click.echo(f"note: {resolved.note}", err=True)
    move_token_to_environment(recipe)
    from .guards import check_machine

    check_machine(recipe, machine)
    if flags.accelerate_config and not inside_launch():
        check_output_dir(recipe.training["output_dir"], flags.overwrite, resuming=flags.resume, can_resume=True)
        sys.exit(relaunch(flags.accelerate_config, flags.num_processes))
    return recipe


def check_launch_flags(flags: RunFlags) -> None:
    """The launch flags, and the accelerate config they name, before anything is loaded or written."""
    from .launch import check_accelerate_config

    if flags.num_processes is not None and flags.num_processes < 1:
        raise UsageError(f"--num-processes {flags.num_processes}: give at least 1")
    if flags.num_processes is not None and not flags.accelerate_config:
        raise UsageError("--num-processes goes with --accelerate-config, which starts the processes: add e.g. "
                         "--accelerate-config cpu-ddp (CPU) or zero3 (GPUs)")
    if flags.accelerate_config:
        check_accelerate_config(flags.accelerate_config)


def check_recipe(recipe: Recipe, kind: str, merge: bool = False, args=None) -> None:
    """Every check that needs no model and no data; `args` stands in for the recipe's own training arguments
    where they cannot be built on this machine (`smolalign plan` for a GPU, from a CPU)."""
    if not recipe.training.get("output_dir"):
        raise UsageError("training.output_dir is empty: give a directory, e.g. training.output_dir=runs/my-run")
    if args is None:
        args = recipe.training_args()  # the library's own consistency checks, before any model or data is loaded
    from .guards import check_eval_data, check_lora, check_training

    check_training(kind, args)
    check_eval_data(args, has_eval=bool(getattr(recipe.data, "eval_split", None)
                                        or getattr(recipe.data, "eval_fraction", 0)))
    check_lora(None, recipe.lora_config())  # the adapter's own values, before any model loads
    if merge and recipe.lora is None:
        raise UsageError("--merge needs a lora section: full fine-tuning already writes full weights")
    if merge:
        from .merge import check_mergeable

        check_mergeable(recipe.model.name_or_path, recipe.model.preset)


def move_token_to_environment(recipe: Recipe) -> None:
    """A hub token given in the recipe goes to HF_TOKEN for this process only: the Trainer pickles its arguments
    into every checkpoint (training_args.bin), so a token left there would be written and pushed."""
    import os

    token = recipe.training.pop("hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
        click.echo("note: training.hub_token is used through HF_TOKEN and never written; set HF_TOKEN in the "
                   "environment instead", err=True)


@dataclass
class OutputPlan:
    output: Replacement
    """Where the run writes until its first complete result, and the swap that then makes it the output."""
    resume_from: Path | None

    @property
    def output_dir(self) -> Path:
        """The directory the run writes to now: the output, or before the swap the sibling that replaces it."""
        return self.output.path


def plan_output(recipe: Recipe, flags: RunFlags) -> OutputPlan:
    """Check the output directory before anything heavy runs, lock it, and pick the checkpoint to resume from.

    A run that stops before its first complete result (a marked checkpoint, or the final save) leaves the output
    as it found it: an `--overwrite` builds beside the old output, and a fresh output is removed again."""
    target = check_output_dir(recipe.training["output_dir"], flags.overwrite, resuming=flags.resume,
                              can_resume=True)
    output = Replacement(target, flags.overwrite, resume=flags.resume, remove_unfinished=True)
    if is_main_process():
        output.lock()  # writes nothing; a directory that does not exist yet is locked once it is made
    plan = OutputPlan(output=output, resume_from=None)
    if flags.resume:
        plan.resume_from = newest_complete_checkpoint(target)
        if plan.resume_from is None:
            click.echo(f"no complete checkpoint in {target}: starting from the beginning", err=True)
    return plan


# Recipe keys whose change makes a resumed run a different run (model, data, batch geometry, seed).
BREAKING_KEYS = ("model", "data", "stages", "batch", "training.per_device_train_batch_size",
                 "training.gradient_accumulation_steps", "training.max_length", "training.packing",
                 "training.seed", "training.data_seed")


def _flatten(value, prefix: str = "") -> dict:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def check_resumable(plan: OutputPlan, recipe: Recipe, fingerprints: dict) -> None:
    """Resuming with other data or another model/batch is a different run: refuse it, naming what changed.
    Other changes (logging, saving, epochs) are allowed and listed."""
    if plan.resume_from is None:
        return
    previous = read_run_info(plan.output_dir) or {}
    if previous.get("command") not in (None, recipe.kind):
        raise UsageError(f"'{plan.output_dir}' holds a `smolalign {previous['command']}` run, not a `smolalign "
                         f"{recipe.kind}` one: resume it with `smolalign {previous['command']} ... --resume`, or give "
                         f"{recipe.kind} another training.output_dir")
    old, new = _flatten(previous.get("recipe") or {}), _flatten(recipe.to_dict())
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k != "training.output_dir")
    breaking = [k for k in changed if any(k == b or k.startswith(b + ".") for b in BREAKING_KEYS)]
    if breaking:
        raise UsageError(f"the recipe changed since the run in {plan.output_dir} started ({', '.join(breaking)}): "
                         f"resume with the same recipe, or start a new run with another output_dir")
    before = previous.get("data_fingerprints")
    if before is not None and before != fingerprints:
        raise UsageError(
            f"the data differs from the run being resumed in {plan.output_dir} (fingerprints {before} -> "
            f"{fingerprints}): resume with the same data, or start a new run with another output_dir"
        )
    if changed and is_main_process():
        click.echo(f"resuming with changed settings: {', '.join(changed)}", err=True)


def open_output(plan: OutputPlan, recipe: Recipe, fingerprints: dict, flags: RunFlags, extra: dict) -> None:
    """The first write of the run: everything before this point only read."""
    if not is_main_process():
        return
    plan.output.open()
    if plan.resume_from is not None:
        for path in remove_incomplete(plan.output_dir):
            click.echo(f"removed half-written {path.name}", err=True)
        click.echo(f"resuming from {plan.resume_from}", err=True)
    write_run_info(plan.output_dir, recipe, fingerprints, extra,
                   resumed_from=str(plan.resume_from) if plan.resume_from else None)


def swap_in(plan: OutputPlan, trainer) -> None:
    """The run has its first complete result: make its directory the output, on every process alike."""
    if plan.output.committed:
        return
    before = str(plan.output.path)
    trainer.accelerator.wait_for_everyone()  # every rank has finished writing into the sibling
    tensorboard = open_tensorboard_writers(trainer)
    for callback in tensorboard:  # its files are reopened by name at each write: close them before they move
        callback.tb_writer.close()
    if is_main_process():
        plan.output.commit()
    else:
        plan.output.path, plan.output.committed = plan.output.target, True
    trainer.accelerator.wait_for_everyone()
    after = str(plan.output.target)
    args, state = trainer.args, trainer.state
    args.output_dir = after
    for callback in tensorboard:  # it opens a writer again at its next log, in the moved directory
        callback.tb_writer = None
        if callback.logging_dir and callback.logging_dir.startswith(before):
            callback.logging_dir = after + callback.logging_dir[len(before):]
    if state.best_model_checkpoint and state.best_model_checkpoint.startswith(before):
        state.best_model_checkpoint = after + state.best_model_checkpoint[len(before):]
        if is_main_process():  # the checkpoints' own trainer states name it too, for a later resume
            for state_file in plan.output.target.glob("checkpoint-*/trainer_state.json"):
                state_file.write_text(state_file.read_text().replace(before, after))


def open_tensorboard_writers(trainer) -> list:
    from transformers.integrations import TensorBoardCallback

    return [callback for callback in trainer.callback_handler.callbacks
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None]


def install_callbacks(trainer, plan: OutputPlan) -> None:
    from transformers.trainer_callback import ProgressCallback

    from .callbacks import MetricsLog, RichProgress
    from .checkpoints import CheckpointMarker, OnCompleteCheckpoint, take_over_rotation

    resume_step = int(plan.resume_from.name.split("-")[-1]) if plan.resume_from else None
    trainer.remove_callback(ProgressCallback)
    for callback in (CheckpointMarker(take_over_rotation(trainer)), OnCompleteCheckpoint(lambda: swap_in(plan, trainer)),
                     MetricsLog(resume_step), RichProgress()):
        trainer.add_callback(callback)


def starting_weights(recipe: Recipe) -> tuple[str | None, dict | None]:
    """The model to load (a GGUF file: its imported directory), and what the run record says of a GGUF file."""
    from ..model.gguf import resolve_model
    from ..model.load import check_model_source

    if not recipe.model.name_or_path:
        return None, None
    check_model_source(recipe.model.name_or_path, recipe.model.gguf_file)
    name, gguf = resolve_model(recipe.model.name_or_path, recipe.model.gguf_file)
    return name, gguf.record() if gguf else None


def load_recipe_model(recipe: Recipe, seed: int):
    from ..model.load import load_model

    return load_model(
        name_or_path=starting_weights(recipe)[0], preset=recipe.model.preset, tokenizer=recipe.model.tokenizer,
        dtype=recipe.model.dtype, attn_implementation=recipe.model.attn_implementation,
        trust_remote_code=recipe.model.trust_remote_code, seed=seed,
    )


def construct_trainer(command: Command, plan: OutputPlan, model, tokenizer, args, data, recipe):
    """Build the trainer and check its tokenized data before the first write: a config error becomes one line
    (and the empty output directory the Trainer makes for itself goes with the run's other partial work)."""
    try:
        trainer = command.build_trainer(model, tokenizer, args, data, recipe)
        if command.check_data is not None:
            command.check_data(trainer, data, recipe, args)
        return trainer
    except UsageError:
        raise
    except (ValueError, TypeError, AssertionError, NotImplementedError, ImportError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"the trainer refused the recipe: {text}") from error


def dataset_names(recipe: Recipe) -> list[str]:
    if getattr(recipe.data, "mixture", None):
        return [f"{m['dataset']} (weight {m.get('weight', 1.0)})" for m in recipe.data.mixture]
    if getattr(recipe.data, "dataset", None):
        return [recipe.data.dataset]
    sources = getattr(recipe.data, "sources", None) or {}
    return [f"{name}: {source.get('dataset')}" for name, source in sources.items()]


def finish(trainer, recipe: Recipe, plan: OutputPlan, result, merge: bool, panels, metric_keys, notes=()) -> dict:
    """Save the model, then the report (curves PNG, summary table, model card), then push: the hub gets it all."""
    from .callbacks import tokens_per_second
    from .report import final_metrics, plot_curves, print_summary, write_model_card

    trainer.model.config.use_cache = True  # training turned the KV cache off; generation wants it back
    if trainer.is_fsdp_enabled:  # a sharded state dict would leave the final directory without weights
        trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
    trainer.save_model(str(plan.output_dir))
    trainer.accelerator.wait_for_everyone()  # every rank has saved before anything reads the directory
    metrics = {}
    if is_main_process():
        trainer.processing_class.save_pretrained(str(plan.output_dir))
        if merge:  # from the saved adapter, in this one process: under ZeRO-3/FSDP the live model is a shard
            from .merge import merge_saved_adapter

            merge_saved_adapter(plan.output_dir, plan.output_dir / "merged")
        plot_curves(plan.output_dir, panels)
        metrics = final_metrics(plan.output_dir, metric_keys)
        resumed = plan.resume_from is not None
        for key in ("train_runtime", "train_loss"):
            if key in result.metrics:
                # transformers counts only the steps it ran: after a resume, that is the resumed part
                metrics[f"{key} (since resume)" if resumed else key] = result.metrics[key]
        runtime, tokens = result.metrics.get("train_runtime") or 0, trainer.state.num_input_tokens_seen
        summary = {"steps": trainer.state.global_step, "tokens seen": tokens, **metrics}
        rate = tokens_per_second(trainer.state, runtime, tokens_before=getattr(
            trainer, "_initial_num_input_tokens_seen", 0)) if runtime else None
        if rate:
            summary["tokens/s"] = rate
        print_summary(f"{recipe.kind} → {plan.output.target}", summary)
        base = recipe.model.name_or_path or f"preset {recipe.model.preset}"
        write_model_card(plan.output_dir, command=recipe.kind, base_model=base, datasets=dataset_names(recipe),
                         recipe_path=recipe.path, metrics=metrics, notes=list(notes))
    if is_main_process():
        from ..outputs import respect_umask

        respect_umask(plan.output_dir)
    swap_in(plan, trainer)  # the finished model is a complete result, if no checkpoint came first
    if trainer.args.push_to_hub:  # last, so the hub gets the card, curves and merged weights too
        trainer.push_to_hub()
    if is_main_process():
        click.echo(f"model written to {plan.output.target}", err=True)
    return metrics


def run_command(command: Command, recipe_name: str, overrides: list[str], flags: RunFlags) -> dict | None:
    """The whole run for one command; returns the final metrics (None when only the config was printed)."""
    recipe = resolve(recipe_name, command.kind, overrides, command.defaults(), flags, schema=command.schema)
    if recipe is None:
        return None
    plan = plan_output(recipe, flags)
    args = recipe.training_args(output_dir=str(plan.output_dir))  # the sibling, until the first checkpoint
    try:
        model, tokenizer, placement = load_recipe_model(recipe, args.seed)
        from .guards import check_lora

        check_lora(model, recipe.lora_config())
        record = {"placement": vars(placement)}
        if (gguf := starting_weights(recipe)[1]) is not None:
            record["starting_weights"] = gguf
        if command.prepare is not None:
            record.update(command.prepare(model, tokenizer, recipe, args, placement) or {})
        # one process per node fills the datasets cache, the others read it (nodes need not share a filesystem)
        with process_state().local_main_process_first():
            data = command.load_data(recipe, tokenizer, args)
        check_resumable(plan, recipe, data.fingerprints)
        show_data_progress(len(data.train) if hasattr(data.train, "__len__") else 0)  # TRL prepares it next
        trainer = construct_trainer(command, plan, model, tokenizer, args, data, recipe)
        if data.report and is_main_process():
            from .report import print_summary

            print_summary("data", data.report)
        open_output(plan, recipe, data.fingerprints, flags, {**data.record, "data_report": data.report, **record})
        install_callbacks(trainer, plan)
        result = trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
        panels = command.panels(recipe) if callable(command.panels) else command.panels
        return finish(trainer, recipe, plan, result, flags.merge, panels=panels, metric_keys=command.metric_keys,
                      notes=command.notes(data, args))
    except BaseException:  # a failure or an interrupt (ctrl-C) before the first complete result leaves no trace
        if is_main_process():
            plan.output.discard()
        raise
    finally:
        plan.output.release()
