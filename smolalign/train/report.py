"""End-of-run report: training-curve PNG, summary table and a model card, all in the output directory."""

from __future__ import annotations

import json
from pathlib import Path

from ..outputs import atomic_write_text
from .callbacks import METRICS_FILE

CURVES_FILE = "training_curves.png"


def read_metrics(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _series(records: list[dict], key: str) -> tuple[list, list]:
    points = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
    return [p[0] for p in points], [p[1] for p in points]


def plot_curves(output_dir: str | Path, panels: list[tuple[str, list[str]]]) -> Path | None:
    """One subplot per panel (title, metric keys); metrics absent from the log are skipped."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(output_dir)
    panels = [(title, [k for k in keys if _series(records, k)[0]]) for title, keys in panels]
    panels = [(title, keys) for title, keys in panels if keys]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for axis, (title, keys) in zip(axes[0], panels):
        for key in keys:
            steps, values = _series(records, key)
            axis.plot(steps, values, marker="o" if len(steps) < 30 else None, markersize=3, label=key)
        axis.set_title(title)
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    path = Path(output_dir) / CURVES_FILE
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def final_metrics(output_dir: str | Path, keys: list[str]) -> dict:
    """The last logged value of each key (train keys from train logs, eval_ keys from eval logs)."""
    records = read_metrics(output_dir)
    out = {}
    for key in keys:
        values = [r[key] for r in records if r.get(key) is not None]
        if values:
            out[key] = values[-1]
    return out


def print_summary(title: str, rows: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False)
    for key, value in rows.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, int):
            value = f"{value:,}"
        table.add_row(key, str(value))
    Console(stderr=True).print(table)


def write_model_card(output_dir: str | Path, *, command: str, base_model: str, datasets: list[str], recipe_path: str,
                     metrics: dict, notes: list[str] | None = None) -> None:
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                             for k, v in metrics.items()) or "| (none logged) | |"
    dataset_lines = "\n".join(f"- {d}" for d in datasets)
    extra = "\n".join(f"- {n}" for n in (notes or []))
    card = f"""---
library_name: transformers
base_model: {base_model}
tags: [smolalign, {command}, trl]
---

# {Path(output_dir).name}

Trained with `smolalign {command}` (TRL) from **{base_model}**.

## Data
{dataset_lines}

## Recipe
`{recipe_path}`; the resolved recipe is in `recipe.yaml`, package versions and data fingerprints in
`smolalign_run.json`.

## Final metrics
| metric | value |
|---|---|
{metric_lines}

![training curves]({CURVES_FILE})

## Use
```python
from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("{Path(output_dir).name}")
model = AutoModelForCausalLM.from_pretrained("{Path(output_dir).name}")
messages = [{{"role": "user", "content": "Hello!"}}]
inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
print(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))
```
{extra}
"""
    atomic_write_text(Path(output_dir) / "README.md", card)
