"""The output check of the one-shot writers (model init, model import, tokenizer train), which write a folder."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..outputs import check_output_dir


def check_output_folder(output: str, overwrite: bool) -> Path:
    """For the one-shot writers (model init and import, tokenizer train): the output is a folder, and a file at
    that path is named as such (the general check would call it read-only, since a file cannot be entered)."""
    path = Path(output).expanduser()
    if str(output).strip() and path.exists() and not path.is_dir():
        raise UsageError(f"--output '{output}' is a file: these commands write a folder; choose a folder path")
    return check_output_dir(output, overwrite)
