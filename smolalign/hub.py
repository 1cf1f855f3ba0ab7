"""Where a model, tokenizer or dataset name points: a local path, a preset, or the hub, sorted out in seconds.

Without network, huggingface_hub retries every request with backoff (~25 s) before its error. So a name that is
not on disk is sorted out first: meant as a local path (fail now, and say what would create it), a misspelt
preset, or a hub id; and the hub is asked once, with a short timeout, whether it answers at all. When it does
not, the process goes offline: a cached copy still loads at once, anything else fails at once in one line.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from .errors import UsageError
from .model.presets import PRESETS

HUB_PROBE_SECONDS = 3.0
_hub: dict = {}


def looks_like_local_path(name: str) -> bool:
    """A hub id is `name` or `org/name`; anything else with slashes, dots or ~ in front is meant as a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _go_offline() -> None:
    """Make every hub client of this process (and of processes it starts) read the cache only."""
    import sys

    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    os.environ["HF_HUB_OFFLINE"] = "1"
    if "datasets.config" in sys.modules:  # datasets copies the flag at import
        sys.modules["datasets.config"].HF_HUB_OFFLINE = True


def hub_reachable() -> bool:
    """Whether the hub answers within a few seconds (asked once per process). When it does not, the process
    switches to offline mode, so loaders find a cached copy at once, or fail at once."""
    if "reachable" not in _hub:
        import threading

        from huggingface_hub import constants

        answered: list[bool] = []
        if not constants.HF_HUB_OFFLINE:

            def probe() -> None:
                from huggingface_hub.utils import get_session

                try:
                    get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_SECONDS)
                    answered.append(True)
                except Exception:  # any failure to get an answer, whatever the client raises
                    pass

            # a thread bounds name resolution too, which a socket timeout does not cover
            worker = threading.Thread(target=probe, daemon=True)
            worker.start()
            worker.join(HUB_PROBE_SECONDS + 0.5)
            if not answered:
                _hub["why"] = f"the hub ({constants.ENDPOINT}) cannot be reached"
                _go_offline()
        else:
            _hub["why"] = "HF_HUB_OFFLINE is set"
        _hub["reachable"] = bool(answered)
    return _hub["reachable"]


def _recipe_writing(name: str) -> str | None:
    """The shipped recipe whose output_dir is `name`, as the command that writes it."""
    from .resources import recipe_writing, shipped_dir

    found = recipe_writing(name)
    if found is None:
        return None
    path, data = found
    return f"smolalign {data['recipe']} {path.relative_to(shipped_dir('recipes')).with_suffix('')}"


def _meant_as_local(name: str) -> bool:
    """`runs/x`, `./x`, or `dir/x` where `dir` exists here: a path, whatever the hub might hold."""
    first = name.split("/", 1)[0]
    return (looks_like_local_path(name) or "/" in name and (first == "runs" or Path(first).is_dir())
            or _recipe_writing(name) is not None)


def missing_path_error(kind: str, name: str) -> UsageError:
    """A local path that does not exist, with what would create it, or the nearest name beside it."""
    command = _recipe_writing(name)
    if command:
        return UsageError(f"{kind} '{name}' does not exist yet: run `{command}` first (it writes {name})")
    path = Path(name).expanduser()
    if path.parent.is_dir():
        siblings = [p.name for p in path.parent.iterdir()]
        near = difflib.get_close_matches(path.name, siblings, n=1, cutoff=0.8)
        if near:
            return UsageError(f"{kind} '{name}' does not exist: did you mean {path.parent / near[0]}?")
    if name.split("/", 1)[0] == "runs" and not kind.startswith("dataset"):
        return UsageError(f"{kind} '{name}' does not exist: train it first (e.g. `smolalign sft RECIPE "
                          f"training.output_dir={name}`), or check the path")
    return UsageError(f"{kind} '{name}' does not exist: check the path, or give a hub id (org/name)")


def _valid_hub_id(name: str) -> bool:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def offline(name: str) -> bool:
    """A hub id that cannot be read here because the hub does not answer (rather than a wrong name)."""
    return not looks_like_local_path(name) and not Path(name).expanduser().exists() and not hub_reachable()


def offline_error(kind: str, name: str) -> UsageError:
    """Only after `hub_reachable()` said no."""
    return UsageError(f"{kind} '{name}' is neither on disk nor in the hub cache, and {_hub['why']}: give a local "
                      f"path, or retry with network access")


def check_hub_name(kind: str, name: str, cache_files: tuple[str, ...] = ()) -> None:
    """For a name that is not on disk: refuse a missing local path, a misspelt preset or an impossible hub id;
    with the hub out of reach, refuse a hub id none of whose `cache_files` is cached. At most a few seconds."""
    if _meant_as_local(name):
        raise missing_path_error(f"{kind} path", name)
    valid = _valid_hub_id(name)
    if kind == "model" and "/" not in name:
        near = difflib.get_close_matches(name.lower(), list(PRESETS), n=1, cutoff=0.6)
        if near or not valid or name.lower().startswith("smollm"):
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise UsageError(f"unknown preset '{name}'{hint}: choose one of {', '.join(PRESETS)}, or give a local "
                             f"directory or a hub id such as HuggingFaceTB/SmolLM2-135M")
    if not valid:
        raise UsageError(f"{kind} '{name}' is neither an existing path nor a valid hub id (org/name): check it")
    if cache_files and not hub_reachable():
        from huggingface_hub import try_to_load_from_cache

        if not any(isinstance(try_to_load_from_cache(name, file), str) for file in cache_files):
            raise offline_error(kind, name)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def load_error(kind: str, name: str, error: Exception) -> UsageError:
    """A loader's exception as one line: a local directory that is not what it should be, or a hub id."""
    if Path(name).expanduser().exists():
        return UsageError(f"{kind} directory '{name}' could not be read ({_first_line(error)}): give a directory "
                          f"written by smolalign or `save_pretrained`")
    if not hub_reachable():
        return offline_error(kind, name)
    return UsageError(f"{kind} '{name}' could not be loaded from the hub ({type(error).__name__}: "
                      f"{_first_line(error)}): check the hub id, or give an existing local directory")
