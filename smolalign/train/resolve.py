"""A recipe as a run of a training command gets it on a machine, resolved in one place, before anything is loaded.

    resolved = resolve_recipe(name, command, overrides, machine)    # plan, tests and benches: any machine, stated
    recipe = resolve(name, command, overrides, flags)                 # a training command: this machine, checked

The defaults are merged once, lowest first: what every run starts from (`run_defaults`: logging, saving, reporting,
the seed) inside the command's own (`command.defaults()`), then the machine's training defaults and the speed settings
it chooses (train/speed.py), then the recipe file, then the command line (config/loader.py). What depends on the run's
size follows, in order: the accumulation that meets a global batch on the machine's processes (train/batch.py: the
command line wins over the file), Liger and compile kept apart, and either activation checkpointing on a CPU short of
memory or the micro-batch that fits the GPU. `resolve` then checks everything that needs no model and no data, prints
the recipe for `--print-config`, or hands the run to `accelerate launch`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from typing import Protocol

import click

from ..config import Recipe, RecipeSchema
from ..errors import UsageError
from .launch import inside_launch, relaunch
from .speed import Machine


class TrainingCommand(Protocol):
    """What each training command module (train/sft.py, train/dpo.py, train/pretrain/command.py) defines."""

    KIND: str
    SCHEMA: RecipeSchema
    WEIGHTS: str
    """The dtype its weights train in on a GPU with bf16: "float32" (master weights under bf16 autocast) or
    "bfloat16" (train/speed.py's `choose_weights`)."""
    SAME_SHAPE: bool
    """Every batch has the same shape (pretraining's blocks): one compiled graph serves the run."""

    def defaults(self) -> dict: ...
    def check_args(self, args, problems: list[str]) -> None: ...
    def memory_shape(self, recipe, micro_batch: int, strategy: str, gpu: bool, flash_installed: bool,
                     checkpointing: bool | None = None): ...
    def size(self, recipe, args, processes: int, tokenizer=None, rows=None, tokens_per_row=None): ...
    def flops(self, size, parameters: int, config, args) -> float: ...


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


def run_defaults(output_dir: str) -> dict:
    """The training settings every command starts from, below its own: logging, saving, reporting, the seed. What
    depends on the machine is merged once, by `recipe_defaults`."""
    return {"output_dir": output_dir, "logging_steps": 10, "save_strategy": "steps", "save_steps": 500,
            "report_to": ["tensorboard"], "seed": 42}


def recipe_defaults(command: TrainingCommand, machine: Machine) -> dict:
    """Everything below the recipe file, merged once: the command's defaults, the machine's, the speed settings."""
    from ..config import deep_merge
    from .speed import base_defaults, choose_speed, speed_defaults

    return deep_merge(deep_merge(command.defaults(), {"training": base_defaults(machine)}),
                      speed_defaults(choose_speed(machine, command)))


@dataclass
class Resolved:
    recipe: Recipe
    speed: list
    """The speed settings this machine chose (speed.Setting), for `--print-config` and `smolalign plan`."""
    notes: list[str]
    """What the machine or the command line changed of the recipe as written (accumulation, a global batch set
    aside, checkpointing, micro-batch), if anything."""


def model_arch(recipe):
    """The architecture of the recipe's model without weights (model/memory.py), or None where it cannot be read
    here: the run's own checks then say why."""
    from ..model.info import model_config
    from ..model.memory import arch_of

    model = recipe.model
    try:
        config, _, _ = model_config(model.name_or_path, model.preset, model.gguf_file, model.trust_remote_code)
        return arch_of(config, recipe.lora_config())
    except (UsageError, OSError, ValueError):
        return None


def resolve_recipe(recipe_name: str, command: TrainingCommand, overrides: list[str], machine: Machine,
                   arch_for=model_arch) -> Resolved:
    """The recipe as a run of `command` on `machine` gets it (module docstring). `arch_for(recipe)` sizes the model
    (plan sizes a model that a shipped recipe has not written yet)."""
    from ..config import load_recipe
    from ..config.overrides import parse_overrides
    from .batch import derive_accumulation
    from .speed import (CPU_CHECKPOINTING_NOTE, apply_micro_batch, choose_speed, keep_liger_and_compile_apart,
                        needs_checkpointing_on_cpu)

    recipe = load_recipe(recipe_name, command.KIND, overrides, recipe_defaults(command, machine),
                         schema=command.SCHEMA)
    notes = [derive_accumulation(recipe, machine.processes, parse_overrides(overrides)),
             keep_liger_and_compile_apart(recipe, command, machine),
             *getattr(command, "recipe_notes", lambda recipe: [])(recipe)]
    arch = arch_for(recipe)
    if needs_checkpointing_on_cpu(recipe, command, machine, arch):
        recipe.training["activation_checkpointing"] = True
        notes.append(CPU_CHECKPOINTING_NOTE)
    else:
        notes.append(apply_micro_batch(recipe, command, machine, arch))
    return Resolved(recipe, choose_speed(machine, command), [note for note in notes if note])


def resolve(recipe_name: str, command: TrainingCommand, overrides: list[str], flags: RunFlags) -> Recipe | None:
    """The recipe as this machine runs it, every check that needs no model and no data passed. None when there
    is nothing to train here: the config was printed, or the run went to `accelerate launch` and is over."""
    from ..outputs import check_output_dir
    from .guards import check_machine
    from .speed import explain, machine_facts

    check_launch_flags(flags)
    machine = machine_facts()
    if flags.accelerate_config and not inside_launch():  # the checks count the processes the launch will start
        from .launch import launched_processes

        machine = dataclasses.replace(machine, processes=launched_processes(flags.accelerate_config,
                                                                            flags.num_processes))
    try:
        resolved = resolve_recipe(recipe_name, command, overrides, machine)
        if not flags.print_config:
            check_recipe(resolved.recipe, command, flags.merge)
    except UsageError as error:
        if flags.recipe_given:
            raise
        raise UsageError(f"no recipe was given, so `smolalign {command.KIND}` used the paper's recipe "
                         f"'{recipe_name}' (recipes/{recipe_name}.yaml, for GPUs), which fails here: {error}. Name a "
                         f"recipe for this machine, e.g. `smolalign {command.KIND} debug/{command.KIND}`") from error
    recipe = resolved.recipe
    if flags.print_config:
        click.echo(recipe.to_yaml(), nl=False)
        lines = explain(resolved.speed, recipe, machine) + [f"  {note}" for note in resolved.notes]
        click.echo("\n".join(f"# {line}" for line in lines))
        return None
    if os.environ.get("RANK", "0") == "0":
        for note in resolved.notes:
            click.echo(f"note: {note}", err=True)
    move_token_to_environment(recipe)
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


def check_recipe(recipe: Recipe, command: TrainingCommand, merge: bool = False, args=None) -> None:
    """Every check that needs no model and no data; `args` stands in for the recipe's own training arguments
    where they cannot be built on this machine (`smolalign plan` for a GPU, from a CPU)."""
    if not recipe.training.get("output_dir"):
        raise UsageError("training.output_dir is empty: give a directory, e.g. training.output_dir=runs/my-run")
    if args is None:
        args = recipe.training_args()  # the library's own consistency checks, before any model or data is loaded
    from .guards import check_eval_data, check_lora, check_training

    check_training(args, command)
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
    token = recipe.training.pop("hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
        click.echo("note: training.hub_token is used through HF_TOKEN and never written; set HF_TOKEN in the "
                   "environment instead", err=True)


def with_model(overrides: list[str], model_path: str | None) -> list[str]:
    """`--model DIR` is `model.name_or_path=DIR`, before the other overrides."""
    return overrides if model_path is None else [f"model.name_or_path={model_path}", *overrides]
