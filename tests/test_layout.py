"""The package's layout rules, read from the source: imports point down, no circle, no command imports another."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "smolalign"
# Each command's room; a module belongs to the longest room its name starts with.
COMMANDS = ("train.sft", "train.dpo", "train.pretrain", "gen", "eval", "chat", "demo", "plan")
TOP = {"cli", "demo"}  # the CLI and the demo call every command
# `smolalign plan` costs a training run: it reads the training commands' own facts (train/run.py's TrainingCommand)
READS = {"plan": {"train.sft", "train.dpo", "train.pretrain"}}
# Packages in a command's folder that other commands may use: leaves that import nothing of smolalign's outside
# themselves (checked below). gen/constraints holds IFEval's checkers: gen labels data with them, eval scores IFEval.
SHARED_LEAVES = ("gen.constraints",)


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imports() -> dict[str, set[str]]:
    """Every smolalign module a module imports, at the top or inside a function (a late import is still a use)."""
    modules = {module_name(p)[0] for p in PACKAGE.rglob("*.py")}
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name, is_package = module_name(path)
        package = name.split(".") if is_package else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("smolalign"):
                base = node.module
            else:
                continue
            for alias in node.names:  # `from . import metrics` names a module; `from .x import f` a function
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {m for m in found if m != name}
    return graph


def in_package(short: str, package: str) -> bool:
    return short == package or short.startswith(package + ".")


def room(module: str) -> str | None:
    short = module.removeprefix("smolalign.")
    if any(in_package(short, leaf) for leaf in SHARED_LEAVES):
        return None
    hits = [c for c in COMMANDS if short == c or short.startswith(c + ".")]
    return max(hits, key=len) if hits else None


def test_no_import_circle():
    graph = imports()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_commands_never_import_each_other_and_lower_floors_never_import_a_command():
    wrong = []
    for module, targets in imports().items():
        short = module.removeprefix("smolalign.").split(".")[0]
        if short in TOP:
            continue
        for target in targets:
            theirs, ours = room(target), room(module)
            if theirs is not None and theirs != ours and theirs not in READS.get(ours, ()):
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_training_commands_read_top_to_bottom_and_train_never_imports_plan():
    """Each training command lists its run's steps in its own `run_*` function (train/run.py offers them), and
    the run machinery never reaches up into `smolalign plan`."""
    for path, function in (("train/sft.py", "run_sft"), ("train/dpo.py", "run_dpo"),
                           ("train/pretrain/command.py", "run_pretrain")):
        tree = ast.parse((PACKAGE / path).read_text(encoding="utf-8"))
        body = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function)
        called = {node.func.attr for node in ast.walk(body) if isinstance(node, ast.Call)
                  and isinstance(node.func, ast.Attribute)}
        assert {"start", "load_model", "read_data", "check_resumable", "build", "open", "train", "finish"} <= called, \
            f"{path}::{function} calls {sorted(called)}"
    upward = [f"{module} imports {target}" for module, targets in imports().items()
              if module.startswith("smolalign.train") for target in targets if target.startswith("smolalign.plan")]
    assert not upward, upward


def test_shared_leaves_import_nothing_of_smolalign_outside_themselves():
    wrong = [f"{module} imports {target}" for module, targets in imports().items() for leaf in SHARED_LEAVES
             if in_package(module.removeprefix("smolalign."), leaf)
             for target in targets if not in_package(target.removeprefix("smolalign."), leaf)]
    assert not wrong, wrong


def test_every_folder_says_what_lives_there_and_files_stay_small():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and "import" in doc.lower(), f"{init} needs a docstring saying what lives there and what it imports"
    long = [f"{p.relative_to(PACKAGE)}: {n}" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500]
    assert not long, long
