"""The `model` and `data` sections that every training recipe shares, as typed dataclasses: their field
docstrings are the documentation of each key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FormatName = Literal["auto", "messages", "sharegpt", "alpaca", "prompt_completion", "preference"]


@dataclass
class ModelSection:
    name_or_path: str | None = None
    """Hub id, local directory of a saved model (its tokenizer is used too), or a GGUF file (llama.cpp, Ollama)."""
    preset: str | None = None
    """Build fresh weights from a preset instead (smollm2-135m, smollm2-360m, smollm2-1.7b, tiny)."""
    gguf_file: str | None = None
    """The GGUF file to load when name_or_path is a folder holding several (a .gguf path works alone)."""
    tokenizer: str | None = None
    """Tokenizer directory or hub id; required with `preset`, optional otherwise."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """`auto`: bf16 on a GPU that supports it, fp32 on CPU."""
    attn_implementation: str = "auto"
    """`auto`: flash_attention_2 on GPU when installed, else sdpa."""
    trust_remote_code: bool = False
    """Run code shipped with a hub model; off unless you trust its author."""


@dataclass
class DataSource:
    dataset: str | None = None
    """Hub id, local .jsonl/.json/.parquet/.csv file, or a local directory laid out like a hub dataset."""
    config: str | None = None
    split: str = "train"
    format: FormatName = "auto"
    weight: float = 1.0
    """Share of the mixture (weights are normalised to sum to 1)."""


@dataclass
class DataSection:
    dataset: str | None = None
    """Hub id, local file or hub-layout directory; or use `mixture`."""
    config: str | None = None
    split: str = "train"
    eval_split: str | None = None
    """Split used for evaluation; when absent, `eval_fraction` of the training rows are held out."""
    format: FormatName = "auto"
    """Input format; `auto` detects it from the columns."""
    mixture: list[dict] | None = None
    """List of sources (dataset, config, split, format, weight); weight = share of the mixed rows."""
    eval_fraction: float = 0.0
    """Share of training rows held out for evaluation (deterministic, by `seed`) when no eval_split is given."""
    num_samples: int | None = None
    """Rows to train on (a cap for one dataset; the mixture size for a mixture). None: all that the weights allow."""
    seed: int = 42
    max_truncated_fraction: float = 1.0
    """Fail the run when more than this share of rows is cut by `training.max_length`."""


SECTIONS = {"model": ModelSection, "data": DataSection}
