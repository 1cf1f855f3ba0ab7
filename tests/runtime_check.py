"""Does smolalign run on its runtime dependencies alone? Run it where the dev extra is not installed
(`make check-runtime`; CI does before the suite): `python tests/runtime_check.py`.

The dev install pulls in much more than smolalign declares (lm-eval brings nltk, scikit-learn...), so a
dependency the code uses but pyproject forgets passes the suite and breaks a user's `pip install smolalign`.
This check imports every smolalign module (walking the package, so a new module is covered); every
third-party module the code imports anywhere, also inside functions, where the commands import their heavy
libraries late, and the names taken from it; and the few modules a library imports for the code (USED_THROUGH).
Then it runs `smolalign --help` and each command's `--help`. Modules of an optional extra are skipped (OPTIONAL).
It needs nothing beyond the runtime install: no pytest. It prints each failure and a last line
`N passed, N failed`, and exits 1 on any failure.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import smolalign

# Top-level modules that only an optional extra installs (pyproject's [project.optional-dependencies]); the code
# imports them only on the path that needs the extra and says how to install it.
OPTIONAL = {"lm_eval": "eval", "ray": "ray", "faiss": "quality"}
# Runtime needs that the code never imports itself: a library it calls imports them late, when the path runs.
USED_THROUGH = {
    "datasketch": "distilabel's MinHashDedup, gen's MinHash near-duplicate pass (gen/quality/dedup.py)",
    "fastapi": "`transformers serve`, the local server of demo and gen (serve.py)",
    "uvicorn": "`transformers serve`, the local server of demo and gen (serve.py)",
}


def package_modules() -> list[str]:
    return [smolalign.__name__] + sorted(m.name for m in pkgutil.walk_packages(smolalign.__path__, "smolalign."))


def third_party_imports() -> dict[tuple[str, str], set[str]]:
    """(module, name taken from it, "" for a plain import) -> the smolalign files that import it, for every
    absolute import of a module outside smolalign and the standard library, at any depth of the code."""
    root = Path(smolalign.__file__).parent
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                pairs = [(alias.name, "") for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                pairs = [(node.module, alias.name) for alias in node.names]
            else:
                continue
            for module, name in pairs:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "smolalign":
                    found.setdefault((module, name), set()).add(str(path.relative_to(root.parent)))
    return found


def check_import(module: str, name: str) -> str | None:
    """None when `from module import name` (or `import module`) works here, else why not."""
    try:
        imported = importlib.import_module(module)
        if name and not hasattr(imported, name) and importlib.util.find_spec(f"{module}.{name}") is None:
            return f"{module} has no {name}"
    except Exception as error:  # an import can fail in many ways (a missing dependency of a dependency too)
        return f"{type(error).__name__}: {error}"
    return None


def command_paths(group=None, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the CLI, as the words that name it (`()` is `smolalign` itself)."""
    import click

    from smolalign.cli import main

    group = group or main
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += command_paths(command, prefix + (name,))
        else:
            paths.append(prefix + (name,))
    return paths


def check_help(words: tuple[str, ...]) -> str | None:
    script = Path(sys.executable).parent / "smolalign"  # the installed entry point, as a user runs it
    command = [str(script)] if script.exists() else [sys.executable, "-m", "smolalign.cli"]
    result = subprocess.run([*command, *words, "--help"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or "Usage:" not in result.stdout:
        return f"exit {result.returncode}: {(result.stderr or result.stdout).strip()[-1500:]}"
    return None


def main() -> int:
    warnings.simplefilter("ignore")  # libraries warn at import (pydantic, distilabel); only a failure matters here
    checks = [(f"import {m}", lambda m=m: check_import(m, "")) for m in package_modules()]
    for (module, name), files in sorted(third_party_imports().items()):
        if module.split(".")[0] in OPTIONAL:
            continue
        label = f"from {module} import {name}" if name else f"import {module}"
        checks.append((f"{label}  ({', '.join(sorted(files))})", lambda m=module, n=name: check_import(m, n)))
    checks += [(f"import {m}  (used by {why})", lambda m=m: check_import(m, "")) for m, why in USED_THROUGH.items()]
    try:
        paths = command_paths()
    except Exception:  # the CLI itself does not import: `smolalign --help` below says why
        paths = [()]
    checks += [(" ".join(("smolalign", *words, "--help")), lambda w=words: check_help(w))
               for words in paths]
    failed = 0
    for label, check in checks:
        problem = check()
        if problem:
            failed += 1
            print(f"FAILED {label}: {problem}", flush=True)
    print(f"{len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
