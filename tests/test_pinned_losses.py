"""The first losses of the shipped debug recipes, pinned: a change to the code that alters training fails here.

Each command runs in this process through its own entry point (`run_sft`, `run_dpo`, `run_pretrain`), as the CLI
calls it, with the recipe as shipped and only the run shortened (a few steps, a loss logged every step, nothing
saved midway). DPO starts from the pinned SFT run's output, as the debug recipes chain. The references were
measured on CPU in fp32; a different CPU or thread count moves the last digits, hence the tolerance, which is far
below what any change of learning rate, data order, masking or loss does (`test_the_pin_catches_a_changed_lr`).

To pin new values after an intended change of behaviour, run

    SMOLALIGN_REPIN=1 python -m pytest tests/test_pinned_losses.py

and commit `tests/references/losses.json` with a word on why the curve moved.
"""

import json
import math
import os
from pathlib import Path

import pytest

from smolalign.train.callbacks import METRICS_FILE

REFERENCES = Path(__file__).parent / "references" / "losses.json"
STEPS = 8
SHORT = [f"training.max_steps={STEPS}", "training.logging_steps=1", "training.report_to=[]",
         "training.eval_strategy=no"]
RELATIVE_TOLERANCE = 2e-3


def losses(output_dir: Path) -> list[float]:
    lines = [json.loads(line) for line in (output_dir / METRICS_FILE).read_text().splitlines() if line.strip()]
    return [line["loss"] for line in lines if "loss" in line][:STEPS]


def run_sft_debug(output_dir: Path, *overrides: str) -> list[float]:
    from smolalign.train.sft import run_sft

    run_sft("debug/sft", [f"training.output_dir={output_dir}", *SHORT, "training.save_strategy=no", *overrides])
    return losses(output_dir)


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[str, list[float]]:
    from smolalign.quiet import quiet_output
    from smolalign.train.dpo import run_dpo
    from smolalign.train.pretrain.command import run_pretrain

    quiet_output()
    root = tmp_path_factory.mktemp("pinned")
    out = {"sft": run_sft_debug(root / "sft")}
    run_dpo("debug/dpo", [f"model.name_or_path={root / 'sft'}", f"training.output_dir={root / 'dpo'}", *SHORT,
                          "training.save_strategy=no"])
    out["dpo"] = losses(root / "dpo")
    run_pretrain("debug/pretrain", [f"training.output_dir={root / 'pretrain'}", *SHORT, "training.save_strategy=no"])
    out["pretrain"] = losses(root / "pretrain")
    if os.environ.get("SMOLALIGN_REPIN"):
        REFERENCES.parent.mkdir(exist_ok=True)
        REFERENCES.write_text(json.dumps(out, indent=2) + "\n")
    return out


@pytest.mark.parametrize("command", ["sft", "dpo", "pretrain"])
def test_first_losses_match_the_pinned_curve(measured, command):
    pinned = json.loads(REFERENCES.read_text())[command]
    got = measured[command]
    assert len(got) == STEPS == len(pinned), got
    for step, (value, expected) in enumerate(zip(got, pinned), start=1):
        assert math.isclose(value, expected, rel_tol=RELATIVE_TOLERANCE), (
            f"{command} step {step}: loss {value:.6f}, pinned {expected:.6f} (whole curve: {got})")


def test_the_pin_catches_a_changed_lr(measured, tmp_path):
    """The tolerance is tight enough to see a real change: the same SFT run at a learning rate 10% lower."""
    changed = run_sft_debug(tmp_path / "sft", "training.learning_rate=2.7e-3")
    pinned = json.loads(REFERENCES.read_text())["sft"]
    assert changed[0] == pytest.approx(pinned[0], rel=RELATIVE_TOLERANCE)  # the first loss is before any update
    assert any(not math.isclose(a, b, rel_tol=RELATIVE_TOLERANCE) for a, b in zip(changed[1:], pinned[1:]))
