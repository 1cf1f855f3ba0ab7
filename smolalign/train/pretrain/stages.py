"""A pretraining recipe's `stages` and `data.sources`, checked, and turned into steps and one schedule.

A stage is a token budget over a mixture of sources (weights are token shares summing to 1), optionally at
another block size and RoPE base (context extension). The Trainer counts steps, so each budget becomes a whole
number of optimizer steps: `round(tokens / tokens_per_step)`, with tokens_per_step = processes x per-device
batch x accumulation x the stage's block size. Stages therefore switch exactly on a step boundary, within half
a step of their budget, and one learning-rate schedule spans them all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from ...config.sections import DatasetRef

WEIGHT_TOLERANCE = 1e-6


@dataclass
class SourceSection(DatasetRef):
    """One text source of `data.sources` (name -> source)."""

    text_column: str = "text"
    """The column that holds the documents."""


@dataclass
class StageSection:
    """One entry of `stages`, as a recipe writes it."""

    tokens: float | None = None
    """The stage's token budget (e.g. 6.0e12); it becomes a whole number of optimizer steps."""
    mixture: dict | None = None
    """Source name -> token share of the stage (the shares sum to 1), e.g. {web: 0.9, code: 0.1}."""
    name: str | None = None
    """Default: stage-N."""
    block_size: int | None = None
    """Tokens a sequence in this stage; default data.block_size (context extension: e.g. 8192)."""
    rope_theta: float | None = None
    """Set the RoPE base from this stage on (SmolLM2's context extension: 130,000 for 1.7B)."""
    max_position_embeddings: int | None = None
    """Saved in the model config from this stage on; defaults to the block size when that is larger."""


@dataclass
class Stage:
    name: str
    tokens: float
    mixture: dict[str, float]
    block_size: int
    rope_theta: float | None = None
    max_position_embeddings: int | None = None
    steps: int = 0


@dataclass
class Plan:
    stages: list[Stage]
    samples_per_step: int
    """Blocks per optimizer step over all processes."""
    starts: list[int]
    """First step of each stage, then the total."""

    @property
    def total_steps(self) -> int:
        return self.starts[-1]

    def stage_at(self, step: int) -> int:
        """The stage that optimizer step `step` (0-based: the step about to run) trains in."""
        for index in range(len(self.stages) - 1, -1, -1):
            if step >= self.starts[index]:
                return index
        return 0

    def tokens_per_step(self, stage: int) -> int:
        return self.samples_per_step * self.stages[stage].block_size


def _typed(where: str, raw, section, problems: list[str]):
    """`raw` (a mapping as written) as the dataclass `section`, every key type-checked with the recipe validator's
    own rules and did-you-mean; None when it is not a mapping."""
    from ...config.typecheck import field_types
    from ...config.validation import check_fields

    if not isinstance(raw, dict):
        return None
    types = field_types(section)
    checked = check_fields(where, raw, types, problems, [f"{where}.{key}" for key in types])
    return section(**checked)


def check_sources(sources) -> list[str]:
    if not isinstance(sources, dict) or not sources:
        return ["data.sources must name at least one source: name -> {dataset, text_column}"]
    problems = []
    for name, raw in sources.items():
        source = _typed(f"data.sources.{name}", raw, SourceSection, problems)
        if source is None:
            problems.append(f"data.sources.{name} must be a mapping with dataset and text_column")
        elif not source.dataset:
            problems.append(f"data.sources.{name} needs a dataset (hub id, file or directory)")
    return problems


