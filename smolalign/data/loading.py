"""Read one split of a dataset from a hub id, a local file, or a local directory laid out like a hub repo.

Every way it can fail becomes one line that names the file (and line) and the fix: the `datasets` library's own
errors for a broken file ("StopIteration", "Invalid encoding") say neither.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..errors import UsageError
from ..hub import check_hub_name, hub_reachable, offline_error

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
TEXT_SUFFIXES = (".jsonl", ".json", ".csv")


def _is_blank(path: Path) -> bool:
    if path.stat().st_size == 0:
        return True
    if path.suffix.lower() not in TEXT_SUFFIXES:
        return False
    with open(path, encoding="utf-8", errors="replace") as handle:
        return not any(line.strip() for line in handle)


def json_problem(path: Path) -> str | None:
    """Where a JSON / JSON-lines file breaks, as 'line N is ...'; None when every line is a JSON object."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    if path.suffix.lower() == ".json" and text.lstrip().startswith("["):  # one JSON array, not JSON lines
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"line {error.lineno} is not valid JSON ({error.msg}, column {error.colno})"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number} is not valid JSON ({error.msg}, column {error.colno}; cut short?)"
        if not isinstance(value, dict):
            return f"line {number} is a JSON {type(value).__name__}, not an object with one field per column"
    return None


def _load_file(datasets, dataset: str, path: Path, split: str):
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise UsageError(f"dataset file '{dataset}' has an unsupported type: use .jsonl, .json, .parquet or .csv")
    if split != "train":
        raise UsageError(
            f"dataset file '{dataset}' holds one split, 'train', not '{split}': use data.eval_fraction, "
            f"or a directory with data/{split}-*.parquet"
        )
    if _is_blank(path):
        raise UsageError(f"dataset file '{dataset}' is empty: point data.dataset at a file with rows")
    quiet = logging.getLogger("datasets")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # its "Failed to load JSON" log line would only precede our clearer one
    try:
        return datasets.load_dataset(builder, data_files={"train": str(path)}, split="train")
    except Exception as error:
        where = json_problem(path) if builder == "json" else None
        if where:
            raise UsageError(f"dataset file '{dataset}' {where}: fix or remove that line") from error
        raise
    finally:
        quiet.setLevel(level)


def load_split(dataset: str, config: str | None = None, split: str = "train"):
    """Return a `datasets.Dataset`; every way it can fail becomes a one-line UsageError."""
    import datasets

    path = Path(dataset).expanduser()
    online = True
    if path.is_dir() and not any(p.is_file() and not p.name.startswith(".") for p in path.rglob("*")):
        raise UsageError(f"dataset '{dataset}' is an empty folder: put the data files in it (.jsonl, .parquet, .csv "
                         f"or .txt), or point the recipe at the file or folder that holds them")
    try:
        if path.is_file():
            loaded = _load_file(datasets, dataset, path, split)
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path), name=config, split=split)
        else:
            check_hub_name("dataset", dataset)  # a missing local path or an impossible id fails here, at once
            online = hub_reachable()  # offline, datasets reads its cache at once instead of retrying
            loaded = datasets.load_dataset(dataset, name=config, split=split)
    except UsageError:
        raise
    except ValueError as error:
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        if "split" in text.lower():
            raise UsageError(f"dataset '{dataset}' has no split '{split}' ({text}): set data.split / data.eval_split") from error
        if "config" in text.lower():
            raise UsageError(f"dataset '{dataset}': {text}: set data.config") from error
        raise UsageError(f"dataset '{dataset}' could not be read: {text}") from error
    except (OSError, FileNotFoundError, ConnectionError) as error:
        if not online:
            raise offline_error("dataset", dataset) from error
        raise UsageError(
            f"dataset '{dataset}' could not be loaded ({type(error).__name__}): give a local file or directory, "
            f"or a hub id with network access or a filled cache"
        ) from error
    except Exception as error:  # datasets raises its own types for corrupt files (DatasetGenerationError, ...)
        cause = error.__cause__ or error
        text = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise UsageError(f"dataset '{dataset}' could not be read ({type(cause).__name__}: {text}): fix the file") from error
    if isinstance(loaded, datasets.DatasetDict):  # defensive: a split was requested, so this should not happen
        loaded = loaded[split]
    if len(loaded) == 0:
        raise UsageError(f"dataset '{dataset}' split '{split}' is empty: point data.dataset at rows to train on")
    return loaded
