"""The one data layer: every command reads datasets here (hub id, local file, hub-layout directory), normalises
them, checks the rows and mixes sources; also the pretraining token blocks and the shipped debug data. Imports leaves
only (errors, hub, model.chat_template), never a command."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..errors import UsageError
from .checks import check_conversation, check_data_section, check_preference
from .formats import RowError, check_columns, detect_format, to_messages, to_preference
from .loading import load_split
from .mixture import mix, split_eval

SAMPLE_ROWS = 1000  # rows checked strictly (an error names the row); later bad rows are dropped and counted
_PROBLEM = "_smolalign_problem"


@dataclass
class DataBundle:
    train: object
    eval: object | None
    report: dict = field(default_factory=dict)

    def fingerprints(self) -> dict:
        out = {"train": self.train._fingerprint}
        if self.eval is not None:
            out["eval"] = self.eval._fingerprint
        return out


def _normalise_row(row: dict, fmt: str, task: str) -> dict:
    """Normalised columns plus a problem note: '' (fine), 'drop:<why>' (always dropped), 'bad:<why>'."""
    try:
        if task == "preference":
            out = to_preference(row)
            if not out["chosen"][-1]["content"].strip() or not out["rejected"][-1]["content"].strip():
                return {**out, _PROBLEM: "drop:empty chosen or rejected"}
            if out["chosen"] == out["rejected"]:
                return {**out, _PROBLEM: "drop:chosen equals rejected"}
            check_preference(out)
        else:
            out = {"messages": to_messages(row, fmt)}
            check_conversation(out["messages"])
        return {**out, _PROBLEM: ""}
    except RowError as problem:
        empty = {"prompt": [], "chosen": [], "rejected": []} if task == "preference" else {"messages": []}
        return {**empty, _PROBLEM: f"bad:{problem}"}


def _normaliser_fingerprint(source: str, fmt: str, task: str) -> str:
    import hashlib
    import inspect

    from . import checks, formats

    code = "".join(inspect.getsource(module) for module in (formats, checks)) + inspect.getsource(_normalise_row)
    return hashlib.sha256(f"{source}|{fmt}|{task}|{code}".encode()).hexdigest()[:32]


def normalise(dataset, name: str, fmt: str, task: str):
    """Rows in the task's one format; bad rows in the first SAMPLE_ROWS fail loudly, later ones are counted."""
    columns = dataset.column_names
    fmt = detect_format(columns, task, name) if fmt == "auto" else fmt
    if task == "preference" and fmt != "preference":
        raise UsageError(f"data.format={fmt} is a chat format; preference training needs chosen and rejected columns")
    if task == "chat" and fmt == "preference":
        raise UsageError("data.format=preference is for `smolalign dpo`; SFT needs a chat format")
    check_columns(columns, fmt, name)
    normalised = dataset.map(
        _normalise_row, fn_kwargs={"fmt": fmt, "task": task}, remove_columns=columns,
        desc=f"Normalising {name} ({fmt})",
        # datasets keys its cache on the function's bytecode, not on the helpers it calls: include their source,
        # so an upgraded smolalign never reuses rows normalised by an older one
        new_fingerprint=_normaliser_fingerprint(dataset._fingerprint, fmt, task),
    )
    problems = normalised[_PROBLEM]
    for index, note in enumerate(problems[:SAMPLE_ROWS]):
        if note.startswith("bad:"):
            raise UsageError(f"dataset '{name}' row {index}: {note[4:]}: fix or remove the row")
    dropped = Counter(note.split(":", 1)[1] for note in problems if note)
    if dropped:
        normalised = normalised.filter(lambda note: not note, input_columns=[_PROBLEM])
    if len(normalised) == 0:
        raise UsageError(f"dataset '{name}' has no usable rows after checks ({dict(dropped)}): fix the data")
    return normalised.remove_columns([_PROBLEM]), fmt, dict(dropped)


def _load_source(dataset: str, config, split: str, fmt: str, task: str):
    raw = load_split(dataset, config, split)
    normalised, fmt, dropped = normalise(raw, dataset, fmt, task)
    return normalised, {"dataset": dataset, "config": config, "split": split, "format": fmt,
                        "rows_read": len(raw), "rows_dropped": dropped}


def load_data(section, task: str) -> DataBundle:
    """Train (and eval) datasets for a recipe's `data` section. `task` is 'chat' (SFT) or 'preference' (DPO)."""
    check_data_section(section)
    if section.mixture:
        sources = section.mixture
    else:
        sources = [{"dataset": section.dataset, "config": section.config, "split": section.split,
                    "format": section.format, "weight": 1.0}]
    loaded, reports = [], []
    for source in sources:
        dataset, report = _load_source(source["dataset"], source.get("config"), source.get("split", "train"),
                                       source.get("format", "auto"), task)
        loaded.append(dataset)
        reports.append(report)

    if section.mixture:
        train, counts = mix(loaded, [s.get("weight", 1.0) for s in sources], section.num_samples, section.seed)
        for report, count in zip(reports, counts):
            report["rows_in_mixture"] = count
    else:
        train = loaded[0]
        if section.num_samples is not None and section.num_samples < len(train):
            train = train.shuffle(seed=section.seed).select(range(section.num_samples))

    if section.eval_split:
        from datasets import concatenate_datasets

        evals = [_load_source(s["dataset"], s.get("config"), section.eval_split, s.get("format", "auto"), task)[0]
                 for s in sources]
        eval_set = evals[0] if len(evals) == 1 else concatenate_datasets(evals)
    else:
        train, eval_set = split_eval(train, section.eval_fraction, section.seed)
    report = {"sources": reports, "train_rows": len(train), "eval_rows": len(eval_set) if eval_set is not None else 0}
    return DataBundle(train=train, eval=eval_set, report=report)
