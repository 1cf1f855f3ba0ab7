"""The resumable record of a built-in task's answers: `<task>-responses.jsonl` (e.g. `ifeval-responses.jsonl`) in
the eval directory.

Line 1 is a header that names the settings (model files, chat template, token limit, dtype, prompts); every later
line is one answer, appended and flushed as soon as it is made. The same command after a kill asks only the
prompts without an answer. A header with other settings (the model was retrained, another limit) starts over.

The file is read defensively, because a kill, a full disk or a hand edit can leave anything in it: a line that is
not an answer (binary bytes, torn JSON, no `response`, a null one) is named in one warning and skipped, and its
prompt is asked again; the record is then rewritten without it, so no later run trips on it. A header that is
not ours is refused (it may be another file): `--overwrite` starts over. A directory at the path is refused in
one line before anything loads. When every prompt is answered, the answers go to eval.json and the record is
removed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UsageError


def record_path(place: Path, task: str) -> Path:
    return place / f"{task}-responses.jsonl"


def check(path: Path, overwrite: bool) -> None:
    """Before any model loads: a directory at the path, or a header that is not ours, is the user's to resolve."""
    if path.is_dir():
        raise UsageError(f"'{path}' is a directory, where eval keeps the answers of a run in progress: move it "
                         f"away or remove it, then run again")
    if path.is_file() and not overwrite and _header(path) is None:
        raise UsageError(f"'{path}' does not start with the settings line eval writes (a corrupt or foreign file): "
                         f"add --overwrite to start the answers over, or move the file away")


def _header(path: Path) -> dict | None:
    try:
        with path.open("rb") as handle:
            first = handle.readline()
        header = json.loads(first.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return header if isinstance(header, dict) and isinstance(header.get("settings"), dict) else None


def _answer(line: bytes) -> dict | None:
    try:
        entry = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(entry, dict) and isinstance(entry.get("key"), int) and isinstance(entry.get("response"), str)
            and isinstance(entry.get("truncated"), bool)):
        return None
    return entry


def read(path: Path, settings: dict, overwrite: bool, warn) -> dict[int, dict]:
    """Answers already made under the same settings, by prompt key; bad lines reported (through `warn`) and left
    out."""
    if overwrite or not path.is_file():
        return {}
    header = _header(path)
    if header is None or header["settings"] != settings:
        if header is not None:
            warn(f"{path.name} holds answers made with other settings: starting over")
        return {}
    done, bad = {}, []
    for number, line in enumerate(path.read_bytes().split(b"\n")[1:], start=2):
        if not line.strip():
            continue
        entry = _answer(line)
        if entry is None:
            bad.append(number)
        else:
            done[entry["key"]] = entry
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        warn(f"{path.name}: line{'s' if len(bad) > 1 else ''} {shown} not an answer (torn, binary, or without a "
             f"response): skipped, {'their prompts are' if len(bad) > 1 else 'its prompt is'} asked again")
    return done


def start(path: Path, settings: dict, done: dict[int, dict]) -> None:
    """(Re)write the record with its header and the answers kept, so later appends follow the right header."""
    from ..outputs import atomic_write_text

    lines = [json.dumps({"settings": settings})] + [json.dumps(entry) for entry in done.values()]
    atomic_write_text(path, "\n".join(lines) + "\n")


def append(path: Path, entry: dict) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def finish(path: Path) -> None:
    """Every answer is in eval.json now: the record of a run in progress has done its job."""
    path.unlink(missing_ok=True)
