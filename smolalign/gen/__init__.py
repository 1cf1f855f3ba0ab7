"""`smolalign gen`: the SmolTalk subsets (magpie-ultra, smol-constraints, smol-rewrite, smol-summarization) and
UltraFeedback preference pairs (ultrafeedback), one module each under subsets/, made with distilabel pipelines on
any backend, with a resume the project owns (see shards.py), then SmolTalk's quality passes (quality/: labels,
safety, reward, near-duplicates, filters; `--refilter` tallies again without any model).

Imports config, data, model and leaves, never another command. Only light modules are imported here;
distilabel, transformers and torch load when a run starts.
"""

from __future__ import annotations

from .run import run_gen
from .spec import list_subsets

__all__ = ["list_subsets", "run_gen"]
