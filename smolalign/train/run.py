"""The life of a training run, offered to the commands (sft.py, dpo.py, pretrain/command.py), which call its steps in
order in their own `run_*` function, after train/resolve.py has resolved and checked the recipe:

    recipe = resolve(...)            (resolve.py) the recipe as this machine runs it; printed, or handed to accelerate
    run = Run.start(recipe, flags)   the output directory checked and locked, the checkpoint to resume picked
    with run.stopping_cleanly():     a failure or ctrl-C before the first complete result leaves no trace
        run.load_model()             the model and tokenizer (a GGUF file: its imported directory)
        run.read_data(...)           one process a node fills the datasets cache, the others read it
        run.check_resumable(...)     resuming with other data or another batch is another run: refused
        run.build(...)               the trainer; a config error is one line, before anything is written
        run.open(...)                the first write: the run record
        run.train(trainer)           progress bar, metrics log, checkpoints (and the swap that replaces an output)
        run.finish(...)              weights, report (curves, summary, model card), the swap, push

Every check that can fail on bad input runs before `run.open`, so a failed command leaves nothing behind and the
corrected one just runs.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..config import Recipe
from ..errors import UsageError
from ..outputs import Replacement, check_output_dir
from ..stops import checkpoint_bytes, expect_space
from ..runinfo import read_run_info, write_run_info
from .checkpoints import newest_complete_checkpoint, remove_incomplete
from .resolve import RunFlags


def process_state():
    """accelerate's process state; on a machine without GPUs, several processes talk over gloo on the CPU."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def is_main_process() -> bool:
    return process_state().is_main_process


# ---------------------------------------------------------------- the run


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


