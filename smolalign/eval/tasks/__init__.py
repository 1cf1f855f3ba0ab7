"""Built-in tasks: benchmarks smolalign answers and scores itself, one file each (today IFEval, ifeval.py).

A task module gives:
- `NAME`, its `--tasks` name;
- `GENERATION`, its generation settings (`max_new_tokens`, decoding, chat template, system prompt, stop), which
  `--max-new-tokens` may override and which go, with the model's dtype and device, into eval.json and the table;
- `load_prompts(limit)`, its rows, each with a unique `key`, `messages(row)`, the turns sent for a row, and
  `prompts_digest()`, which identifies the prompts (another file is another evaluation);
- `score(rows, responses)`, `{"figures": {metric: value}, "details": {...}}` from `{key: {"response",
  "truncated"}}`;
- `tables(result, model)`, rich tables of a result.

`answers.py` asks the prompts (resumably, a model in this process or a server) and `run.py` only looks a task up
here by name. Every other task name goes to lm-eval (harness.py). Imports gen/constraints' IFEval checkers
(ifeval_score.py), the prompts shipped in eval/data, and lm-eval only in its second scorer (ifeval_lm_eval.py).
"""

from __future__ import annotations

import importlib

BUILTIN = {"ifeval": "smolalign.eval.tasks.ifeval"}


def builtin(name: str):
    """The task module of a built-in task name."""
    return importlib.import_module(BUILTIN[name])
