"""Find what the project ships (recipes, generation specs) in a checkout and in an installed wheel alike."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError

_PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """`recipes` or `data_gen`: inside the package when installed from a wheel, beside it in a checkout."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"the shipped '{name}' folder is missing from this installation of smolalign")


def shipped_recipes() -> list[Path]:
    root = shipped_dir("recipes")
    return sorted(p for p in root.rglob("*.yaml") if "accelerate" not in p.relative_to(root).parts)


def resolve_recipe(name_or_path: str) -> Path:
    """A path that exists is used as is; a bare name such as `sft` or `debug/sft` is the shipped recipe."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    root = shipped_dir("recipes")
    stem = name_or_path.removeprefix("recipes/").removesuffix(".yaml")
    shipped = root / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(str(p.relative_to(root).with_suffix("")) for p in shipped_recipes())
    raise UsageError(f"recipe '{name_or_path}' not found: give a path to a YAML file or a shipped name ({names})")
