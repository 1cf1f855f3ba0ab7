"""Keep a run's terminal output to what a user should read: progress, reports and real warnings.

The libraries under smolalign print the same noise on every run, and some of it on every save:

- a `datasets` progress bar for every map step (TRL alone runs three per split; the data report follows anyway);
- transformers' "Writing model shards" bar at every checkpoint, for a model of one shard, and its "Loading weights"
  bar at every load (seconds for the models smolalign trains; it showed before one-line errors too);
- torch's "'pin_memory' ... no accelerator" warning on CPU (pinning is a GPU transfer optimisation);
- "Caching is incompatible with gradient checkpointing ... Setting `use_cache=False`" (a training run has no
  cache to keep);
- on resume, "missing keys in the checkpoint model loaded: ['lm_head.weight']": the Trainer does not save a tied
  head, so it is absent from every checkpoint of a model with tied embeddings (all SmolLM2 models).

`quiet_output()` silences exactly these, by message, and nothing else: other warnings, other missing keys and
every other progress bar still show. The CLI calls it once at the start of a run command. On a large dataset
the `datasets` bars are the only sign of life while TRL tokenizes and packs for minutes, so
`show_data_progress` brings them back there.
"""

from __future__ import annotations

import logging
import re
import warnings

HIDDEN_BARS = {"Writing model shards", "Loading weights"}
_PIN_MEMORY = r"'pin_memory' argument is set as true but no accelerator is found"
_NOISE = re.compile("|".join([
    r"^There were missing keys in the checkpoint model loaded: \['lm_head\.weight'\]\.?$",
    r"^`use_cache=True` is incompatible with gradient checkpointing\. Setting `use_cache=False`\.?$",
    r"^Caching is incompatible with gradient checkpointing in \w+\. Setting `use_cache=False`\.?$",
]))
# The modules that log the messages above (transformers names its loggers after its modules).
_LOGGERS = ("transformers.trainer", "transformers.utils.generic", "transformers.modeling_layers")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _NOISE.match(record.getMessage())


_DROP_NOISE = _DropNoise()


def _hide_known_bars(factory, args, kwargs):
    if kwargs.get("desc") in HIDDEN_BARS:
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


def quiet_output() -> None:
    """Silence the known per-step noise of datasets, transformers and torch; safe to call more than once."""
    import datasets
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings("ignore", message=_PIN_MEMORY, category=UserWarning)
    datasets.disable_progress_bars()
    hf_logging.set_tqdm_hook(_hide_known_bars)
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _DROP_NOISE not in logger.filters:
            logger.addFilter(_DROP_NOISE)


# Rows from which the preparation of a training set takes long enough (tens of seconds and up) to want bars.
LONG_PREPARATION_ROWS = 50_000


def show_data_progress(rows: int) -> None:
    """Show the `datasets` bars again for a set of `rows` that takes long to prepare."""
    import datasets

    if rows >= LONG_PREPARATION_ROWS:
        datasets.enable_progress_bars()
