"""A small deterministic task set the project makes itself, for debug recipes, tests and demos.

Five word and number tasks phrased as chat turns. Each has one exact answer, so exact match on held-out
prompts shows plainly whether SFT learned (and whether masks and template were right), and each has an
obvious wrong answer, which makes the preference pairs for DPO. Regenerate the shipped files with
`python -m smolalign.data.debug_tasks recipes/debug/data`.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

WORDS = (
    "cat dog sun moon tree bird fish star rain snow wind fire lake hill road ship book milk rice corn "
    "apple pear plum lime gold iron salt sand rock leaf"
).split()

SPLIT_SIZES = {"train": 4000, "test": 200}
PREFERENCE_TRAIN_ROWS = 2000  # DPO needs fewer pairs; keeps the shipped files small
SEED = 1234


def _words(rng: random.Random, n: int) -> list[str]:
    return rng.sample(WORDS, n)


def make_task(rng: random.Random) -> tuple[str, str, str]:
    """(question, right answer, wrong answer). The wrong one is the lazy answer a half-trained model likes to
    give: the input words echoed back unchanged."""
    kind = rng.choice(("reverse", "sort", "repeat", "upper", "count"))
    if kind == "reverse":
        words = _words(rng, rng.randint(3, 4))
        return f"Reverse the words: {' '.join(words)}", " ".join(reversed(words)), " ".join(words)
    if kind == "sort":
        words = _words(rng, rng.randint(3, 4))
        right = sorted(words)
        wrong = words if words != right else right[::-1]
        return f"Sort the words: {' '.join(words)}", " ".join(right), " ".join(wrong)
    if kind == "repeat":
        word, times = rng.choice(WORDS), rng.randint(2, 5)
        return f"Repeat the word {word} {times} times.", " ".join([word] * times), word
    if kind == "upper":
        words = _words(rng, rng.randint(2, 3))
        return f"Write in capitals: {' '.join(words)}", " ".join(words).upper(), " ".join(words)
    words = _words(rng, rng.randint(2, 6))
    return f"How many words: {' '.join(words)}", str(len(words)), " ".join(words)


def make_split_rows(split: str) -> list[tuple[str, str, str]]:
    """Rows for a split; held-out questions never appear in train (the test split is drawn first)."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    splits: dict[str, list] = {}
    for name in ("test", "train"):
        rows = []
        while len(rows) < SPLIT_SIZES[name]:
            question, right, wrong = make_task(rng)
            if name == "test" and question in seen:
                continue
            if name == "train" and question in {q for q, _, _ in splits["test"]}:
                continue
            seen.add(question)
            rows.append((question, right, wrong))
        splits[name] = rows
    return splits[split]


def chat_rows(split: str) -> list[dict]:
    return [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a, _ in make_split_rows(split)]


def preference_rows(split: str) -> list[dict]:
    """UltraFeedback-binarized layout: the prompt turn is repeated inside chosen and rejected."""
    rows = []
    for index, (q, right, wrong) in enumerate(make_split_rows(split)):
        user = {"role": "user", "content": q}
        rows.append({"prompt": q, "prompt_id": f"{split}-{index}",
                     "chosen": [user, {"role": "assistant", "content": right}],
                     "rejected": [user, {"role": "assistant", "content": wrong}],
                     "score_chosen": 10.0, "score_rejected": 1.0})
    return rows


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_task_set(root: str | Path) -> None:
    root = Path(root)
    for split in SPLIT_SIZES:
        _write_jsonl(root / "tasks-sft" / f"{split}.jsonl", chat_rows(split))
        pairs = preference_rows(split)
        _write_jsonl(root / "tasks-dpo" / f"{split}.jsonl", pairs[:PREFERENCE_TRAIN_ROWS] if split == "train" else pairs)
    # the tokenizer corpus: the conversations as the chat template renders them, so the template and the
    # default system prompt become a handful of tokens
    from ..model.chat_template import DEFAULT_SYSTEM_PROMPT

    lines = [f"system\n{DEFAULT_SYSTEM_PROMPT}\nuser\n{row['messages'][0]['content']}\nassistant\n"
             f"{row['messages'][1]['content']}" for row in chat_rows("train")[:1000]]
    (root / "tasks-corpus.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_task_set(sys.argv[1] if len(sys.argv) > 1 else "recipes/debug/data")
