"""The run lifecycle every training command shares: guarded outputs, one run at a time, nothing written before
every check passed, secrets never written, checkpoints never lost to rotation, and a run record with history."""

import json
import os
import stat
import subprocess
import sys

import pytest

from smolalign.errors import UsageError
from smolalign.outputs import check_output_dir
from smolalign.train.checkpoints import COMPLETE_MARKER, checkpoints, rotate

from .conftest import assert_user_error, run_cli

SECRET = "hf_SeCrEtTokenValue12345"
SHORT = ["training.max_steps=6", "training.save_steps=3", "training.logging_steps=1", "training.report_to=[]",
         "training.eval_strategy=no"]


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """One short debug SFT run with a secret on the command line and a checkpoint limit of 1."""
    out = tmp_path_factory.mktemp("run") / "short"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", *SHORT, "training.save_total_limit=1",
                     f"training.hub_token={SECRET}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stderr + result.stdout
    return out


def test_no_file_of_the_run_holds_the_secret(short_run):
    for path in short_run.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_print_config_and_errors_redact_secrets(tmp_path):
    shown = run_cli("sft", "debug/sft", f"training.hub_token={SECRET}", "--print-config")
    assert shown.returncode == 0 and SECRET not in shown.stdout and "hub_token: '***'" in shown.stdout
    failed = run_cli("sft", "debug/sft", f"training.hub_tokn={SECRET}")
    assert failed.returncode == 2 and SECRET not in failed.stderr


def test_rotation_keeps_the_newest_complete_checkpoint(short_run):
    kept = checkpoints(short_run)
    assert [step for step, _ in kept] == [6] and (kept[0][1] / COMPLETE_MARKER).is_file()


def test_rotation_never_deletes_the_last_complete_checkpoint(tmp_path):
    for step, marked in ((2, True), (4, True), (6, False)):  # 6: being written, not marked yet
        path = tmp_path / f"checkpoint-{step}"
        path.mkdir()
        if marked:
            (path / COMPLETE_MARKER).write_text("{}")
    rotate(tmp_path, 1)
    assert [step for step, _ in checkpoints(tmp_path)] == [4, 6]


def test_files_respect_the_umask(short_run):
    for name in ("README.md", "recipe.yaml", "smolalign_run.json", "model.safetensors"):
        mode = stat.S_IMODE((short_run / name).stat().st_mode)
        assert mode & stat.S_IRGRP, f"{name} is {oct(mode)}"


def test_resume_keeps_history_and_refuses_a_changed_batch(short_run):
    changed = run_cli("sft", "debug/sft", f"training.output_dir={short_run}", *SHORT,
                      "training.per_device_train_batch_size=4", "--resume")
    assert_user_error(changed)
    assert "per_device_train_batch_size" in changed.stderr
    resumed = run_cli("sft", "debug/sft", f"training.output_dir={short_run}", *SHORT, "training.max_steps=9",
                      "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "checkpoint-6" in resumed.stderr
    history = json.loads((short_run / "smolalign_run.json").read_text())["history"]
    assert [event["event"] for event in history] == ["start", "resume"]
    assert history[1]["from_checkpoint"].endswith("checkpoint-6")


def test_overwrite_deletes_only_what_smolalign_wrote(tmp_path, monkeypatch):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match="not written by smolalign"):
        check_output_dir(foreign, overwrite=True)
    monkeypatch.chdir(foreign)
    with pytest.raises(UsageError, match="working directory"):
        check_output_dir(".", overwrite=True)
    with pytest.raises(UsageError, match="no smolalign run"):
        check_output_dir(foreign, overwrite=False, resuming=True)
    assert (foreign / "thesis.tex").read_text() == "years of work"


@pytest.mark.parametrize("where", ["empty", "under-a-file", "proc"])
def test_unusable_output_places(tmp_path, where):
    (tmp_path / "file").write_text("x")
    path = {"empty": "", "under-a-file": str(tmp_path / "file" / "out"), "proc": "/proc/smolalign-out"}[where]
    result = run_cli("sft", "debug/sft", f"training.output_dir={path}", *SHORT)
    assert_user_error(result)


