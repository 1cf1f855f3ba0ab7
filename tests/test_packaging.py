"""Recipes and generation specs ship inside the wheel, so a plain `pip install` finds them."""

import subprocess
import sys
import zipfile

from .conftest import REPO


def test_wheel_contains_recipes_and_data_gen(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("smolalign-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("smolalign/cli.py", "smolalign/recipes/sft.yaml", "smolalign/recipes/debug/sft.yaml",
                     "smolalign/recipes/debug/tokenizer/tokenizer.json",
                     "smolalign/recipes/debug/data/tasks-sft/train.jsonl", "smolalign/recipes/accelerate/zero3.yaml",
                     "smolalign/data_gen/README.md"):
        assert expected in names, expected
    assert not any("/runs/" in n or "__pycache__" in n for n in names)


def test_task_set_files_are_reproducible(tmp_path):
    from smolalign.data.debug_tasks import write_task_set

    write_task_set(tmp_path)
    for name in ("tasks-sft/train.jsonl", "tasks-sft/test.jsonl", "tasks-dpo/train.jsonl", "tasks-dpo/test.jsonl"):
        assert (tmp_path / name).read_text() == (REPO / "recipes/debug/data" / name).read_text(), name
    train = {line for line in (tmp_path / "tasks-sft/train.jsonl").read_text().splitlines()}
    test = {line for line in (tmp_path / "tasks-sft/test.jsonl").read_text().splitlines()}
    assert not train & test, "held-out prompts never appear in training"