@dataclass
class Run:
    """One training run's output, resume point, training arguments and what its record will say."""

    recipe: Recipe
    flags: RunFlags
    output: Replacement
    """Where the run writes until its first complete result, and the swap that then makes it the output."""
    resume_from: Path | None
    args: object
    """The library's training arguments (SFTConfig, DPOConfig, TrainingArguments), pointed at `output_dir`."""
    record: dict = field(default_factory=dict)
    """Entries for the run record beside the recipe (placement, starting weights, data reports...)."""
    tensorboard: object = None
    """The run's own TensorBoard writer (callbacks.py's `RunWriter`), where the recipe reports to TensorBoard."""

    @property
    def output_dir(self) -> Path:
        """The directory the run writes to now: the output, or before the swap the sibling that replaces it."""
        return self.output.path

    @classmethod
    def start(cls, recipe: Recipe, flags: RunFlags) -> "Run":
        """Check the output directory before anything heavy runs, lock it, and pick the checkpoint to resume from.
        A run that stops before its first complete result (a marked checkpoint, or the final save) leaves the
        output as it found it: an `--overwrite` builds beside the old output, and a fresh output is removed."""
        target = check_output_dir(recipe.training["output_dir"], flags.overwrite, resuming=flags.resume,
                                  can_resume=True)
        output = Replacement(target, flags.overwrite, resume=flags.resume, remove_unfinished=True)
        if is_main_process():
            output.lock()  # writes nothing; a directory that does not exist yet is locked once it is made
        resume_from = newest_complete_checkpoint(target) if flags.resume else None
        if flags.resume and resume_from is None:
            click.echo(f"no complete checkpoint in {target}: starting from the beginning", err=True)
        args = recipe.training_args(output_dir=str(output.path))  # the sibling, until the first checkpoint
        return cls(recipe, flags, output, resume_from, args)

    @contextlib.contextmanager
    def stopping_cleanly(self):
        """A failure or an interrupt (ctrl-C) before the first complete result removes the run's own partial work;
        the output's lock is released however the run ends."""
        try:
            yield self
        except BaseException:
            if is_main_process():
                self.output.discard()
            raise
        finally:
            self.output.release()

    def load_model(self):
        """(model, tokenizer, placement) of the recipe's model section; the LoRA section checked against it."""
        from ..model.gguf import resolve_model
        from ..model.load import check_model_source, load_model
        from .guards import check_lora
        from .speed import apply_cudnn_attention

        apply_cudnn_attention(self.recipe)  # torch's SDPA backends are switched process-wide, before the model runs
        model_section = self.recipe.model
        name, gguf = None, None
        if model_section.name_or_path:
            check_model_source(model_section.name_or_path, model_section.gguf_file)
            name, gguf = resolve_model(model_section.name_or_path, model_section.gguf_file)
        model, tokenizer, placement = load_model(
            name_or_path=name, preset=model_section.preset, tokenizer=model_section.tokenizer,
            dtype=model_section.dtype, attn_implementation=model_section.attn_implementation,
            trust_remote_code=model_section.trust_remote_code, seed=self.args.seed)
        check_lora(model, self.recipe.lora_config())
        self.record["placement"] = vars(placement)
        if gguf is not None:
            self.record["starting_weights"] = gguf.record()
        return model, tokenizer, placement

    def read_data(self, load):
        """`load()` with one process a node first (it fills the datasets cache; nodes need not share a disk)."""
        with process_state().local_main_process_first():
            return load()

    def check_resumable(self, fingerprints: dict) -> None:
        """Resuming with other data or another model/batch is a different run: refuse it, naming what changed.
        Other changes (logging, saving, epochs) are allowed and listed."""
        if self.resume_from is None:
            return
        previous = read_run_info(self.output_dir) or {}
        kind = self.recipe.kind
        if previous.get("command") not in (None, kind):
            raise UsageError(f"'{self.output_dir}' holds a `smolalign {previous['command']}` run, not a `smolalign "
                             f"{kind}` one: resume it with `smolalign {previous['command']} ... --resume`, or give "
                             f"{kind} another training.output_dir")
        old, new = _flatten(previous.get("recipe") or {}), _flatten(self.recipe.to_dict())
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k != "training.output_dir")
        breaking = [k for k in changed if any(k == b or k.startswith(b + ".") for b in BREAKING_KEYS)]
        if breaking:
            raise UsageError(f"the recipe changed since the run in {self.output_dir} started ({', '.join(breaking)}): "
                             f"resume with the same recipe, or start a new run with another output_dir")
        before = previous.get("data_fingerprints")
        if before is not None and before != fingerprints:
            raise UsageError(
                f"the data differs from the run being resumed in {self.output_dir} (fingerprints {before} -> "
                f"{fingerprints}): resume with the same data, or start a new run with another output_dir")
        if changed and is_main_process():
            click.echo(f"resuming with changed settings: {', '.join(changed)}", err=True)

    def build(self, make_trainer, rows: int = 0):
        """`make_trainer()` with the library's late refusals (ValueError and kin from a trainer's constructor)
        turned into one line, still before the first write. A large set (`rows`) shows the datasets' progress bars
        while the trainer tokenizes and packs it."""
        from ..quiet import show_data_progress

        show_data_progress(rows)
        try:
            return make_trainer()
        except UsageError:
            raise
        except (ValueError, TypeError, AssertionError, NotImplementedError, ImportError) as error:
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"the trainer refused the recipe: {text}") from error

    def show(self, title: str, table: dict) -> None:
        if table and is_main_process():
            from .report import print_summary

            print_summary(title, table)

    def open(self, fingerprints: dict) -> None:
        """The first write of the run: everything before this point only read."""
        if not is_main_process():
            return
        self.output.open()
        if self.resume_from is not None:
            for path in remove_incomplete(self.output_dir):
                click.echo(f"removed half-written {path.name}", err=True)
            click.echo(f"resuming from {self.resume_from}", err=True)
        write_run_info(self.output_dir, self.recipe, fingerprints, self.record,
                       resumed_from=str(self.resume_from) if self.resume_from else None)

    def train(self, trainer):
        """Train (or resume) with smolalign's progress bar, metrics log, TensorBoard writer and checkpoint markers;
        the first marked checkpoint swaps an `--overwrite`'s new output in."""
        from transformers.trainer_callback import ProgressCallback

        from .callbacks import MetricsLog, RichProgress, StopOnNonFinite, own_tensorboard_writer
        from .checkpoints import CheckpointMarker, OnCompleteCheckpoint, take_over_rotation

        resume_step = int(self.resume_from.name.split("-")[-1]) if self.resume_from else None
        expect_space(self.output.target, checkpoint_bytes(trainer.model), "a checkpoint")
        trainer.remove_callback(ProgressCallback)
        self.tensorboard = own_tensorboard_writer(trainer)
        # the metrics log writes the NaN line before the stop raises: the user sees where it diverged
        for callback in (CheckpointMarker(take_over_rotation(trainer)),
                         OnCompleteCheckpoint(lambda: self.swap_in(trainer)), MetricsLog(resume_step),
                         RichProgress(), StopOnNonFinite()):
            trainer.add_callback(callback)
        return trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)

    def swap_in(self, trainer) -> None:
        """The run has its first complete result: make its directory the output, on every process alike."""
        if self.output.committed:
            return
        before = str(self.output.path)
        trainer.accelerator.wait_for_everyone()  # every rank has finished writing into the sibling
        if self.tensorboard is not None:  # its event files are closed before their directory moves
            self.tensorboard.close()
        if is_main_process():
            self.output.commit()
        else:
            self.output.path, self.output.committed = self.output.target, True
        trainer.accelerator.wait_for_everyone()
        after = str(self.output.target)
        trainer.args.output_dir = after
        if self.tensorboard is not None:  # it opens new event files at its next write, in the moved directory
            self.tensorboard.move(before, after)
        state = trainer.state
        if state.best_model_checkpoint and state.best_model_checkpoint.startswith(before):
            state.best_model_checkpoint = after + state.best_model_checkpoint[len(before):]
            if is_main_process():  # the checkpoints' own trainer states name it too, for a later resume
                for state_file in self.output.target.glob("checkpoint-*/trainer_state.json"):
                    state_file.write_text(state_file.read_text().replace(before, after))

    def finish(self, trainer, result, panels, metric_keys, notes=()) -> dict:
        """The end of a run, in order: the weights, the report (curves, summary, model card), the swap that makes the
        run the output (if no checkpoint came first), then the push, so that the hub gets it all. Returns the final
        metrics."""
        self.save_weights(trainer)
        metrics = self.write_report(trainer, result, panels, metric_keys, notes) if is_main_process() else {}
        self.swap_in(trainer)
        if is_main_process():
            self.output.finish()  # the final save: an old output an --overwrite set aside is removed now
        self.push(trainer)
        return metrics

    def save_weights(self, trainer) -> None:
        """The final model (a LoRA run: its adapter, and with `--merge` the merged weights) and tokenizer."""
        output_dir = self.output_dir
        trainer.model.config.use_cache = True  # training turned the KV cache off; generation wants it back
        if trainer.is_fsdp_enabled:  # a sharded state dict would leave the final directory without weights
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        trainer.save_model(str(output_dir))
        trainer.accelerator.wait_for_everyone()  # every rank has saved before anything reads the directory
        if is_main_process():
            trainer.processing_class.save_pretrained(str(output_dir))
            if self.flags.merge:  # from the saved adapter, in this one process: under ZeRO-3/FSDP the model is a shard
                from .merge import merge_saved_adapter

                merge_saved_adapter(output_dir, output_dir / "merged")

    def write_report(self, trainer, result, panels, metric_keys, notes) -> dict:
        """Curves PNG, the summary table and the model card (main process); returns the final metrics."""
        from ..outputs import respect_umask
        from .callbacks import tokens_per_second
        from .report import final_metrics, plot_curves, print_summary, write_model_card

        recipe, output_dir = self.recipe, self.output_dir
        plot_curves(output_dir, panels)
        metrics = final_metrics(output_dir, metric_keys)
        resumed = self.resume_from is not None
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
        print_summary(f"{recipe.kind} → {self.output.target}", summary)
        base = recipe.model.name_or_path or f"preset {recipe.model.preset}"
        write_model_card(output_dir, command=recipe.kind, base_model=base, datasets=dataset_names(recipe),
                         recipe_path=recipe.path, metrics=metrics, notes=list(notes))
        respect_umask(output_dir)
        return metrics

    def push(self, trainer) -> None:
        """Last, so the hub gets the card, curves and merged weights too."""
        if trainer.args.push_to_hub:
            trainer.push_to_hub()
        if is_main_process():
            click.echo(f"model written to {self.output.target}", err=True)


def dataset_names(recipe: Recipe) -> list[str]:
    if getattr(recipe.data, "mixture", None):
        return [f"{m['dataset']} (weight {m.get('weight', 1.0)})" for m in recipe.data.mixture]
    if getattr(recipe.data, "dataset", None):
        return [recipe.data.dataset]
    sources = getattr(recipe.data, "sources", None) or {}
    return [f"{name}: {source.get('dataset')}" for name, source in sources.items()]


def refuse_truncation(cut: int, total: int, unit: str, args, recipe: Recipe) -> None:
    """More rows (pairs) longer than max_length than the recipe allows: one line, before anything is written."""
    share = cut / max(total, 1)
    if share > recipe.data.max_truncated_fraction:
        raise UsageError(f"{share:.1%} of {unit} are longer than max_length={args.max_length}, above "
                         f"data.max_truncated_fraction={recipe.data.max_truncated_fraction}: raise one of them")


def dropped_rows(data_report: dict) -> dict:
    """The data layer's dropped rows, by source and reason, for the data table."""
    rows = {}
    for source in data_report["sources"]:
        for why, count in (source.get("rows_dropped") or {}).items():
            rows[f"dropped ({source['dataset']}): {why}"] = count
    return rows
