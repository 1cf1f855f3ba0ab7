"""Output directories: refuse to clobber, delete only what smolalign wrote, one run at a time, atomic writes.

A run's directory is "ours" when it holds the run record (`smolalign_run.json`). `--overwrite` empties only such
a directory (or an empty one), never the working directory or anything above it. A directory that holds nothing
but a failed run's record is not in use: the corrected command may reuse it without `--overwrite`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError

RUN_FILE = "smolalign_run.json"
RECORD_FILES = {RUN_FILE, "recipe.yaml"}
SYSTEM_ROOTS = ("/proc", "/sys", "/dev")


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """The place can be created and written: not empty, not under a file, not a system tree, not read-only."""
    if str(path).strip() == "":
        raise UsageError(f"the {what} directory is empty: give a path, e.g. runs/my-run")
    path = Path(path).expanduser()
    resolved = path.resolve()
    for root in SYSTEM_ROOTS:
        if str(resolved) == root or str(resolved).startswith(root + "/"):
            raise UsageError(f"{what} '{path}' is inside {root}, a system tree: choose a directory of your own")
    existing = _nearest_existing(resolved)
    if existing != resolved and not existing.is_dir():
        raise UsageError(f"{what} '{path}' lies under '{existing}', which is a file: choose another directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} '{path}' cannot be written ('{existing}' is read-only or not yours): choose "
                         f"another directory")
    return path


def is_ours(path: Path) -> bool:
    return (path / RUN_FILE).is_file()


def only_a_record(path: Path) -> bool:
    """Nothing but a run record (e.g. a run that failed before it trained): nothing to lose."""
    return path.is_dir() and {p.name for p in path.iterdir()} <= RECORD_FILES


def check_output_dir(path: str | os.PathLike, overwrite: bool, resuming: bool = False) -> Path:
    """Check, before anything is written, that the run may use `path`."""
    path = check_writable(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"output '{path}' exists and is a file: choose another output directory")
    if not path.is_dir() or not any(path.iterdir()) or only_a_record(path):
        return path
    if resuming:
        if not is_ours(path):
            raise UsageError(f"--resume: '{path}' holds files but no smolalign run ({RUN_FILE} is missing): "
                             f"resume in a run's output directory, or choose an empty one")
        return path
    if overwrite:
        cwd = Path.cwd().resolve()
        resolved = path.resolve()
        if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
            raise UsageError(f"--overwrite would delete '{path}', which holds the working directory or your home: "
                             f"choose a run directory of its own")
        if not is_ours(path):
            raise UsageError(f"--overwrite: '{path}' was not written by smolalign ({RUN_FILE} is missing), so it "
                             f"is not deleted: choose another output directory, or empty it yourself")
        return path
    raise UsageError(f"output directory '{path}' is not empty: pass --overwrite to replace it, --resume to continue "
                     f"it, or choose another")


def empty_directory(path: Path) -> None:
    """Delete what is inside (the directory itself stays, so a lock held on it stays held)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


class OutputLock:
    """One run at a time in an output directory: an exclusive flock on the directory itself, held for the run's
    life. It writes nothing, so it can be taken before every check has passed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> bool:
        """Lock the directory if it exists; False when it does not exist yet (take it again after mkdir)."""
        import fcntl

        if self.fd is not None:
            return True
        if not self.path.is_dir():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"another smolalign process is using '{self.path}': wait for it to finish, or choose "
                             f"another output directory") from None
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[OutputLock]:
    """Create `path` if needed and hold its lock for the block (for commands that write as they go, e.g. gen)."""
    lock = OutputLock(Path(path))
    Path(path).mkdir(parents=True, exist_ok=True)
    lock.acquire()
    try:
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one rename, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should look like any other directory
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


def respect_umask(root: str | os.PathLike) -> None:
    """Files that a library wrote private (transformers saves weights through a 0600 temporary file) get the
    mode every other file of the run has."""
    wanted = 0o666 & ~_umask()
    for path in Path(root).rglob("*"):
        if path.is_file() and not path.is_symlink() and (path.stat().st_mode & 0o777) == 0o600 != wanted:
            path.chmod(wanted)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so that it is either the old content or the new one, never a torn mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes files private (0600); respect the umask like any other file
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
