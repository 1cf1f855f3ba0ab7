"""Checkpoints are complete or absent: a marker is written after a save finishes, and only marked ones resume.

transformers writes `checkpoint-N/` in place, so a process killed mid-save leaves a directory that looks like a
checkpoint. The marker, written last (and after every rank finished saving), tells the two apart.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

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
    """Delete half-written checkpoints so that checkpoint rotation and later resumes never see them."""
    removed = [path for _, path in checkpoints(output_dir) if not is_complete(path)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def mark_complete(checkpoint: Path, step: int) -> None:
    (checkpoint / COMPLETE_MARKER).write_text(json.dumps({"step": step}) + "\n")