def parse_stages(raw, sources: dict, block_size: int, problems: list[str]) -> list[Stage]:
    """Stages as written -> Stage objects, each typed as `StageSection`; every problem is appended to `problems`."""
    from ...config.validation import suggest

    if not isinstance(raw, list) or not raw:
        problems.append("stages must be a list of at least one stage: {name, tokens, mixture}")
        return []
    stages, names = [], set()
    for index, item in enumerate(raw):
        where = f"stages[{index}]"
        written = _typed(where, item, StageSection, problems)
        if written is None:
            problems.append(f"{where} must be a mapping with name, tokens and mixture")
            continue
        name = written.name or f"stage-{index + 1}"
        if name in names:
            problems.append(f"{where}.name={name!r} is used twice: give each stage its own name")
        names.add(name)
        if written.tokens is None or written.tokens <= 0:
            problems.append(f"{where}.tokens={item.get('tokens')!r} must be a positive number of tokens (e.g. 6.0e12)")
        mixture = written.mixture or {}
        if not mixture:
            problems.append(f"{where}.mixture must map source names to token shares, e.g. {{web: 0.9, code: 0.1}}")
        weights = {}
        for source, weight in mixture.items():
            if isinstance(sources, dict) and source not in sources:
                problems.append(f"{where}.mixture names '{source}', not in data.sources"
                                f"{suggest(source, list(sources or []))}: add it to data.sources or fix the name")
            value = _number(weight)
            if value is None or value <= 0:
                problems.append(f"{where}.mixture.{source}={weight!r} must be a share > 0")
            else:
                weights[source] = value
        if weights and len(weights) == len(mixture) and abs(sum(weights.values()) - 1.0) > WEIGHT_TOLERANCE:
            problems.append(f"{where}.mixture weights sum to {sum(weights.values()):.6g}, not 1: they are token "
                            f"shares; scale them to add up to 1")
        size = written.block_size if written.block_size is not None else block_size
        if size < 2:
            problems.append(f"{where}.block_size={size!r} must be a whole number of tokens >= 2")
            size = block_size
        if written.rope_theta is not None and written.rope_theta <= 0:
            problems.append(f"{where}.rope_theta={written.rope_theta!r} must be a positive number (e.g. 130000)")
        positions = written.max_position_embeddings
        if positions is not None and positions < size:
            problems.append(f"{where}.max_position_embeddings={positions!r} must be a whole number >= its block "
                            f"size {size}")
        stages.append(Stage(name=name, tokens=written.tokens or 0.0, mixture=weights, block_size=size,
                            rope_theta=written.rope_theta, max_position_embeddings=positions))
    return stages


def _number(value) -> float | None:
    """A float as the recipe loader reads one (`6.0e12`, `2048`, "1e9"); None when it is not a number."""
    from ...config.typecheck import _MISSING, coerce

    result = coerce(value, float)
    return None if result is _MISSING else result


def make_plan(stages: list[Stage], per_device: int, accumulation: int, processes: int,
              problems: list[str] | None = None) -> Plan:
    """Steps of each stage. A budget under one step is a problem (appended), or a UsageError without a list."""
    from ...errors import UsageError

    samples = max(1, per_device) * max(1, accumulation) * max(1, processes)
    collected = [] if problems is None else problems
    starts = [0]
    for index, stage in enumerate(stages):
        per_step = samples * stage.block_size
        if stage.tokens < per_step:
            collected.append(
                f"stages[{index}] ({stage.name}) has {stage.tokens:,.0f} tokens, under one step of {per_step:,} "
                f"({processes} process(es) x batch {per_device} x accumulation {accumulation} x block "
                f"{stage.block_size}): raise its tokens or lower the batch")
        stage.steps = max(1, round(stage.tokens / per_step))
        starts.append(starts[-1] + stage.steps)
    if problems is None and collected:
        raise UsageError("; ".join(collected))
    return Plan(stages=stages, samples_per_step=samples, starts=starts)


def world_size_hint() -> int:
    """Processes as a launcher announces them; 1 before `accelerate launch` has started them."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def schedule_steps(training: dict, total_steps: int) -> tuple[int, int | None]:
    """(warmup steps, decay steps) as whole steps. Like transformers' `warmup_steps`, a `num_decay_steps` below 1
    in `lr_scheduler_kwargs` is a share of all steps: SmolLM2 decays over the last 10% (20% for 135M/360M)."""
    warmup = training.get("warmup_steps", 0) or 0
    warmup = int(warmup) if warmup >= 1 else math.ceil(total_steps * warmup)  # as TrainingArguments does
    kwargs = training.get("lr_scheduler_kwargs") or {}
    decay = kwargs.get("num_decay_steps") if isinstance(kwargs, dict) else None
    if decay is None:
        return warmup, None
    decay = int(decay) if decay >= 1 else round(total_steps * decay)
    return warmup, decay


def check_schedule(training: dict, total_steps: int) -> list[str]:
    problems = []
    kind = str(training.get("lr_scheduler_type", "linear"))
    kwargs = training.get("lr_scheduler_kwargs") or {}
    if kind.endswith("warmup_stable_decay"):
        if not isinstance(kwargs, dict) or kwargs.get("num_decay_steps") is None:
            problems.append("training.lr_scheduler_kwargs.num_decay_steps is needed by warmup_stable_decay: steps, "
                            "or a share of all steps below 1 (SmolLM2: 0.1)")
            return problems
        decay = _number(kwargs["num_decay_steps"])
        if decay is None or decay <= 0:
            return [f"training.lr_scheduler_kwargs.num_decay_steps={kwargs['num_decay_steps']!r} must be > 0"]
        warmup, decay = schedule_steps(training, total_steps)
        if warmup + decay > total_steps:
            problems.append(f"warmup ({warmup} steps) and decay ({decay} steps) add up to more than the "
                            f"{total_steps} steps the stages make: shorten them or raise the stages' tokens")
    return problems
