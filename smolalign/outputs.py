"""Output directories: refuse to clobber, write atomically (a reader never sees half a directory)."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError


def check_output_dir(path: str | os.PathLike, overwrite: bool, resuming: bool = False) -> Path:
    """Refuse an existing non-empty directory unless the user asked to overwrite it or to resume in it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output '{path}' exists and is a file: choose another output directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resuming):
        raise UsageError(f"output directory '{path}' is not empty: pass --overwrite to replace it, or choose another")
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result should look like any other directory
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        path.rename(old)
        staging.rename(path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that it is either the old content or the new one, never a torn mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
