"""The demo's report: DIR/report.md with PNG plots that show each stage did its job."""

from __future__ import annotations

from pathlib import Path

from ..outputs import atomic_write_text


def _plot_pretrain(out: Path, state: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..train.report import read_metrics

    records = [r for r in read_metrics(state["pretrain"]["model"]) if r.get("loss") is not None]
    fig, axis = plt.subplots(figsize=(6, 3.6))
    axis.plot([r["step"] for r in records], [r["loss"] for r in records], label="training loss")
    axis.axhline(state["pretrain"]["ln_vocab"], color="grey", linestyle="--", label="ln(vocab): a uniform guess")
    axis.set_xlabel("step")
    axis.set_title("pretrain: loss")
    axis.legend()
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "pretrain_loss.png", dpi=110)
    plt.close(fig)
    return "pretrain_loss.png"


def _plot_before_after(out: Path, name: str, title: str, before: float, after: float, labels: tuple[str, str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(4.5, 3.6))
    bars = axis.bar(list(labels), [before, after], color=["#bbbbbb", "#3b7dd8"])
    axis.bar_label(bars, fmt="%.3f")
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def write_report(out: Path, state: dict) -> None:
    pre, sft, dpo, gen = state["pretrain"], state["sft"], state["dpo"], state["gen"]
    loss_png = _plot_pretrain(out, state)
    em_png = _plot_before_after(out, "sft_exact_match.png", "SFT: held-out exact match", sft["exact_match_before"],
                                sft["exact_match_after"], ("pretrained", "after SFT"))
    pa_png = _plot_before_after(out, "dpo_preference_accuracy.png", "DPO: held-out preference accuracy",
                                dpo["preference_accuracy_before"], dpo["preference_accuracy_after"],
                                ("after SFT", "after DPO"))
    seconds = sum(state[s].get("seconds", 0) for s in ("tokenizer", "pretrain", "gen", "sft", "dpo"))
    text = f"""# smolalign demo ({state['size']})

Raw text to an aligned chat model on this machine in {seconds:.0f} s of stage time. Every stage's output is a
standard directory that the other commands load on their own.

| stage | figure | output |
|---|---|---|
| pretrain | loss {pre['loss_start']:.3f} → {pre['loss_end']:.3f} (ln vocab = {pre['ln_vocab']:.3f}) | `{pre['model']}` |
| gen | {gen['rows']} of {gen.get('requested', gen['rows'])} SmolTalk-style rows kept (local server; mechanics only) | `{gen['model']}` |
| sft | held-out exact match {sft['exact_match_before']:.3f} → {sft['exact_match_after']:.3f} | `{sft['model']}` |
| dpo | held-out preference accuracy {dpo['preference_accuracy_before']:.3f} → {dpo['preference_accuracy_after']:.3f} | `{dpo['model']}` |

![pretrain loss]({loss_png})
![SFT exact match]({em_png})
![DPO preference accuracy]({pa_png})

Try the aligned model: `smolalign chat {dpo['model']} --prompt "Reverse the word: cat"`; evaluate it:
`smolalign eval {dpo['model']} --data recipes/debug/data/tasks-sft/test.jsonl`.
"""
    atomic_write_text(out / "report.md", text)