def test_read_only_output_place(tmp_path):
    if os.geteuid() == 0:  # root writes through permission bits; a read-only bind mount needs privileges we lack
        locked = tmp_path / "locked"
        locked.mkdir()
        with pytest.raises(UsageError):  # the check itself, on a path the kernel reports as unwritable
            check_output_dir("/proc/self/out", overwrite=False)
        return
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert_user_error(run_cli("sft", "debug/sft", f"training.output_dir={locked / 'out'}", *SHORT))


def test_a_second_run_in_the_same_directory_is_refused(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "smolalign_run.json").write_text("{}")
    (out / "checkpoint-1").mkdir()
    # another process holds the directory as a running smolalign run does (this process's own locks are shared by
    # its users, so the holder must be a process of its own)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from smolalign.outputs import OutputLock; "
                               "lock = OutputLock(sys.argv[1]); assert lock.acquire(); print('held', flush=True); "
                               "sys.stdin.read()", str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("sft", "debug/sft", f"training.output_dir={out}", *SHORT, "--resume")
        assert_user_error(result)
        assert f"another smolalign process (pid {holder.pid})" in result.stderr
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)


def test_trainer_errors_come_before_the_first_write(tmp_path):
    out = tmp_path / "out"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", "training.eval_strategy=epoch",
                     "data.eval_split=null")
    assert_user_error(result)
    assert not out.exists()


def test_a_failed_runs_record_does_not_block_the_corrected_command(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "smolalign_run.json").write_text("{}")
    (out / "recipe.yaml").write_text("recipe: sft\n")
    assert check_output_dir(out, overwrite=False) == out


def test_shipped_paths_are_not_shadowed_by_the_working_directory(tmp_path, monkeypatch):
    from smolalign.config import load_recipe

    (tmp_path / "tokenizer").mkdir()  # a same-named folder where the user stands
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe("debug/sft", "sft")
    assert recipe.model.tokenizer.endswith(os.path.join("recipes", "debug", "tokenizer"))


def test_model_on_the_command_line_replaces_the_preset(tiny_model_dir):
    from smolalign.config import load_recipe

    recipe = load_recipe("debug/sft", "sft", [f"model.name_or_path={tiny_model_dir}"])
    assert recipe.model.name_or_path == str(tiny_model_dir) and recipe.model.preset is None
    assert recipe.model.tokenizer is None
    shown = run_cli("sft", "debug/sft", "--model", tiny_model_dir, "--print-config")
    assert shown.returncode == 0 and str(tiny_model_dir) in shown.stdout and "preset: null" in shown.stdout


def test_merge_of_a_preset_base_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "lora"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}",
                     "lora={r: 4, lora_alpha: 8, target_modules: [q_proj]}", "--merge")
    assert_user_error(result)
    assert "smolalign model init" in result.stderr and not out.exists()


def test_tensorboard_logs_follow_an_overwrite_into_the_output(short_run, tmp_path):
    """An `--overwrite` trains beside the old output and swaps in at its first complete checkpoint (step 2 here): the
    run's own TensorBoard writer closes there and writes the later steps into the output, under its new name."""
    import shutil

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from .conftest import run_in_process

    out = tmp_path / "out"
    shutil.copytree(short_run, out)  # a finished run, without TensorBoard logs
    quick = ["training.logging_steps=1", "training.eval_strategy=no", "data.num_samples=64", "data.eval_split=null"]
    again = run_in_process("sft", "debug/sft", f"training.output_dir={out}", "training.max_steps=4",
                           "training.save_steps=2", "training.report_to=[tensorboard]", *quick, "--overwrite")
    assert again.returncode == 0, again.stderr[-2000:]
    steps = set()
    for events in (out / "runs").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        if "train/loss" in accumulator.Tags()["scalars"]:
            steps |= {event.step for event in accumulator.Scalars("train/loss")}
    assert steps == {1, 2, 3, 4}, steps  # steps 1-2 written in the sibling before the swap, 3-4 after it
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]  # no sibling left, nor made again
