"""Committed pass values -> label columns on each row, and the spec's thresholds -> the reason a row is dropped.

Every enabled pass adds its columns to every row (None where the label did not parse), so the dataset's schema does
not depend on which rows a small judge happened to label. A threshold on a label drops a row whose label is missing
too: an unlabelled row is not known to pass, and is never guessed to.
"""

from __future__ import annotations

from .labels import parse_guard, parse_label
from .spec import DIFFICULTY, INPUT_QUALITY

COLUMNS = {"difficulty": ("difficulty", "intent"), "input_quality": ("input_quality", "quality_explanation"),
           "task_category": ("task_category",), "safety": ("safety", "safety_reason"), "reward": ("reward_score",)}
# the column whose None means "unlabelled" for each labelling pass
LABEL_OF = {"difficulty": "difficulty", "input_quality": "input_quality", "task_category": "task_category",
            "safety": "safety"}


RAW_LABELS = "raw_labels"  # a judge's answers that did not parse: kept in rejected/ only


def label_columns(recipe, passes, values: dict, qid: str, category: str | None) -> dict:
    """The columns the passes give one row."""
    columns: dict = {}
    categories = list(recipe.sections["labels"].categories)
    for p in passes:
        if p.name == "embedding":
            continue
        value = values[p.name].get(qid)
        names = COLUMNS[p.name]
        if p.step == "judge":
            parsed = parse_label(p.name, value, categories)
        elif p.step == "guard":
            parsed = parse_guard(value)
        elif p.step == "safety_classifier":
            parsed = _classifier_safety(value, recipe.sections["safety"].unsafe_labels)
        else:
            parsed = {"reward_score": float(value)} if value is not None else None
        columns.update({name: (parsed or {}).get(name) for name in names})
        if parsed is None and p.step in ("judge", "guard") and value is not None:  # what the judge said instead
            columns.setdefault(RAW_LABELS, {})[p.name] = value
        if p.name == "task_category" and category is not None:
            label = columns["task_category"]
            columns["category_match"] = None if label is None else label == category
    return columns


def _classifier_safety(value: dict | None, unsafe_labels: list[str]) -> dict | None:
    if not value:
        return None
    unsafe = {name.lower() for name in unsafe_labels}
    return {"safety": "unsafe" if str(value["label"]).lower() in unsafe else "safe",
            "safety_reason": f"{value['label']} ({value['score']:.2f})"}


def _below(value, threshold, scale) -> bool:
    return scale.index(value) < scale.index(threshold)


def drop_reason(row: dict, filters) -> str | None:
    """Why the spec's thresholds drop this row, or None to keep it (the first failing check names the reason)."""
    for key, column, scale in (("min_difficulty", "difficulty", DIFFICULTY),
                               ("min_input_quality", "input_quality", INPUT_QUALITY)):
        threshold = getattr(filters, key)
        if threshold is None:
            continue
        if row.get(column) is None:
            return f"{column} unlabelled"
        if _below(row[column], threshold, scale):
            return f"{column} below {threshold}"
    if filters.min_reward is not None:
        if row.get("reward_score") is None:
            return "reward score missing"
        if row["reward_score"] < filters.min_reward:
            return f"reward score below {filters.min_reward:g}"
    if filters.safe_only:
        if row.get("safety") is None:
            return "safety unlabelled"
        if row["safety"] != "safe":
            return "unsafe"
    if filters.category_match:
        if row.get("task_category") is None:
            return "task_category unlabelled"
        if not row.get("category_match"):
            return "task_category is not the sampled category"
    return None


def label_counts(passes, rows: list[dict], categories: list[str]) -> dict:
    """Distributions over the rows that came in: counts per value (None counted as "unlabelled"), and for the
    reward the count, mean, min and max."""
    out: dict = {}
    for p in passes:
        if p.name in LABEL_OF:
            column = LABEL_OF[p.name]
            counts: dict = {}
            for row in rows:
                key = row.get(column) or "unlabelled"
                counts[key] = counts.get(key, 0) + 1
            scale = categories if p.name == "task_category" else SCALES[p.name]  # every value, 0 included
            out[p.name] = {k: counts.get(k, 0) for k in [*scale, "unlabelled"]}
        elif p.name == "reward":
            scores = [row["reward_score"] for row in rows if row.get("reward_score") is not None]
            out["reward"] = {"scored": len(scores), "missing": len(rows) - len(scores),
                             "mean": sum(scores) / len(scores) if scores else None,
                             "min": min(scores, default=None), "max": max(scores, default=None),
                             "histogram": _histogram(scores)}
    return out


SCALES = {"difficulty": DIFFICULTY, "input_quality": INPUT_QUALITY, "safety": ("safe", "unsafe")}


def _histogram(scores: list[float], bins: int = 10) -> dict:
    """Equal-width bins from the lowest to the highest score: {"edges": [...], "counts": [...]}."""
    if not scores:
        return {"edges": [], "counts": []}
    low, high = min(scores), max(scores)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for score in scores:
        counts[min(int((score - low) / width), bins - 1)] += 1
    return {"edges": [low + width * i for i in range(bins + 1)], "counts": counts}


def labelled(passes, row: dict) -> bool:
    """Every labelling pass of the spec gave this row a valid label."""
    return all(row.get(LABEL_OF[p.name]) is not None for p in passes if p.name in LABEL_OF)
