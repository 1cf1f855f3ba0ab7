"""`--overwrite` never loses a good run: sft, dpo and pretrain build the new run beside the old one and swap it in
only at the new run's first complete checkpoint (or its final save). A bad setting, a failure, ctrl-C or kill -9
before then leaves the old output byte-identical, and only the new run's own partial work is removed.

Faults inside training are injected (said so where they are): `Trainer.training_step` is patched to raise at a
chosen step, as a crash or a ctrl-C would arrive there. Signals are real, sent to a real `smolalign` process.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from smolalign.outputs import set_aside_path, staging_path

from .conftest import assert_user_error, run_cli, run_in_process, tree_digest

QUICK = ["training.max_steps=2", "training.save_steps=1", "training.logging_steps=1", "training.report_to=[]",
         "training.eval_strategy=no"]
# Long enough to be interrupted, with no checkpoint before step 1000: the old output must survive. Pretraining's
# length is its stages' (512 steps at a batch of one block), which max_steps may only shorten.
LONG = ["training.save_steps=1000", "training.logging_steps=1", "training.report_to=[]", "training.eval_strategy=no"]
LONG_BY_COMMAND = {"sft": ["training.max_steps=2000", *LONG], "dpo": ["training.max_steps=2000", *LONG],
                   "pretrain": ["training.per_device_train_batch_size=1", *LONG]}


@pytest.fixture(scope="module")
def good_runs(tmp_path_factory) -> dict:
    """A finished run of each command, written once; tests copy them before trying to replace them."""
    root = tmp_path_factory.mktemp("good")
    commands = {
        "sft": ["sft", "debug/sft", f"training.output_dir={root / 'sft'}", *QUICK],
        "pretrain": ["pretrain", "debug/pretrain", f"training.output_dir={root / 'pretrain'}", *QUICK],
    }
    commands["dpo"] = ["dpo", "debug/dpo", f"model.name_or_path={root / 'sft'}",
                       f"training.output_dir={root / 'dpo'}", *QUICK]
    for name in ("sft", "pretrain", "dpo"):
        result = run_in_process(*commands[name])
        assert result.exit_code == 0, result.stderr[-3000:]
    return {name: (root / name, command) for name, command in commands.items()}


def copy_of(good_runs, name, tmp_path):
    import shutil

    source, command = good_runs[name]
    target = tmp_path / name
    shutil.copytree(source, target)
    argv = [arg.replace(str(source), str(target)) if arg.startswith("training.output_dir=") else arg
            for arg in command]
    return target, [arg for arg in argv if arg not in QUICK]


def fail_at_step(monkeypatch, step: int, error: BaseException):
    """Injected fault: the training step `step` raises `error` (a crash, or ctrl-C's KeyboardInterrupt)."""
    from transformers import Trainer

    original, calls = Trainer.training_step, {"n": 0}

    def training_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == step:
            raise error
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", training_step)


def assert_untouched(target, before):
    assert tree_digest(target) == before
    assert not staging_path(target).exists(), "the new run's partial work was left behind"


@pytest.mark.parametrize("name", ["sft", "dpo", "pretrain"])
def test_a_bad_setting_with_overwrite_changes_nothing(good_runs, tmp_path, name):
    target, argv = copy_of(good_runs, name, tmp_path)
    before = tree_digest(target)
    result = run_in_process(*argv, *QUICK, "--overwrite", "model.attn_implementation=flash_attention_2")
    assert_user_error(result)
    assert "flash_attention_2" in result.stderr
    assert_untouched(target, before)


@pytest.mark.parametrize("fault", [RuntimeError("injected crash"), KeyboardInterrupt()], ids=["crash", "ctrl-c"])
@pytest.mark.parametrize("name", ["sft", "dpo", "pretrain"])
def test_a_run_that_stops_before_its_first_checkpoint_leaves_the_old_output(good_runs, tmp_path, monkeypatch,
                                                                           name, fault):
    target, argv = copy_of(good_runs, name, tmp_path)
    before = tree_digest(target)
    fail_at_step(monkeypatch, 2, fault)
    if isinstance(fault, KeyboardInterrupt):
        result = run_in_process(*argv, *LONG_BY_COMMAND[name], "--overwrite")
        assert result.exit_code == 130 and "interrupted" in result.stderr
    else:
        with pytest.raises(RuntimeError, match="injected crash"):
            run_in_process(*argv, *LONG_BY_COMMAND[name], "--overwrite")
    assert_untouched(target, before)


@pytest.mark.parametrize("name", ["sft", "pretrain"])
def test_a_run_whose_loss_turns_nan_stops_in_one_line_and_keeps_the_old_output(good_runs, tmp_path, monkeypatch,
                                                                                name):
    """On an H200 a pretraining run's gradients turned NaN at step 1 and it trained on, logging loss 0 (the NaN
    filtered out) and writing NaN weights. Injected here: the loss of step 2 is NaN, as it came back there."""
    import torch
    from transformers import Trainer

    target, argv = copy_of(good_runs, name, tmp_path)
    before = tree_digest(target)
    original, calls = Trainer.training_step, {"n": 0}

    def training_step(self, *args, **kwargs):
        calls["n"] += 1
        loss = original(self, *args, **kwargs)
        return loss * torch.nan if calls["n"] == 2 else loss

    monkeypatch.setattr(Trainer, "training_step", training_step)
    result = run_in_process(*argv, *LONG_BY_COMMAND[name], "--overwrite")
    assert result.exit_code == 1, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "loss is nan at step 2" in errors[0] and "Traceback" not in result.stderr
    assert_untouched(target, before)


def test_the_first_checkpoint_swaps_the_new_run_in_and_it_resumes(good_runs, tmp_path, monkeypatch):
    target, argv = copy_of(good_runs, "sft", tmp_path)
    before = tree_digest(target)
    fail_at_step(monkeypatch, 4, RuntimeError("injected crash"))
    with pytest.raises(RuntimeError):
        run_in_process(*argv, "training.max_steps=6", "training.save_steps=2", "training.logging_steps=1",
                       "training.report_to=[]", "--overwrite")
    assert tree_digest(target) != before and not staging_path(target).exists()
    assert sorted(p.name for p in target.glob("checkpoint-*")) == ["checkpoint-2"]  # the new run's, complete
    monkeypatch.undo()
    resumed = run_in_process(*argv, "training.max_steps=6", "training.save_steps=2", "training.logging_steps=1",
                             "training.report_to=[]", "--resume")
    assert resumed.exit_code == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and (target / "model.safetensors").is_file()


def test_a_run_stopped_after_its_swap_keeps_both_outputs_and_its_last_line_says_where(good_runs, tmp_path,
                                                                                      monkeypatch):
    """The old output waits beside the new run until the new run's final save (issue 31), then goes."""
    target, argv = copy_of(good_runs, "sft", tmp_path)
    before = tree_digest(target)
    steps = ["training.max_steps=6", "training.save_steps=2", "training.logging_steps=1", "training.report_to=[]"]
    fail_at_step(monkeypatch, 4, KeyboardInterrupt())  # ctrl-C after the first checkpoint swapped the new run in
    result = run_in_process(*argv, *steps, "--overwrite")
    assert result.exit_code == 130, result.stderr[-3000:]
    assert "note: --overwrite keeps the old output (" in result.stderr
    assert "until this run's final save: the disk holds both meanwhile" in result.stderr
    old = set_aside_path(target)
    assert tree_digest(old) == before, "the old output must wait whole beside the new run"
    assert sorted(p.name for p in target.glob("checkpoint-*")) == ["checkpoint-2"]
    line = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(line) == 1 and line[0].startswith("error: interrupted; the new run in "), result.stderr[-2000:]
    assert f"'{target}' is unfinished (continue it: smolalign sft " in line[0] and "--resume)" in line[0]
    assert f"the old output is kept in '{old}' (to keep it instead: rm -r '{target}' && mv '{old}'" in line[0]

    again = run_in_process(*argv, *steps, "--overwrite")  # the old output would be lost: refused
    assert again.exit_code == 2 and "still holds the output an earlier --overwrite set aside" in again.stderr
    assert tree_digest(old) == before
    monkeypatch.undo()
    resumed = run_in_process(*argv, *steps, "--resume")
    assert resumed.exit_code == 0, resumed.stderr[-3000:]
    assert not old.exists() and (target / "model.safetensors").is_file()  # removed at the final save


def test_a_fresh_run_that_fails_before_its_first_checkpoint_leaves_no_directory(tmp_path, monkeypatch):
    fail_at_step(monkeypatch, 2, RuntimeError("injected crash"))
    with pytest.raises(RuntimeError):
        run_in_process("sft", "debug/sft", f"training.output_dir={tmp_path / 'new'}", *LONG_BY_COMMAND["sft"])
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    again = run_in_process("sft", "debug/sft", f"training.output_dir={tmp_path / 'new'}", *QUICK)
    assert again.exit_code == 0, again.stderr[-3000:]


def started_training(staging) -> bool:
    metrics = staging / "metrics.jsonl"
    return metrics.is_file() and metrics.read_text().count("\n") >= 1


@pytest.mark.slow
@pytest.mark.parametrize("name,sig", [("sft", signal.SIGINT), ("sft", signal.SIGTERM), ("sft", signal.SIGKILL),
                                      ("dpo", signal.SIGKILL), ("pretrain", signal.SIGKILL)])
def test_a_real_signal_mid_overwrite_leaves_the_old_output(good_runs, tmp_path, name, sig):
    target, argv = copy_of(good_runs, name, tmp_path)
    before = tree_digest(target)
    # a shell that starts pytest in the background leaves SIGINT ignored in its children: a user's terminal does not
    process = subprocess.Popen([sys.executable, "-m", "smolalign.cli", *argv, *LONG_BY_COMMAND[name], "--overwrite"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy(),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 600
    while not started_training(staging_path(target)) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()[1][-3000:]
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=300)
    assert tree_digest(target) == before
    if sig in (signal.SIGINT, signal.SIGTERM):  # SIGTERM (schedulers, `kill`) is handled as ctrl-C
        assert process.returncode == 130 and "error: interrupted" in stderr, stderr[-3000:]
        assert not staging_path(target).exists()
        return
    # kill -9 runs no cleanup: the sibling stays until the next run on this output removes it
    assert staging_path(target).exists()
    rerun = run_cli(*argv, *QUICK, "--overwrite")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert not staging_path(target).exists() and tree_digest(target) != before
