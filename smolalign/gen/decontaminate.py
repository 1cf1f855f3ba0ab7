"""Word n-gram decontamination: drop generated rows that share a long n-gram with an evaluation set.

SmolTalk's Smol-Constraints removed rows sharing a 10-gram with IFEval, so a model trained on them is not
shown the benchmark's own prompts. Both sides are normalised the same way (Unicode NFKC, lower case, every run
of non-word characters one space) so punctuation and case cannot hide a copy. The evaluation side becomes a set
of hashed n-grams: memory grows with the eval set, not with the generated data, and each row costs one set
lookup per n-gram. A text shorter than n words has no n-gram and so never matches; keep n small enough for the
eval set's prompts (IFEval's are far longer than 10 words).
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import UsageError

_NON_WORD = re.compile(r"[\W_]+")
TEXT_COLUMNS = ("prompt", "text")


def normalise_words(text: str) -> list[str]:
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).lower()).split()


def _ngram_hashes(text: str, n: int):
    words = normalise_words(text)
    # hash() of a str is stable within one process, which is all a set built and probed in one call needs
    return (hash(" ".join(words[i:i + n])) for i in range(len(words) - n + 1))


def ngram_decontaminate(texts: list[str], against: list[str], n: int = 10) -> list[bool]:
    """One flag per text: True keeps it (no word n-gram in common with any text of `against`)."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    seen = set()
    for text in against:
        seen.update(_ngram_hashes(text, n))
    return [seen.isdisjoint(_ngram_hashes(text, n)) for text in texts]


def load_against(path_or_id: str, split: str = "train", column: str | None = None) -> list[str]:
    """The texts of an evaluation set read through the data layer (hub id, local file or directory): the
    given column, else `prompt`, else `text`, else the first string column."""
    import datasets

    from ..data.loading import load_split

    dataset = load_split(path_or_id, split=split)
    strings = [name for name, feature in dataset.features.items()
               if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string")]
    if column is not None:
        if column not in strings:
            raise UsageError(f"decontamination set '{path_or_id}' has no text column '{column}' "
                             f"(text columns: {', '.join(strings) or 'none'}): name one of them")
        chosen = column
    else:
        chosen = next((c for c in TEXT_COLUMNS if c in strings), strings[0] if strings else None)
    if chosen is None:
        raise UsageError(f"decontamination set '{path_or_id}' has no text column (columns: "
                         f"{', '.join(dataset.column_names)}): give a set with a 'prompt' or 'text' column")
    return [text for text in dataset[chosen] if text]
