"""The check CI runs where only the runtime dependencies are installed (tests/runtime_check.py) fails when one is
missing. Here the missing dependency is hidden from an interpreter of this environment (a sitecustomize on
PYTHONPATH hides it, for the check and every process it starts), so no second venv is built."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import REPO
from .runtime_check import check_help, command_paths

# The path finder, which finds everything installed, no longer sees the hidden modules: importing one fails and
# importlib.util.find_spec says None, as where it is not installed (libraries probe optional modules that way).
HIDE = """from importlib.machinery import PathFinder

_find_spec = PathFinder.find_spec
HIDDEN = {names!r}
PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None: None if name.split(".")[0] in HIDDEN else _find_spec(name, path, target))
"""


def run_check(tmp_path, hidden: set[str]) -> subprocess.CompletedProcess:
    (tmp_path / "sitecustomize.py").write_text(HIDE.format(names=hidden))
    path = os.pathsep.join(p for p in (str(tmp_path), str(REPO), os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, str(REPO / "tests" / "runtime_check.py")], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": path}, timeout=900)


def test_a_missing_runtime_dependency_fails_the_check_and_an_optional_extra_does_not(tmp_path):
    # langdetect is imported only when a language constraint is checked, so importing every module would miss it;
    # datasketch only by distilabel's MinHashDedup; lm-eval, ray and faiss belong to extras, which a runtime
    # install lacks.
    result = run_check(tmp_path, {"langdetect", "datasketch", "lm_eval", "ray", "faiss"})
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failures = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    langdetect = [line for line in failures if line.startswith("FAILED from langdetect")]
    assert langdetect and all("gen/constraints/text.py" in line and "No module named 'langdetect'" in line
                              for line in langdetect), failures
    assert [line for line in failures if line not in langdetect] == [
        line for line in failures if line.startswith("FAILED import datasketch  (used by distilabel's MinHashDedup")
        and "No module named 'datasketch'" in line] != [], failures
    passed, failed = result.stdout.splitlines()[-1].replace(",", "").split()[::2]
    assert int(failed) == len(failures) and int(passed) > 100, result.stdout[-2000:]


def test_every_command_is_asked_for_help_and_a_failing_one_is_reported():
    paths = command_paths()
    assert {(), ("sft",), ("dpo",), ("gen",), ("demo",), ("tokenizer", "train"), ("model", "info")} <= set(paths)
    assert check_help(("sft",)) is None
    problem = check_help(("no-such-command",))
    assert problem and problem.startswith("exit 2"), problem
