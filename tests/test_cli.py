"""The command line: fast help without heavy imports, one-line errors, accelerate relaunch."""

import json
import subprocess
import sys

import pytest

from .conftest import run_cli


def test_help_lists_every_command():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("gen", "sft", "dpo", "pretrain", "tokenizer", "model"):
        assert f"  {command} " in result.stdout


def test_cli_module_imports_nothing_heavy():
    code = ("import sys, smolalign.cli; heavy = {'torch', 'transformers', 'trl', 'distilabel', 'datasets', 'peft'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_debug_flag_shows_the_traceback(tmp_path):
    result = run_cli("--debug", "model", "info", str(tmp_path / "nope"))
    assert result.returncode != 0 and "Traceback" in result.stderr


@pytest.mark.slow  # whole commands in subprocesses
def test_accelerate_relaunch_runs_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    result = run_cli("sft", "debug/sft", "--accelerate-config", "cpu-ddp", "--num-processes", "2",
                     f"training.output_dir={out}", "training.max_steps=4", "training.save_steps=2",
                     "training.report_to=[]")
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((out / "smolalign_run.json").read_text())
    assert info["processes"] == 2
    assert "--accelerate-config" not in info["argv"], "the workers run the command without the launch flags"
    assert (out / "checkpoint-4" / "smolalign_complete.json").is_file()


def test_missing_accelerate_config(tmp_path):
    result = run_cli("sft", "debug/sft", "--accelerate-config", tmp_path / "none.yaml",
                     f"training.output_dir={tmp_path / 'o'}")
    assert result.returncode == 2 and "accelerate config" in result.stderr
