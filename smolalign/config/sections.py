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
class DatasetRef:
    """A dataset to read, as every section that names one writes it (training data, pretraining sources)."""

    dataset: str | None = None
    """Hub id, local .jsonl/.json/.parquet/.csv file, or a local directory laid out like a hub dataset."""
    config: str | None = None
    split: str = "train"


@dataclass
class DataSource(DatasetRef):
    format: FormatName = "auto"
    weight: float = 1.0
    """Share of the mixture (weights are normalised to sum to 1)."""


@dataclass
class DataSection(DatasetRef):
    """`dataset` (or `mixture`): what trains."""

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


@dataclass
class SpeedSection:
    """How a run uses its machine beyond the library's own settings (train/speed.py chooses the defaults)."""

    fit_micro_batch: bool = False
    """On a GPU (the default there): the largest per-device batch that fits, by `smolalign plan`'s memory estimate,
    with gradient_accumulation_steps changed so that per-device batch x accumulation stays as written."""
    packed_attention: Literal["auto", "mask", "by_document", "varlen"] = "auto"
    """How packed documents are kept apart under sdpa (train/packing.py): auto (per-document sdpa on CPU, the 4-D
    block-causal mask on a GPU), mask, by_document, or varlen (torch's FlashAttention varlen kernel, CUDA only)."""
    cudnn_attention: bool | None = None
    """cuDNN's SDPA kernel (torch.backends.cuda.enable_cudnn_sdp). Off on a GPU by default (train/speed.py): its
    bf16 backward has given NaN gradients with a finite forward on sm90; true turns it on; null leaves torch's own
    choice."""


@dataclass
class RowsBatch:
    """sft and dpo: the batch an optimizer step takes over every process, stated once (train/batch.py)."""

    global_rows: int | None = None
    """Rows (pairs for DPO) a step over every process (SmolLM2: 128). gradient_accumulation_steps becomes
    global_rows / (processes x per_device_train_batch_size), which must divide exactly."""


@dataclass
class TokensBatch:
    """pretrain: the batch an optimizer step takes over every process, stated once (train/batch.py)."""

    global_tokens: int | None = None
    """Tokens a step over every process at data.block_size (SmolLM2-1.7B: 2097152). gradient_accumulation_steps
    becomes global_tokens / (processes x per_device_train_batch_size x block_size), which must divide exactly."""


SECTIONS = {"model": ModelSection, "data": DataSection, "speed": SpeedSection, "batch": RowsBatch}
