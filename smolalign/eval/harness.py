"""`smolalign eval --tasks`: the benchmark suites (IFEval, GSM8K, MMLU...) are lm-evaluation-harness's job.

We hand it the model directory through its Python API (`lm_eval.simple_evaluate`, model "hf") rather than
re-implement its tasks; lm-eval is an optional extra (`smolalign[eval]`), so it is imported only here, and a
missing install is one line that says how to get it. A task is a registered name or a path to a task YAML
(lm-eval reads local data files from such a YAML, which is how the tests run it offline).
"""

from __future__ import annotations

from pathlib import Path

from ..model.chat_template import IM_END
from ..errors import UsageError

INSTALL_HINT = "pip install 'smolalign[eval]'"


def require_lm_eval() -> None:
    """Fail at once, before any model is loaded, when lm-evaluation-harness is not installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError as error:
        raise UsageError(f"--tasks needs lm-evaluation-harness, which is not installed: {INSTALL_HINT}") from error


def is_chat_model(tokenizer) -> bool:
    """A chat model ends its turns with its end-of-sequence token (SFT sets eos to <|im_end|>); a base model's
    eos (<|endoftext|>) is not in its template. Benchmarks then run through the template only for chat models."""
    template = tokenizer.chat_template or ""
    return bool(template) and (tokenizer.eos_token in template or tokenizer.eos_token == IM_END)


def _task_list(tasks: list[str]) -> list[str]:
    names = [t.strip() for item in tasks for t in item.split(",") if t.strip()]
    if not names:
        raise UsageError("--tasks is empty: name lm-eval tasks (e.g. --tasks ifeval,gsm8k) or task YAML files")
    return [str(Path(n).resolve()) if n.endswith((".yaml", ".yml")) and Path(n).is_file() else n for n in names]


def _metrics(task_results: dict) -> dict:
    """lm-eval's `metric,filter` keys, without stderr entries; a filter named 'none' is dropped from the key.
    Keys without a filter (alias, sample_len) describe the task, not the model."""
    out = {}
    for key, value in task_results.items():
        if "," not in key or "_stderr" in key or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric, _, filter_name = key.partition(",")
        out[metric if filter_name in ("", "none") else f"{metric} ({filter_name})"] = float(value)
    return out


def prepare_tasks(tasks: list[str]):
    """(task names, lm-eval TaskManager): every name checked before any model is loaded."""
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    names = _task_list(tasks)
    # indexing lm-eval's ~15k built-in tasks takes seconds; task files alone do not need it
    manager = TaskManager(include_defaults=not all(Path(n).is_file() for n in names))
    for name in names:
        if name.endswith((".yaml", ".yml")) and not Path(name).is_file():
            raise UsageError(f"task file '{name}' does not exist: give the path of an lm-eval task YAML")
        if not Path(name).is_file() and name not in manager.all_tasks:
            raise UsageError(f"lm-eval has no task '{name}': see `lm-eval ls tasks`, or give a task YAML path")
    check_task_data(names, manager)
    return names, manager


def check_task_data(names: list[str], manager) -> None:
    """Build the tasks once before any model loads: that is when lm-eval fetches their data, and without a network
    (or offline mode) a task whose data is not cached fails there with a long ConnectionError."""
    from lm_eval.tasks import get_task_dict

    try:
        get_task_dict(names, manager)
    except (ConnectionError, FileNotFoundError) as error:
        raise UsageError(f"lm-eval could not get the data of --tasks {','.join(names)} ({error}): its data must be "
                         f"cached to run offline (run it once with a network), or give a task YAML over local "
                         f"files; IFEval runs offline as --tasks ifeval") from None


def run_tasks(model_source: str, prepared, chat: bool, device: str, dtype: str, batch_size: int = 8,
              limit: int | None = None, num_fewshot: int | None = None) -> dict:
    """{task: {metric: value}} from lm-eval's own runner on the model directory or hub id."""
    import lm_eval

    names, manager = prepared
    results = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": model_source, "dtype": dtype}, tasks=names, device=device,
        batch_size=batch_size, limit=limit, num_fewshot=num_fewshot, apply_chat_template=chat,
        fewshot_as_multiturn=chat, task_manager=manager, log_samples=False, bootstrap_iters=0,
    )
    return {task: _metrics(values) for task, values in (results or {}).get("results", {}).items()}
