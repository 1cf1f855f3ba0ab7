"""The life of a training run, shared by `sft` and `dpo`: recipe -> (relaunch) -> output dir -> resume -> report."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from ..config import Recipe, load_recipe
from ..errors import UsageError
from ..outputs import check_output_dir
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


def process_state():
    """accelerate's process state; on a machine without GPUs, several processes talk over gloo on the CPU."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return process_state().is_main_process


def resolve(recipe_name: str, kind: str, overrides: list[str], defaults: dict, flags: RunFlags) -> Recipe | None:
    """Load and validate the recipe; print it, or hand the run to accelerate, when asked. None: nothing to train."""
    recipe = load_recipe(recipe_name, kind, overrides, defaults)
    if flags.print_config:
        click.echo(recipe.to_yaml(), nl=False)
        return None
    recipe.training_args()  # TRL's own consistency checks, still before any model or data is loaded
    if flags.merge and recipe.lora is None:
        raise UsageError("--merge needs a lora section: full fine-tuning already writes full weights")
    if flags.accelerate_config and not inside_launch():
        check_output_dir(recipe.training["output_dir"], flags.overwrite, resuming=flags.resume)
        sys.exit(relaunch(flags.accelerate_config, flags.num_processes))
    return recipe


@dataclass
class OutputPlan:
    output_dir: Path
    resume_from: Path | None


def plan_output(recipe: Recipe, flags: RunFlags) -> OutputPlan:
    """Check the output directory before anything heavy runs; pick the checkpoint to resume from."""
    output_dir = check_output_dir(recipe.training["output_dir"], flags.overwrite, resuming=flags.resume)
    resume_from = newest_complete_checkpoint(output_dir) if flags.resume else None
    if flags.resume and resume_from is None:
        click.echo(f"no complete checkpoint in {output_dir}: starting from the beginning", err=True)
    return OutputPlan(output_dir=output_dir, resume_from=resume_from)


def check_resumable_data(plan: OutputPlan, fingerprints: dict) -> None:
    if plan.resume_from is None:
        return
    previous = read_run_info(plan.output_dir) or {}
    before = previous.get("data_fingerprints")
    if before is not None and before != fingerprints:
        raise UsageError(
            f"the data differs from the run being resumed in {plan.output_dir} (fingerprints {before} -> "
            f"{fingerprints}): resume with the same data, or start a new run with another output_dir"
        )


def open_output(plan: OutputPlan, recipe: Recipe, fingerprints: dict, flags: RunFlags, extra: dict) -> None:
    """The first write of the run: everything before this point only read."""
    if not is_main_process():
        return
    if flags.overwrite and not flags.resume and plan.output_dir.is_dir():
        shutil.rmtree(plan.output_dir)
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    if plan.resume_from is not None:
        removed = remove_incomplete(plan.output_dir)
        for path in removed:
            click.echo(f"removed half-written {path.name}", err=True)
    write_run_info(plan.output_dir, recipe, fingerprints, extra)


def install_callbacks(trainer, plan: OutputPlan) -> None:
    from transformers.trainer_callback import ProgressCallback

    from .callbacks import MetricsLog, RichProgress
    from .checkpoints import CheckpointMarker, take_over_rotation

    resume_step = int(plan.resume_from.name.split("-")[-1]) if plan.resume_from else None
    trainer.remove_callback(ProgressCallback)
    for callback in (CheckpointMarker(take_over_rotation(trainer)), MetricsLog(plan.output_dir, resume_step),
                     RichProgress()):
        trainer.add_callback(callback)


def load_recipe_model(recipe: Recipe, seed: int):
    from ..modeling import check_model_source, load_model

    if recipe.model.name_or_path:
        check_model_source(recipe.model.name_or_path)
    return load_model(
        name_or_path=recipe.model.name_or_path, preset=recipe.model.preset, tokenizer=recipe.model.tokenizer,
        dtype=recipe.model.dtype, attn_implementation=recipe.model.attn_implementation,
        trust_remote_code=recipe.model.trust_remote_code, seed=seed,
    )


def dataset_names(recipe: Recipe) -> list[str]:
    if recipe.data.mixture:
        return [f"{m['dataset']} (weight {m.get('weight', 1.0)})" for m in recipe.data.mixture]
    return [recipe.data.dataset]


def merge_adapter(model, tokenizer, output: Path) -> None:
    """Fold a LoRA adapter into full weights, written beside the adapter (on a copy: the adapter stays)."""
    import copy

    merged = copy.deepcopy(model).merge_and_unload()
    merged.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))


def finish(trainer, recipe: Recipe, plan: OutputPlan, result, merge: bool, panels, metric_keys, notes=()) -> dict:
    """Save the model, then the report: curves PNG, summary table, model card. Returns the final metrics."""
    from .report import final_metrics, plot_curves, print_summary, write_model_card

    trainer.model.config.use_cache = True  # training turned the KV cache off; generation wants it back
    trainer.save_model(str(plan.output_dir))
    if trainer.args.push_to_hub:  # as TRL's own scripts do: the final model, tokenizer and card go to the hub
        trainer.push_to_hub()
    if not is_main_process():
        return {}
    trainer.processing_class.save_pretrained(str(plan.output_dir))
    if merge:
        merge_adapter(trainer.model, trainer.processing_class, plan.output_dir / "merged")
    plot_curves(plan.output_dir, panels)
    metrics = final_metrics(plan.output_dir, metric_keys)
    metrics.update({k: v for k, v in result.metrics.items() if k in ("train_runtime", "train_loss")})
    runtime, tokens = result.metrics.get("train_runtime") or 0, trainer.state.num_input_tokens_seen
    summary = {"steps": trainer.state.global_step, "tokens seen": tokens, **metrics}
    if runtime and tokens:
        summary["tokens/s"] = tokens / runtime
    print_summary(f"{recipe.kind} → {plan.output_dir}", summary)
    base = recipe.model.name_or_path or f"preset {recipe.model.preset}"
    write_model_card(plan.output_dir, command=recipe.kind, base_model=base, datasets=dataset_names(recipe),
                     recipe_path=recipe.path, metrics=metrics, notes=list(notes))
    click.echo(f"model written to {plan.output_dir}", err=True)
    return metrics
