"""IFEval's four accuracies from responses: prompt-level and instruction-level, strict and loose.

The verdicts come from the project's IFEval-exact checkers (`gen/constraints`, which agree with Google's and
lm-eval's on every unit case). Strict checks the response as given. Loose, as IFEval defines it, also accepts an
instruction when any of eight variants of the response follows it: the response with its first line, its last
line or both removed, each with and without markdown asterisks; a variant that is empty or only space follows
nothing. Loose is therefore never below strict.

A prompt counts at prompt level when every one of its instructions is followed; instruction level counts each
instruction on its own. The card figure of SmolLM2 (e.g. 29.9 for SmolLM2-135M-Instruct) is the average of the
prompt-level and instruction-level accuracies.
"""

from __future__ import annotations

from collections import defaultdict

from ...gen.constraints import check_response


def loose_variants(response: str) -> list[str]:
    """IFEval's eight loose variants of a response (its `test_instruction_following_loose`)."""
    lines = response.split("\n")
    without_first = "\n".join(lines[1:]).strip()
    without_last = "\n".join(lines[:-1]).strip()
    without_both = "\n".join(lines[1:-1]).strip()
    variants = [response, without_first, without_last, without_both]
    return variants + [v.replace("*", "") for v in variants]


def score_response(row: dict, response: str) -> dict:
    """One verdict per instruction of the row, strict and loose."""
    ids, kwargs = row["instruction_id_list"], row["kwargs"]
    strict = check_response(response, ids, kwargs, row["prompt"])
    loose = [False] * len(ids)
    for variant in loose_variants(response):
        if variant.strip():
            loose = [a or b for a, b in zip(loose, check_response(variant, ids, kwargs, row["prompt"]))]
    return {"strict": strict, "loose": loose}


def family(instruction_id: str) -> str:
    """IFEval's instruction family: the id before its colon (keywords, length_constraints, ...)."""
    return instruction_id.split(":", 1)[0]


def accuracies(rows: list[dict], verdicts: list[dict]) -> dict:
    """The four accuracies and their averages, over rows and their verdicts (same order)."""
    out = {}
    for reading in ("strict", "loose"):
        flat = [v for verdict in verdicts for v in verdict[reading]]
        out[f"prompt_level_{reading}_acc"] = sum(all(v[reading]) for v in verdicts) / len(verdicts)
        out[f"inst_level_{reading}_acc"] = sum(flat) / len(flat)
    for reading in ("strict", "loose"):
        out[f"average_{reading}"] = (out[f"prompt_level_{reading}_acc"] + out[f"inst_level_{reading}_acc"]) / 2
    return out


def by_family(rows: list[dict], verdicts: list[dict]) -> dict:
    """Instruction-level accuracy, strict and loose, for each instruction family."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: {"instructions": 0, "strict": 0, "loose": 0})
    for row, verdict in zip(rows, verdicts):
        for index, instruction_id in enumerate(row["instruction_id_list"]):
            entry = counts[family(instruction_id)]
            entry["instructions"] += 1
            entry["strict"] += verdict["strict"][index]
            entry["loose"] += verdict["loose"][index]
    return {name: {"instructions": c["instructions"], "strict_acc": c["strict"] / c["instructions"],
                   "loose_acc": c["loose"] / c["instructions"]} for name, c in sorted(counts.items())}
