"""Trainer callbacks shared by every command: rich progress and a metrics log (checkpoint markers: checkpoints.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from transformers import TrainerCallback


METRICS_FILE = "metrics.jsonl"


class MetricsLog(TrainerCallback):
    """Appends every log (train and eval) as one JSON line; on resume, lines past the checkpoint are dropped."""

    def __init__(self, output_dir: str | Path, resume_step: int | None):
        self.path = Path(output_dir) / METRICS_FILE
        if resume_step is not None and self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, **logs,
                      "tokens_seen": state.num_input_tokens_seen}
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


class RichProgress(TrainerCallback):
    """A rich progress bar with loss, learning rate, tokens/s and ETA, in place of the default tqdm bar."""

    def __init__(self):
        self.progress = None
        self.task = None
        self.fields = {"loss": "-", "lr": "-", "tps": "-"}
        self._last = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[tps]} tok/s"),
            TimeRemainingColumn(), transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, **self.fields)
        self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is None or not logs:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        if "loss" in logs:
            self.fields["loss"] = f"{logs['loss']:.4f}"
        if "learning_rate" in logs:
            self.fields["lr"] = f"{logs['learning_rate']:.2e}"
        if "loss" in logs and self._last and tokens and now > self._last[0]:
            self.fields["tps"] = f"{(tokens - self._last[1]) / (now - self._last[0]):,.0f}"
            self._last = (now, tokens)
        self.progress.update(self.task, **self.fields)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)
            self.progress.stop()
            self.progress = None
