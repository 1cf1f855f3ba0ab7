"""Read one split of a dataset from a hub id, a local file, or a local directory laid out like a hub repo."""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..modeling import looks_like_local_path

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


def load_split(dataset: str, config: str | None = None, split: str = "train"):
    """Return a `datasets.Dataset`; every way it can fail becomes a one-line UsageError."""
    import datasets

    path = Path(dataset).expanduser()
    try:
        if path.is_file():
            builder = FILE_BUILDERS.get(path.suffix.lower())
            if builder is None:
                raise UsageError(
                    f"dataset file '{dataset}' has an unsupported type: use .jsonl, .json, .parquet or .csv"
                )
            if split != "train":
                raise UsageError(
                    f"dataset file '{dataset}' holds one split, 'train', not '{split}': use data.eval_fraction, "
                    f"or a directory with data/{split}-*.parquet"
                )
            loaded = datasets.load_dataset(builder, data_files={"train": str(path)}, split="train")
        elif path.is_dir():
            loaded = datasets.load_dataset(str(path), name=config, split=split)
        elif looks_like_local_path(dataset):
            raise UsageError(f"dataset '{dataset}' does not exist: check the path, or give a hub id")
        else:
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
