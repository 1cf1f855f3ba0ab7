"""Near-duplicate removal, run on the rows the filters kept (so a good row never goes for resembling a dropped one),
in plan order: the earlier row stays.

- Embeddings (MagPie-Ultra's way): the first user turn's normalised embedding, committed by its pass, searched with
  distilabel's FaissNearestNeighbour (inner product = cosine). A row goes when one of its k nearest neighbours is an
  earlier kept row with cosine above `near_dedup.threshold`. Not distilabel's EmbeddingDedup: it marks *every*
  neighbour over the threshold, so both rows of a duplicate pair go. And FaissNearestNeighbour drops the first hit
  of each search as "itself", which for two identical vectors may be the other one: the neighbour lists are made
  symmetric, so a pair found from either side counts.
- MinHash (for the text subsets): distilabel's MinHashDedup over the last assistant turn's character n-grams
  (datasketch's MinHashLSH). Its word tokenizer needs nltk's punkt data downloaded, so n-grams are used. A text
  shorter than n characters has no n-gram; it is left to exact deduplication.

Both compute in seconds and ask no model, so they run at every tally and a --refilter can move their thresholds.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path


@contextlib.contextmanager
def _standalone_steps():
    """distilabel steps used as plain components (their own docs do so): no pipeline warning, no progress bars."""
    import datasets

    logger = logging.getLogger("distilabel")
    level, progress = logger.level, datasets.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        logger.setLevel(level)
        if progress:
            datasets.enable_progress_bars()


def near_duplicates(vectors: list, threshold: float, k: int, artifacts: Path | None = None) -> list[bool]:
    """One flag per vector: True when it nearly repeats an earlier kept one."""
    if len(vectors) < 2:
        return [False] * len(vectors)
    import faiss
    from distilabel.steps import FaissNearestNeighbour

    with _standalone_steps():
        step = FaissNearestNeighbour(name="near_dedup", k=min(k, len(vectors) - 1),
                                     metric_type=faiss.METRIC_INNER_PRODUCT)
        if artifacts is not None:
            step.set_pipeline_artifacts_path(artifacts)
        step.load()
        rows = next(step.process([{"embedding": [float(x) for x in v]} for v in vectors]))
    close: dict[int, set[int]] = {i: set() for i in range(len(vectors))}
    for i, row in enumerate(rows):
        for j, score in zip(row["nn_indices"], row["nn_scores"]):
            if 0 <= j != i and score > threshold:
                close[i].add(j)
                close[j].add(i)
    dropped = [False] * len(vectors)
    for i in range(len(vectors)):
        dropped[i] = any(j < i and not dropped[j] for j in close[i])
    return dropped


def minhash_duplicates(texts: list[str], threshold: float, num_perm: int, ngram: int) -> list[bool]:
    """One flag per text: True when MinHash finds it a near-duplicate of an earlier text."""
    from distilabel.steps import MinHashDedup

    indexed = [(i, t) for i, t in enumerate(texts) if len(t) >= ngram]
    dropped = [False] * len(texts)
    if len(indexed) < 2:
        return dropped
    with _standalone_steps():
        step = MinHashDedup(name="minhash", tokenizer="ngrams", n=ngram, threshold=threshold, num_perm=num_perm,
                            storage="dict")
        step.load()
        rows = next(step.process([{"text": t} for _, t in indexed]))
    for (i, _), row in zip(indexed, rows):
        dropped[i] = not row["keep_row_after_minhash_filtering"]
    return dropped
