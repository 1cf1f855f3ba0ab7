"""Weighted mixtures and deterministic train/eval splits.

A weight is a *share of the mixed dataset*: weights 3 and 1 give 75% / 25% of the rows. With no
`num_samples`, the mixture is the largest one that keeps those shares without repeating any row; with
`num_samples`, a source too small for its share is repeated (whole passes, then a seeded remainder).
"""

from __future__ import annotations


def mixture_counts(sizes: list[int], weights: list[float], num_samples: int | None) -> list[int]:
    shares = [w / sum(weights) for w in weights]
    total = num_samples if num_samples is not None else int(min(n / s for n, s in zip(sizes, shares)))
    counts = [int(total * s) for s in shares]
    # hand the rounding remainder to the largest shares, so the counts add up to `total` exactly
    for index in sorted(range(len(shares)), key=lambda i: -shares[i])[: total - sum(counts)]:
        counts[index] += 1
    return counts


def take_rows(dataset, count: int, seed: int):
    """`count` rows of `dataset`, shuffled by `seed`; whole repeats when it has fewer rows than asked."""
    from datasets import concatenate_datasets

    passes, remainder = divmod(count, len(dataset))
    parts = [dataset.shuffle(seed=seed + p) for p in range(passes)]
    if remainder:
        parts.append(dataset.shuffle(seed=seed + passes).select(range(remainder)))
    return parts[0] if len(parts) == 1 else concatenate_datasets(parts)


def mix(datasets: list, weights: list[float], num_samples: int | None, seed: int):
    from datasets import concatenate_datasets

    counts = mixture_counts([len(d) for d in datasets], weights, num_samples)
    parts = [take_rows(d, c, seed + i) for i, (d, c) in enumerate(zip(datasets, counts)) if c > 0]
    return concatenate_datasets(parts).shuffle(seed=seed), counts


def split_eval(dataset, eval_fraction: float, seed: int):
    """Hold out `eval_fraction` of the rows; the same seed always holds out the same rows."""
    if eval_fraction <= 0:
        return dataset, None
    parts = dataset.train_test_split(test_size=eval_fraction, seed=seed, shuffle=True)
    return parts["train"], parts["test"]
