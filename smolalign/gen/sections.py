"""The spec sections every subset shares: `llm` (a model to load, `ModelSection`, which the quality passes' models
reuse), `seeds`, `output`, `decontaminate` and `ray`, the settings every subset has (`Common`), and their checks.

A default is written once, in its dataclass: a check reads the values with the defaults filled in (`filled`), so
it never restates one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Literal


def filled(section, values: dict | None) -> dict:
    """A section's checked values over its dataclass's defaults."""
    return {**asdict(section()), **(values or {})}


@dataclass
class ModelSection:
    """A model to load: the generator and judges (`llm`), the reward and safety classifiers and the embedder share
    these keys and their checks (`check_model`)."""

    model: str | None = None
    """Path or hub id (an OpenAI-compatible server: the served model's name, default its only one); null turns an
    optional model's pass off."""
    batch_size: int = 8
    """Rows per batch: one batched forward pass (local models), or that many concurrent requests (a server)."""
    dtype: str = "auto"
    """torch dtype name or auto (local models)."""
    device: str | None = None
    """cpu, cuda, cuda:1 ... (local models; default: chosen by the library)."""
    trust_remote_code: bool = False


@dataclass
class LLMSection(ModelSection):
    backend: Literal["openai", "transformers", "vllm"] = "openai"
    """openai: any OpenAI-compatible server (base_url); transformers: a local model in-process; vllm: the same, on a
    GPU."""
    tokenizer: str | None = None
    """Tokenizer path or hub id; Magpie over a server renders the chat template here (default: llm.model)."""
    base_url: str | None = None
    """Server URL for the openai backend, e.g. http://127.0.0.1:8000/v1 (default: $OPENAI_BASE_URL)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key; the key is never written anywhere. None needed for a local server."""
    magpie_pre_query_template: str = "qwen2"
    """What Magpie feeds the model to make it write the user's turn: 'qwen2' (ChatML: <|im_start|>user\\n), 'llama3' or
    the literal string."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    top_k: int = 0
    """transformers / vllm only; 0 turns it off."""
    repetition_penalty: float = 1.0
    """transformers / vllm only (distilabel's TransformersLLM would otherwise use 1.1)."""
    max_retries: int = 6
    """HTTP retries with backoff per request (openai client; Retry-After is honoured)."""
    timeout: int = 120
    """Seconds before one request is abandoned (openai)."""


@dataclass
class SeedsSection:
    dataset: str | None = None
    """Hub id, local .jsonl/.json/.parquet/.csv file or hub-layout directory, read through the data layer."""
    column: str = "text"
    """The column holding the seed texts."""
    config: str | None = None
    split: str = "train"
    limit: int | None = None
    """Use only the first N seed texts."""


@dataclass
class OutputSection:
    dir: str | None = None
    """Output directory (default data/SUBSET): a hub-layout dataset that `smolalign sft data.dataset=DIR` reads."""
    shard_size: int = 100
    """Rows per shard: each shard runs as one distilabel pipeline and is committed atomically (the unit of resume)."""
    max_passes: int = 3
    """Tries per row: rows whose batch failed (or whose answer was unusable) are asked again in a later pass."""
    dedup: Literal["exact", "normalized"] = "exact"
    """exact: drop identical conversations; normalized: also those equal up to case, spaces and punctuation."""
    stall_seconds: int = 60
    """A pipeline whose steps neither report progress (tokens, answered requests) nor use the CPU for this long is
    stalled: gen stops with the command that resumes it. A step worker that dies stops it at once."""


@dataclass
class DecontaminateSection:
    against: str | None = None
    """Eval set (path or hub id) whose n-grams must not appear in the user turns (e.g. IFEval); off when null."""
    ngram: int = 10


@dataclass
class RaySection:
    enabled: bool = False
    """Run each shard's pipeline with distilabel's Pipeline.ray() (`--ray` sets this)."""
    address: str | None = None
    """Ray cluster address (default: $RAY_ADDRESS, or a local Ray started for the run)."""
    replicas: int = 1
    """Replicas of each LLM step (generator steps always run as one in distilabel)."""


@dataclass
class Common:
    num_rows: int | None = None
    """Rows to generate (requests). Seed subsets: null means every seed text (once per style for smol-rewrite)."""
    seed: int = 42
    """Fixes the plan: which system prompt, seed text and style each row gets, and how rows fall into shards."""


DTYPES = ("auto", "float32", "float16", "bfloat16", "float64", "float", "half", "double")
DEVICE = re.compile(r"^(cpu|mps|auto|cuda(:\d+)?|xpu(:\d+)?)$")


def check_device(value, key: str) -> list[str]:
    """A device name torch knows (availability is checked when a run starts: run.py's `check_devices`)."""
    if value is None or DEVICE.match(str(value)):
        return []
    return [f"{key}={value} is not a device: write cpu, cuda, cuda:N (or leave it out to let transformers choose)"]


def check_model(values: dict, prefix: str) -> list[str]:
    """The checks of one model to load (a filled ModelSection or subclass)."""
    problems = check_device(values["device"], f"{prefix}.device")
    if values["dtype"] not in DTYPES:
        problems.append(f"{prefix}.dtype={values['dtype']} is not a torch dtype: write one of {', '.join(DTYPES)}")
    if values["batch_size"] < 1:
        problems.append(f"{prefix}.batch_size={values['batch_size']} must be at least 1")
    return problems


def check_llm(llm: dict, prefix: str) -> list[str]:
    """The checks of one LLM's settings (filled): the generator's `llm`, or a judge's merged with it (`labels.llm`)."""
    problems = check_model(llm, prefix)
    if llm["temperature"] < 0:
        problems.append(f"{prefix}.temperature={llm['temperature']} must be at least 0")
    if not 0 < llm["top_p"] <= 1:
        problems.append(f"{prefix}.top_p={llm['top_p']} must be in (0, 1]")
    if llm["repetition_penalty"] <= 0:
        problems.append(f"{prefix}.repetition_penalty={llm['repetition_penalty']} must be above 0")
    for key in ("max_new_tokens", "timeout"):
        if llm[key] < 1:
            problems.append(f"{prefix}.{key}={llm[key]} must be at least 1")
    if llm["max_retries"] < 0 or llm["top_k"] < 0:
        problems.append(f"{prefix}.max_retries and {prefix}.top_k must be 0 or more")
    if llm["backend"] == "openai":
        for key, neutral in (("top_k", 0), ("repetition_penalty", 1.0)):
            if llm[key] != neutral:
                problems.append(f"{prefix}.{key} is not part of the OpenAI API: remove it, or use --backend "
                                f"transformers or vllm")
    elif not llm["model"]:
        problems.append(f"{prefix}.model is required with backend {llm['backend']}: pass --model PATH_OR_HUB_ID")
    return problems


def check_shared(checked: dict) -> list[str]:
    """The shared sections' checks (filled values)."""
    problems = []
    s = checked["_settings"]
    out, seeds = filled(OutputSection, checked.get("output")), filled(SeedsSection, checked.get("seeds"))
    if s["num_rows"] is not None and s["num_rows"] < 1:
        problems.append(f"num_rows={s['num_rows']} must be at least 1")
    problems += check_llm(filled(LLMSection, checked.get("llm")), "llm")
    for key in ("shard_size", "max_passes", "stall_seconds"):
        if out[key] < 1:
            problems.append(f"output.{key}={out[key]} must be at least 1")
    if filled(RaySection, checked.get("ray"))["replicas"] < 1:
        problems.append("ray.replicas must be at least 1")
    if filled(DecontaminateSection, checked.get("decontaminate"))["ngram"] < 1:
        problems.append("decontaminate.ngram must be at least 1")
    if seeds["limit"] is not None and seeds["limit"] < 1:
        problems.append(f"seeds.limit={seeds['limit']} must be at least 1 (or null for all)")
    return problems
