"""Trainer callbacks shared by every command: rich progress, a metrics log, the stop on a diverged run and the run's
own TensorBoard writer (checkpoint markers: checkpoints.py).

Throughput has one definition, `tokens_per_second`, used by the progress bar, the metrics log and the end-of-run
summary alike: real (non-padding) tokens that this `train()` call saw, over the Trainer's own `train_runtime`
clock for the same call (evaluation and saving included, as in transformers' `train_tokens_per_second`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from transformers import TrainerCallback

METRICS_FILE = "metrics.jsonl"


def tokens_per_second(state, runtime: float, tokens_before: int = 0) -> float | None:
    """Tokens seen since `train()` began (`tokens_before`: those restored from a checkpoint) per second of
    `runtime`; None when there is nothing to divide."""
    tokens = state.num_input_tokens_seen - tokens_before
    if not runtime or runtime <= 0 or tokens <= 0:
        return None
    return tokens / runtime


class StopOnNonFinite(TrainerCallback):
    """Stops the run at the first log whose loss or gradient norm is NaN or infinite (transformers' own
    `logging_nan_inf_filter`, off in smolalign, would log the average of earlier losses instead and train on). Logs
    come before checkpoints at the same step, so no checkpoint holds the NaN weights, and an `--overwrite` keeps the
    old output. As Megatron-LM checks for NaN in the loss and the gradients by default."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        for key in ("loss", "grad_norm"):
            value = (logs or {}).get(key)
            if isinstance(value, (int, float)) and not math.isfinite(value):
                from ..errors import TrainingDiverged

                raise TrainingDiverged(
                    f"{key} is {value} at step {state.global_step}: the run stopped before saving NaN weights; "
                    f"lower training.learning_rate or change the setting that made it diverge, and --resume from "
                    f"the last checkpoint if there is one")


class MetricsLog(TrainerCallback):
    """Appends every log (train and eval) as one JSON line, on the main process only.

    A fresh run starts the file anew; a resumed one keeps the lines up to the checkpoint's step (later ones were
    logged by the interrupted run and are logged again), then writes a `resumed` line. The end-of-train record
    (`train_loss`, `train_runtime`) covers only this `train()` call: after a resume it says so (`since_step`).
    The file lives in `args.output_dir`, which names the run's directory even when an `--overwrite` swaps it in
    mid-run (run.py)."""

    def __init__(self, resume_step: int | None = None):
        self.resume_step = resume_step
        self.start_step = 0
        self.tokens_before = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_step = state.global_step if self.resume_step is None else self.resume_step
        self.tokens_before = state.num_input_tokens_seen
        if not state.is_world_process_zero:
            return  # every process runs callbacks: only one may touch the shared file
        path = Path(args.output_dir) / METRICS_FILE
        if self.start_step == 0:
            path.unlink(missing_ok=True)
            return
        kept = []
        if path.is_file():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= self.start_step]
        kept.append(json.dumps({"step": self.start_step, "event": "resumed", "tokens_seen": self.tokens_before}))
        path.write_text("".join(line + "\n" for line in kept))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, "epoch": state.epoch, **logs, "tokens_seen": state.num_input_tokens_seen}
        if "train_loss" in logs:  # the end-of-train record: transformers gives it no token rate
            record.setdefault("train_tokens_per_second",
                              tokens_per_second(state, logs.get("train_runtime"), self.tokens_before))
            if self.start_step:
                record["since_step"] = self.start_step  # train_loss and runtime cover the resumed part only
        with (Path(args.output_dir) / METRICS_FILE).open("a") as handle:
            handle.write(json.dumps(record) + "\n")


class RichProgress(TrainerCallback):
    """A rich progress bar with loss, learning rate, tokens/s and ETA, in place of the default tqdm bar.

    The bar redraws from the training loop itself, at most twice a second, rather than from rich's refresh
    thread: on a CPU, a thread waking ten times a second takes a core from torch's worker threads, which then
    wait for it."""

    REDRAW_SECONDS = 0.5

    def __init__(self):
        self.progress = None
        self.task = None
        self.fields = {"loss": "-", "lr": "-", "tps": "-"}
        self.tokens_before = 0
        self._drawn = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.tokens_before = state.num_input_tokens_seen
        resumed = " (since resume)" if state.global_step else ""
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tps]} tok/s" + resumed),
            TimeRemainingColumn(), transient=False, auto_refresh=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, **self.fields)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self._redraw()

    def _redraw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._drawn >= self.REDRAW_SECONDS:
            self.progress.refresh()
            self._drawn = now

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        if "loss" in logs:
            self.fields["loss"] = f"{logs['loss']:.4f}"
        if "learning_rate" in logs:
            self.fields["lr"] = f"{logs['learning_rate']:.2e}"
        rate = tokens_per_second(state, logs.get("train_runtime"), self.tokens_before)
        if rate is not None:
            self.fields["tps"] = f"{rate:,.0f}"
        self.progress.update(self.task, **self.fields)
        self._redraw(force=True)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None


class RunWriter:
    """The run's TensorBoard writer, handed to transformers' `TensorBoardCallback(tb_writer=...)` (its documented
    argument): the run, not the callback, owns where the event files go. When an `--overwrite`'s new output moves
    into place (run.py's `swap_in`) the run closes it and moves it; its next write opens new event files there."""

    def __init__(self, log_dir: str):
        self.log_dir, self._writer = log_dir, None

    def _open(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=self.log_dir)
        return self._writer

    def add_scalar(self, *args, **kwargs):
        self._open().add_scalar(*args, **kwargs)

    def add_text(self, *args, **kwargs):
        self._open().add_text(*args, **kwargs)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def move(self, before: str, after: str) -> None:
        self.close()
        if self.log_dir.startswith(before):
            self.log_dir = after + self.log_dir[len(before):]


def own_tensorboard_writer(trainer) -> RunWriter | None:
    """Where the recipe reports to TensorBoard, replace the Trainer's callback by one that writes through a
    `RunWriter` in the same place (TENSORBOARD_LOGGING_DIR, else the output's runs/<time>_<host>); None otherwise."""
    import os

    from transformers.integrations import TensorBoardCallback
    from transformers.integrations.integration_utils import default_logdir

    if not any(isinstance(callback, TensorBoardCallback) for callback in trainer.callback_handler.callbacks):
        return None
    trainer.remove_callback(TensorBoardCallback)
    where = os.getenv("TENSORBOARD_LOGGING_DIR")
    writer = RunWriter(os.path.expanduser(where) if where else os.path.join(trainer.args.output_dir, default_logdir()))
    trainer.add_callback(TensorBoardCallback(tb_writer=writer))
    return writer
