"""How long a run is: its phases (pretraining's stages, or SFT/DPO epochs over the data), in tokens and steps, as
each command's `size` (in its own file) counts them for `smolalign plan`.

Pretraining counts in tokens: its stages, the same stage plan the run uses. SFT and DPO count in rows: the data is
read through the data layer the commands use, and the tokens a row are measured by templating a sample of rows with
the model's tokenizer (each capped at `max_length`). Steps follow transformers' Trainer: batches of per-device batch
x processes, an optimizer step every `gradient_accumulation_steps` of them, `num_train_epochs` (or `max_steps`).
Where the data cannot be read here (the hub does not answer), `--rows` and `--tokens-per-row` give it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SAMPLE = 256  # rows templated to measure tokens a row


@dataclass
class Phase:
    name: str
    tokens: float
    """Tokens the phase trains on (all its epochs)."""
    steps: int
    sequence: int
    """Tokens a row: the attention length of the MFU convention."""
    tokens_per_step: float


@dataclass
class Size:
    phases: list[Phase] = field(default_factory=list)
    epochs: float | None = None
    rows: int | None = None
    tokens_per_row: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def known(self) -> bool:
        return bool(self.phases)

    @property
    def steps(self) -> int:
        return sum(p.steps for p in self.phases)

    @property
    def tokens(self) -> float:
        return sum(p.tokens for p in self.phases)


def cut_at(phases: list[Phase], max_steps: int) -> list[Phase]:
    """`max_steps` stops a run early: phases past it go, the one it falls in is shortened."""
    out, left = [], max_steps
    for phase in phases:
        if left <= 0:
            break
        steps = min(phase.steps, left)
        out.append(Phase(phase.name, phase.tokens * steps / phase.steps, steps, phase.sequence, phase.tokens_per_step))
        left -= steps
    return out


def row_tokens(dataset, tokenizer, conversations_of, max_length: int) -> float:
    """Mean templated tokens a row over an evenly spaced sample; `conversations_of(row)` gives what a row trains
    on (one conversation for SFT; chosen and rejected for DPO)."""
    step = max(1, len(dataset) // SAMPLE)
    lengths = []
    for index in range(0, len(dataset), step)[:SAMPLE]:
        conversations = conversations_of(dataset[index])
        lengths.append(sum(min(max_length, len(tokenizer.apply_chat_template(c, tokenize=True, return_dict=True)
                                                ["input_ids"])) for c in conversations))
    return sum(lengths) / len(lengths)


def epoch_phases(packed: bool, rows: int, tokens_per_row: float, max_length: int, per_device: int,
                 accumulation: int, processes: int, epochs: float, max_steps: int) -> tuple[list[Phase], float]:
    """The run as one phase of whole epochs, and the epochs it trains (fewer when max_steps stops it). `packed`:
    rows are BFD-packed to `max_length` tokens each (they fill nearly full)."""
    tokens = rows * tokens_per_row
    batch_rows = max(1, math.ceil(tokens / max_length)) if packed else rows
    batches = math.ceil(batch_rows / (per_device * processes))
    per_epoch = max(batches // accumulation + int(batches % accumulation > 0), 1)  # as the Trainer counts
    steps = max_steps if max_steps > 0 else math.ceil(epochs * per_epoch)
    trained = steps / per_epoch
    per_step = tokens / per_epoch
    return [Phase(f"{trained:g} epoch(s)", trained * tokens, steps, max_length, per_step)], trained


def data_size(recipe, args, processes: int, tokenizer, rows: int | None, tokens_per_row: float | None, task: str,
              conversations_of, packed: bool) -> Size:
    """SFT and DPO: rows from the data layer (`task` chat or preference), tokens a row from the tokenizer (or both
    given), then whole epochs."""
    from ..data import load_data
    from ..errors import UsageError
    from ..hub import offline

    size = Size()
    max_length = args.max_length or 1024
    if rows is None:
        names = [m["dataset"] for m in recipe.data.mixture] if recipe.data.mixture else [recipe.data.dataset]
        try:
            dataset = load_data(recipe.data, task=task).train
        except UsageError:
            if not any(offline(name) for name in names):
                raise
            size.notes.append(f"data {', '.join(names)} not readable here (the hub does not answer): give --rows "
                              f"and --tokens-per-row for steps and time")
            return size
        rows = len(dataset)
        if tokens_per_row is None and tokenizer is not None:
            tokens_per_row = row_tokens(dataset, tokenizer, conversations_of, max_length)
    size.rows, size.tokens_per_row = rows, tokens_per_row
    if tokens_per_row is None:
        size.notes.append("tokens a row unknown (no tokenizer here): give --tokens-per-row")
        return size
    size.phases, size.epochs = epoch_phases(packed, rows, tokens_per_row, max_length, args.per_device_train_batch_size,
                                            args.gradient_accumulation_steps, processes, args.num_train_epochs,
                                            args.max_steps)
    return size
