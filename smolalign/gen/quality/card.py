"""The counts table of the dataset card and the final summary, and the label distributions: as tables in the card
and as DIR/labels.png (one bar chart per label, "unlabelled" included, and the reward histogram)."""

from __future__ import annotations

from pathlib import Path

FIGURE = "labels.png"


def count_lines(counts: dict) -> list[tuple[str, int]]:
    """(what, rows) in the order a reader follows a row: asked, answered, labelled, dropped by reason, kept."""
    lines = [("requested", counts["requested"]), ("generated", counts["generated"]),
             ("failed (see failed.jsonl)", counts["failed"]), ("rows in", counts.get("rows_in", 0)),
             ("truncated (a turn cut at max_new_tokens)", counts.get("truncated", 0))]
    if "labelled" in counts:
        lines.append(("labelled (every label parsed)", counts["labelled"]))
    lines += [(f"dropped: {reason}", n) for reason, n in sorted(counts["filtered"].items())]
    lines += [("dropped: exact duplicate", counts["duplicates"]), ("kept", counts["kept"])]
    return lines


def empty_reason(counts: dict) -> str:
    """Why no row was kept, from the counts: nothing to train on (the dropped rows are in rejected/)."""
    parts = [f"{counts['failed']} failed"] if counts["failed"] else []
    parts += [f"{n} {reason}" for reason, n in sorted(counts["filtered"].items())]
    parts += [f"{counts['duplicates']} exact duplicates"] if counts["duplicates"] else []
    return (f"0 of {counts['requested']} requested rows kept ({', '.join(parts) or 'none generated'}); see the card's "
            f"counts, and `--refilter` to try other thresholds")


def count_rows(counts: dict) -> str:
    return "".join(f"| {what} | {n} |\n" for what, n in count_lines(counts))


def quality_section(recipe, counts: dict, has_rejected: bool) -> str:
    """The card's part on labels and filters (empty when the spec has no quality pass)."""
    labels = counts.get("labels")
    parts = []
    if labels:
        parts.append("## Labels\n\nOver the rows that came in, before any filter (`unlabelled`: the answer did not "
                     f"parse or validate, never guessed). As a figure: `{FIGURE}`.\n\n")
        for name, values in labels.items():
            if name == "reward":
                mean = "n/a" if values["mean"] is None else f"{values['mean']:.4g}"
                low = "n/a" if values["min"] is None else f"{values['min']:.4g}"
                high = "n/a" if values["max"] is None else f"{values['max']:.4g}"
                parts.append(f"- reward score ({recipe.sections['reward'].model}): {values['scored']} scored, "
                             f"{values['missing']} missing; mean {mean}, min {low}, max {high}\n")
                continue
            cells = ", ".join(f"{value} {n}" for value, n in values.items())
            parts.append(f"- {name}: {cells}\n")
        parts.append("\n")
    if "instruction_ids" in counts:
        cells = ", ".join(f"{iid} {n}" for iid, n in sorted(counts["instruction_ids"].items())) or "none"
        parts.append(f"## Labels\n\nThe instructions the kept rows were labelled with and pass strictly: {cells}.\n\n")
    filters = {k: v for k, v in vars(recipe.sections["filters"]).items() if v not in (None, False)}
    filters.pop("keep_rejected", None)
    if filters or has_rejected:
        where = ("the dropped rows are in `rejected/` (config `rejected`, column `rejected_reason`)"
                 if has_rejected else "no rejected rows are kept")
        parts.append(f"Filters: {filters or 'none'}; {where}. Change a threshold without generating again: "
                     f"`smolalign gen {recipe.kind} --output DIR --refilter filters.KEY=VALUE`.\n\n")
    return "".join(parts)


def plot_labels(counts: dict, out_dir: Path) -> Path | None:
    """DIR/labels.png from the counts alone; removed when the spec has no labels (a refilter may drop them)."""
    labels = counts.get("labels")
    target = Path(out_dir) / FIGURE
    if not labels:
        target.unlink(missing_ok=True)
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.6), squeeze=False)
    for ax, (name, values) in zip(axes[0], labels.items()):
        if name == "reward":
            histogram = values["histogram"]
            if histogram["counts"]:
                edges = histogram["edges"]
                ax.bar(edges[:-1], histogram["counts"], width=edges[1] - edges[0], align="edge", color="#4c72b0")
            ax.set_xlabel("reward score")
        else:
            colours = ["#c44e52" if key == "unlabelled" else "#4c72b0" for key in values]
            ax.bar(range(len(values)), list(values.values()), color=colours)
            ax.set_xticks(range(len(values)), list(values), rotation=40, ha="right", fontsize=8)
        ax.set_title(name)
        ax.set_ylabel("rows")
    fig.tight_layout()
    partial = target.with_name(f".{FIGURE}.partial")  # written whole or not at all
    fig.savefig(partial, format="png", dpi=100)
    plt.close(fig)
    partial.replace(target)
    return target
