"""Checkpoints are complete or absent: a marker is written after a save finishes, and only marked ones resume.

transformers writes `checkpoint-N/` in place, so a process killed mid-save leaves a directory that looks like a
checkpoint. The marker, written last (and after every rank finished saving), tells the two apart.

transformers also rotates checkpoints (`save_total_limit`) inside its save, *before* our marker of the new one
exists: with a limit of 1, a crash in that window would leave no complete checkpoint at all. So smolalign takes
rotation over: the Trainer is given no limit, and old checkpoints are deleted only after the new one is marked.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from transformers import TrainerCallback

COMPLETE_MARKER = "smolalign_complete.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def is_complete(checkpoint: Path) -> bool:
    return (checkpoint / COMPLETE_MARKER).is_file()


def newest_complete_checkpoint(output_dir: str | Path) -> Path | None:
    complete = [path for _, path in checkpoints(output_dir) if is_complete(path)]
    return complete[-1] if complete else None


def remove_incomplete(output_dir: str | Path) -> list[Path]:
    """Delete half-written checkpoints so that rotation and later resumes never see them. Only in a directory
    that a smolalign run wrote (it holds the run record): there, every `checkpoint-N` is ours."""
    from ..outputs import RUN_FILE

    if not (Path(output_dir) / RUN_FILE).is_file():
        return []
    removed = [path for _, path in checkpoints(output_dir) if not is_complete(path)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def mark_complete(checkpoint: Path, step: int) -> None:
    (checkpoint / COMPLETE_MARKER).write_text(json.dumps({"step": step}) + "\n")


def rotate(output_dir: str | Path, limit: int | None, keep: Path | None = None) -> list[Path]:
    """Keep the newest `limit` complete checkpoints (and `keep`, the best one); never touch unmarked ones here."""
    if not limit or limit < 1:
        return []
    complete = [path for _, path in checkpoints(output_dir) if is_complete(path)]
    doomed = [path for path in complete[:-limit] if keep is None or path.resolve() != Path(keep).resolve()]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed


def take_over_rotation(trainer) -> int | None:
    """Switch the Trainer's own rotation off; the returned limit is applied by `CheckpointMarker` instead."""
    limit = trainer.args.save_total_limit
    trainer.args.save_total_limit = None
    return limit


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint complete once every process has finished writing it, then rotates old ones."""

    def __init__(self, save_total_limit: int | None = None):
        self.save_total_limit = save_total_limit

    def on_save(self, args, state, control, **kwargs):
        from accelerate import PartialState

        PartialState().wait_for_everyone()
        if state.is_world_process_zero:
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if checkpoint.is_dir():
                from ..outputs import respect_umask

                respect_umask(checkpoint)
                mark_complete(checkpoint, state.global_step)
                rotate(args.output_dir, self.save_total_limit, keep=state.best_model_checkpoint)
        PartialState().wait_for_everyone()


class OnCompleteCheckpoint(TrainerCallback):
    """Calls `action` after each save, once `CheckpointMarker` (added before it) has marked the checkpoint
    complete: a run's first complete checkpoint is its first complete result (run.py swaps it in)."""

    def __init__(self, action):
        self.action = action

    def on_save(self, args, state, control, **kwargs):
        self.action()
