"""`smolalign eval MODEL --tasks ifeval`: IFEval offline, measured the way SmolLM2's model card measured it.

lm-eval's `ifeval` task downloads its prompts from the hub, so it fails on a machine without a network. The 541
prompts are small (200 KB, Apache-2.0, see ../data/README.md), so smolalign ships them, generates the answers
itself and scores them with the project's IFEval-exact checkers (ifeval_score.py).

The card's figures (SmolLM2-135M-Instruct 29.9, 360M 41.0, 1.7B 56.7) come from lighteval: the `smollm`
repository's evaluation README runs task `extended|ifeval|0|0`, zero-shot on all 541 prompts, with
`generation_size=1280`, no stop sequence but the end-of-turn token, the model's chat template with its default
system turn and no extra system prompt, greedy (one sample at temperature 0 on vLLM), bf16 weights; lighteval's
checkers are lm-eval's, and its "average prompt/inst" is the mean of prompt-level and instruction-level accuracy.
Which of strict or loose the card reports is not published, so both are given. Those are the defaults here,
except the weights: bf16 where the machine supports it, fp32 on CPU (load_model's placement).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources

from . import ifeval_score

NAME = "ifeval"
PROMPTS_FILE = "data/ifeval_input_data.jsonl"
# lighteval's IFEval task as the SmolLM2 card ran it (the module docstring gives the source of each)
GENERATION = {"max_new_tokens": 1280, "decoding": "greedy", "chat_template": "the model's own, its default system "
              "prompt included", "system_prompt": None, "stop": "the end-of-turn token", "num_fewshot": 0}
# the card's "IFEval (average prompt/inst)" per model size, from bf16 weights through lighteval
CARD = {"135M": 29.9, "360M": 41.0, "1.7B": 56.7}
CARD_PARAMETERS = {"135M": 134.5e6, "360M": 361.8e6, "1.7B": 1711.4e6}


def load_prompts(limit: int | None = None) -> list[dict]:
    """The shipped IFEval rows in file order (the first `limit` of them)."""
    text = resources.files("smolalign.eval").joinpath(PROMPTS_FILE).read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows[:limit] if limit is not None else rows


def prompts_digest() -> str:
    return hashlib.sha256(resources.files("smolalign.eval").joinpath(PROMPTS_FILE).read_bytes()).hexdigest()


def messages(row: dict) -> list[dict]:
    """One user turn, nothing else: the chat template adds the model's default system prompt."""
    return [{"role": "user", "content": row["prompt"]}]


def card_size(parameters: int | None, name: str) -> str | None:
    """The SmolLM2 size a model is, from its parameter count (within 5%) or, for a served model, its name."""
    for size, count in CARD_PARAMETERS.items():
        if parameters and abs(parameters - count) <= 0.05 * count:
            return size
    if not parameters:
        lowered = name.lower()
        return next((size for size in CARD if f"-{size.lower()}" in lowered), None)
    return None


def score(rows: list[dict], done: dict[int, dict]) -> dict:
    """The figures for `tasks` in eval.json, and the details (families, truncations, every response)."""
    verdicts = [ifeval_score.score_response(row, done[row["key"]]["response"]) for row in rows]
    figures = ifeval_score.accuracies(rows, verdicts)
    responses = [{"key": row["key"], "prompt": row["prompt"], "instruction_id_list": row["instruction_id_list"],
                  "response": done[row["key"]]["response"], "truncated": done[row["key"]]["truncated"],
                  "strict": verdict["strict"], "loose": verdict["loose"]} for row, verdict in zip(rows, verdicts)]
    details = {"prompts": len(rows), "instructions": sum(len(r["instruction_id_list"]) for r in rows),
               "truncated": sum(entry["truncated"] for entry in responses),
               "families": ifeval_score.by_family(rows, verdicts), "responses": responses}
    return {"figures": figures, "details": details}


def _settings_line(settings: dict) -> str:
    weights = settings.get("dtype", "the server's")
    where = f" on {settings['device']}" if settings.get("device") else ""
    return (f"{settings['decoding']}, at most {settings['max_new_tokens']} new tokens, stopped at "
            f"{settings['stop']}; chat template: {settings['chat_template']}; zero-shot; {weights} weights{where}; "
            f"backend {settings['backend']}")


def tables(result: dict, model: str):
    """Rich tables: the four accuracies and both averages (in percent, as model cards give them) beside the
    card's figure for the model's size, every setting under them; then the families."""
    from rich.table import Table

    figures, details = result["figures"], result["details"]
    settings = details["settings"]
    size = card_size(settings.get("parameters"), model)
    head = Table(title=f"IFEval: {model} ({details['prompts']} prompts, {details['instructions']} instructions, "
                       f"{details['truncated']} answers cut at {settings['max_new_tokens']} tokens)",
                 caption=f"settings: {_settings_line(settings)}")
    columns = ("", "strict", "loose") + ((f"SmolLM2-{size}-Instruct card",) if size else ())
    for column in columns:
        head.add_column(column, justify="left" if not column else "right")
    for level in ("prompt_level", "inst_level"):
        head.add_row(level.replace("_", " ").replace("inst", "instruction"),
                     *(f"{100 * figures[f'{level}_{r}_acc']:.1f}" for r in ("strict", "loose")),
                     *([""] if size else []))
    head.add_row("average prompt/instruction (the card's measure)",
                 *(f"{100 * figures[f'average_{r}']:.1f}" for r in ("strict", "loose")),
                 *([f"{CARD[size]:.1f} (bf16, lighteval, strict or loose unpublished)"] if size else []))
    families = Table(title="IFEval by instruction family (instruction level)")
    for column in ("family", "instructions", "strict", "loose"):
        families.add_column(column, justify="left" if column == "family" else "right")
    for name, entry in details["families"].items():
        families.add_row(name, str(entry["instructions"]), f"{100 * entry['strict_acc']:.1f}",
                         f"{100 * entry['loose_acc']:.1f}")
    return head, families
