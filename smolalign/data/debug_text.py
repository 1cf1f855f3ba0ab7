"""The shipped debug pretraining text: two small sources the `tiny` preset can learn in a minute on a CPU.

`prose` (column `text`) stands in for web text: short stories from a small grammar over the task set's words.
`arith` (column `content`, as code sources name it) stands in for math: lines of two-number sums and
differences. The two never share a character class (letters vs digits), so a test can tell from a block
alone which source it came from. Regenerate with `python -m smolalign.data.debug_text`.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from .debug_tasks import WORDS

ADJECTIVES = "red big old small cold warm dark tall quiet happy".split()
VERBS = "saw found left liked passed watched".split()
MOTIONS = "ran walked sat slept waited stood".split()
PLACES = "by the lake|on the hill|near the road|under the tree|in the rain|at the ship|in the snow".split("|")
PROSE_DOCS, ARITH_DOCS, SEED = 1500, 2500, 7


def sentence(rng: random.Random) -> str:
    noun, other = rng.sample(WORDS, 2)
    kind = rng.randrange(3)
    if kind == 0:
        return f"The {rng.choice(ADJECTIVES)} {noun} {rng.choice(MOTIONS)} {rng.choice(PLACES)}."
    if kind == 1:
        return f"A {noun} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {other}."
    return f"The {noun} and the {other} {rng.choice(MOTIONS)} {rng.choice(PLACES)}."


def prose_rows(rng: random.Random) -> list[dict]:
    return [{"text": " ".join(sentence(rng) for _ in range(rng.randint(3, 9)))} for _ in range(PROSE_DOCS)]


def arith_line(rng: random.Random) -> str:
    a, b = rng.randint(0, 49), rng.randint(0, 49)
    if rng.random() < 0.5:
        return f"{a} + {b} = {a + b}"
    a, b = max(a, b), min(a, b)
    return f"{a} - {b} = {a - b}"


def arith_rows(rng: random.Random) -> list[dict]:
    return [{"content": "\n".join(arith_line(rng) for _ in range(rng.randint(4, 12)))} for _ in range(ARITH_DOCS)]


def write_debug_text(root: str | Path) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    for name, rows in (("prose", prose_rows(rng)), ("arith", arith_rows(rng))):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    write_debug_text(sys.argv[1] if len(sys.argv) > 1 else "recipes/debug/data/pretrain")
