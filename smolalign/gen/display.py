"""What the user sees: a rich progress bar (rows settled / requested, rows/s, time left) and the final table: the
counts by reason (the card's own lines) and each label's distribution."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class GenDisplay:
    """Rows count as done when committed; within a pass the bar also moves as the last step's batches come back."""

    def __init__(self, subset: str, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.subset = subset
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console,
                                 transient=False)
        self.task = None
        self.settled = self.in_pass = self.pass_rows = self.batch = 0
        self.started = time.monotonic()
        self.first_settled = 0

    def start(self, total: int, already: int) -> None:
        self.settled = self.first_settled = already
        if already:
            self.console.print(f"{self.subset}: {already} of {total} rows already committed; asking for the rest")
        self.progress.start()
        self.task = self.progress.add_task(self.subset, total=total, completed=already, rate="")

    def begin_pass(self, shard: int, shards: int, pass_no: int, rows: int, batch: int) -> None:
        self.in_pass, self.pass_rows, self.batch = 0, rows, batch
        label = f"{self.subset} shard {shard + 1}/{shards}" + (f" (retry pass {pass_no})" if pass_no > 1 else "")
        self.progress.update(self.task, description=label)

    def batch_done(self) -> None:
        self.in_pass = min(self.pass_rows, self.in_pass + self.batch)
        self._refresh(self.settled + self.in_pass)

    def end_pass(self, settled: int) -> None:
        self.settled, self.in_pass = settled, 0
        self._refresh(settled)

    def _refresh(self, done: int) -> None:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = (done - self.first_settled) / elapsed
        self.progress.update(self.task, completed=done, rate=f"{rate:.2f} rows/s")

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()


def print_summary(subset: str, counts: dict, out_dir: str, seconds: float, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=f"smolalign gen {subset}", show_header=True)
    table.add_column("")
    table.add_column("rows", justify="right")
    from .quality.card import count_lines, empty_reason

    lines = count_lines(counts)
    for i, (what, n) in enumerate(lines):
        table.add_row(what, str(n), end_section=i == len(lines) - 1)
    for name, values in (counts.get("labels") or {}).items():
        if name != "reward":
            table.add_row(f"label {name}", ", ".join(f"{k} {n}" for k, n in values.items()))
    table.add_row("wall time", f"{seconds:.1f} s")
    console.print(table)
    if counts["kept"]:
        from .subsets import subset_module

        train = getattr(subset_module(subset), "TRAIN_WITH", "smolalign sft sft data.dataset={dir}")
        console.print(f"dataset written to {out_dir} ({train.format(dir=out_dir)})")
    else:
        console.print(f"the dataset in {out_dir} is empty: {empty_reason(counts)}")

