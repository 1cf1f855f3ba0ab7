"""`smolalign plan`'s output: the plan (plan/run.py's dict) as rich tables; `--json` prints the dict instead."""

from __future__ import annotations

from ..model.memory import GiB


def amount(value: float | None) -> str:
    """Tokens and FLOPs the way people say them: 11.0T, 2.10M, 512."""
    if value is None:
        return "unknown"
    for size, unit in ((1e21, "Z"), (1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:,.1f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:,.1f} hours"
    if seconds >= 120:
        return f"{seconds / 60:,.1f} minutes"
    return f"{seconds:,.1f} seconds"


def relative(path: str) -> str:
    """A path under the working directory as a relative one (recipes/pretrain.yaml), others as they are."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return path


def show(plan: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    if not console.is_terminal:
        console.width = max(console.width, 132)  # a pipe or a file: one line a line
    say = lambda text: console.print(text, markup=False, highlight=False, soft_wrap=True)  # noqa: E731
    model, machine, batch, run = plan["model"], plan["machine"], plan["batch"], plan["run"]
    trainable = (f", {model['trainable']:,} of them trained (LoRA)" if model["trainable"] != model["parameters"]
                 else "")
    peak = f", {machine['peak_tflops']:,.0f} TFLOP/s bf16" if machine["peak_tflops"] else ", peak unknown"
    say(f"smolalign plan {relative(plan['recipe'])} ({plan['kind']})")
    say(f"model  {model['source']}: {model['parameters']:,} parameters{trainable}, {model['layers']} "
                  f"layers, hidden {model['hidden']:,}, vocabulary {model['vocab']:,}")
    say(f"on     {machine['gpus']} x {machine['gpu']} ({machine['memory_gib']:.1f} GiB{peak}), "
                  f"{machine['strategy']} ({relative(machine['launch'])})")
    say(f"batch  micro-batch {batch['micro_batch']} x accumulation {batch['accumulation']} x "
                  f"{batch['processes']} process(es) = {batch['rows_per_step']:,} rows a step, up to "
                  f"{batch['sequence']:,} tokens each; gradient checkpointing "
                  f"{'on' if batch['activation_checkpointing'] else 'off'}")

    phases = Table(title="run", title_justify="left")
    for column in ("phase", "tokens", "steps", "tokens a step", "tokens a row"):
        phases.add_column(column, justify="left" if column == "phase" else "right")
    for phase in run["phases"]:
        phases.add_row(phase["name"], amount(phase["tokens"]), f"{phase['steps']:,}",
                       f"{phase['tokens_per_step']:,.0f}", f"{phase['sequence']:,}")
    if run["steps"] is not None:
        phases.add_row("total", amount(run["tokens"]), f"{run['steps']:,}", "", "", style="bold")
    if run["phases"]:
        console.print(phases)
    else:
        say("run    steps and time unknown (see the notes)")
    data = []
    if run["rows"] is not None:
        data.append(f"{run['rows']:,} rows")
    if run["tokens_per_row"] is not None:
        data.append(f"{run['tokens_per_row']:,.0f} tokens a " + ("pair (chosen + rejected, " if plan["kind"] == "dpo"
                    else "row (") + "templated, each capped at max_length)")
    data.append(f"{run['epochs']:g} epoch(s)" if run["epochs"] is not None else
                "epochs: counted in tokens" if plan["kind"] == "pretrain" else "epochs unknown")
    say("data   " + ", ".join(data))
    flops = plan["flops"]
    total = f"{flops['total']:.3g}" if flops["total"] else "unknown"
    say(f"FLOPs  {total} to train (6N + 12·L·H·Q·T a token, the MFU convention"
        + (f"; {flops['per_token']:.3g} a token on average)" if flops["per_token"] else ")"))

    largest = max(row["total"] for row in plan["memory"])
    unit, size = ("GiB", GiB) if largest >= GiB else ("MiB", 1024**2)
    table = Table(title=f"memory per device ({unit}, estimate: model/memory.py)", title_justify="left")
    for column in ("strategy", "GPUs", "checkpointing", "weights", "gradients", "optimizer", "activations",
                   "total", f"fits {machine['memory_gib']:.0f} GiB"):
        table.add_column(column, justify="left" if column in ("strategy", "checkpointing") else "right",
                         no_wrap=True)
    for row in plan["memory"]:
        mark = "  ← this run" if row["this_run"] else ""
        table.add_row(row["strategy"], str(row["devices"]), "on" if row["checkpointing"] else "off",
                      *(f"{row[key] / size:,.1f}" for key in ("weights", "gradients", "optimizer", "activations",
                                                              "total")),
                      row["fits"] + mark, style="bold" if row["this_run"] else None)
    console.print(table)
    time = plan["time"]
    hours = f"{time['gpu_hours']:,.0f} GPU-hours" if time["gpu_hours"] else "GPU-hours unknown"
    say(f"time   {duration(time['seconds'])} on {machine['gpus']} GPU(s), {hours}, at MFU "
                  f"{time['mfu']:.1%} ({time['mfu_source']})")
    for line in plan["speed"]:
        say(line)
    for note in plan["notes"]:
        say(f"note: {note}")
