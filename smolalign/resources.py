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


def shipped_recipes(folder: str = "recipes") -> list[Path]:
    root = shipped_dir(folder)
    return sorted(p for p in root.rglob("*.yaml") if "accelerate" not in p.relative_to(root).parts)


def resolve_recipe(name_or_path: str, folder: str = "recipes") -> Path:
    """A path that exists is used as is; a bare name such as `sft` or `debug/sft` is the shipped file."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"recipe '{name_or_path}' is a directory: give a YAML file")
    root = shipped_dir(folder)
    stem = name_or_path.removeprefix(f"{folder}/").removesuffix(".yaml")
    shipped = root / f"{stem}.yaml"
    if shipped.is_file():
        return shipped
    names = ", ".join(str(p.relative_to(root).with_suffix("")) for p in shipped_recipes(folder))
    what = "recipe" if folder == "recipes" else "spec"
    raise UsageError(f"{what} '{name_or_path}' not found: give a path to a YAML file or a shipped name ({names})")


def recipe_writing(output_dir: str) -> tuple[Path, dict] | None:
    """The shipped training recipe whose `training.output_dir` is `output_dir` (a run that a later one starts from,
    such as DPO's `runs/smollm2-1.7b-sft`), with its YAML as written; None when no shipped recipe writes it."""
    import yaml

    try:
        recipes = shipped_recipes()
    except FileNotFoundError:
        return None
    for path in recipes:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        output = ((data.get("training") or {}) if isinstance(data, dict) else {}).get("output_dir")
        if isinstance(output, str) and Path(output) == Path(output_dir) and data.get("recipe"):
            return path, data
    return None
