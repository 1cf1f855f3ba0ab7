"""One writer at a time: an exclusive `flock` on the output directory itself (or, for a command that writes one file,
on a lock file beside it), held for the run's life.

Every command that writes an output takes it (sft, dpo, pretrain, gen, gen --refilter, eval, demo, tokenizer train,
model init/import/export). A second run into a held place is refused in one line naming the holder's PID, which
the kernel lists in /proc/locks (the lock itself writes nothing, so it can be taken before every check has passed).
The kernel drops a flock when its process dies, so a killed run never leaves a place locked.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError


def holder_pid(path: Path) -> int | None:
    """The process holding a flock on `path` (its device and inode matched in /proc/locks), where Linux says."""
    try:
        stat = os.stat(path)
        table = Path("/proc/locks").read_text()
    except OSError:
        return None
    wanted = (os.major(stat.st_dev), os.minor(stat.st_dev), stat.st_ino)
    for line in table.splitlines():  # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF" ("->": a waiter)
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue
        try:
            major, minor, inode = fields[5].split(":")
            found = (int(major, 16), int(minor, 16), int(inode))
        except ValueError:
            continue
        if found == wanted:
            return int(fields[4])
    return None


def in_use_message(path: Path, what: str = "output directory", shown: Path | None = None) -> str:
    """`path` is locked by another process; `shown` is what the user named (a file whose lock file is `path`)."""
    pid = holder_pid(path)
    who = f"another smolalign process (pid {pid})" if pid else "another smolalign process"
    return f"{who} is writing the {what} '{shown or path}': wait for it to finish (or stop it), or choose another"


_held: dict[tuple[int, int], list] = {}  # (device, inode) -> [fd, users]: this process's locks, shared by its users


class OutputLock:
    """An exclusive flock on a directory (or file), taken without blocking. Two users in one process share it (a
    second flock from the same process on another descriptor would refuse the process itself)."""

    def __init__(self, path: Path, what: str = "output directory"):
        self.path = Path(path)
        self.what = what
        self.fd: int | None = None
        self.key: tuple[int, int] | None = None

    def acquire(self) -> bool:
        """Lock the place if it exists; False when it does not exist yet (take it again after mkdir)."""
        import fcntl

        if self.fd is not None:
            return True
        if not self.path.exists():
            return False
        fd = os.open(self.path, os.O_RDONLY)
        stat = os.fstat(fd)
        key = (stat.st_dev, stat.st_ino)
        if key in _held:
            os.close(fd)
            _held[key][1] += 1
        else:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise UsageError(in_use_message(self.path, self.what)) from None
            _held[key] = [fd, 1]
        self.fd, self.key = _held[key][0], key
        return True

    def release(self) -> None:
        if self.fd is None:
            return
        entry = _held.get(self.key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                os.close(entry[0])
                del _held[self.key]
        self.fd = self.key = None


_claims: list[tuple[OutputLock, bool]] = []  # outputs a one-shot writer checked and holds: (lock, made by it)


def claim(path: Path) -> None:
    """Hold `path`'s lock from the check on (making the directory if needed), so that a second run into it is
    refused at its start, not at its end. Released by `release_claims` (the writer's swap, or the command's end)."""
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(path)
    try:
        lock.acquire()
    except UsageError:
        if made:
            path.rmdir()
        raise
    _claims.append((lock, made))


def release_claims(path: Path | None = None) -> None:
    """Release the claims on `path` (all of them with None); a directory a claim made and nothing filled goes."""
    for lock, made in [c for c in _claims if path is None or c[0].path == Path(path)]:
        _claims.remove((lock, made))
        lock.release()
        if made and lock.path.is_dir() and not any(lock.path.iterdir()):
            lock.path.rmdir()


def check_not_in_use(path: Path, what: str = "output directory") -> None:
    """Refuse at once, before any model loads, when another run holds `path` (takes the lock and drops it)."""
    probe = OutputLock(path, what)
    if path.is_dir() and probe.acquire():
        probe.release()


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, remove_if_unused: bool = False) -> Iterator[OutputLock]:
    """Create `path` if needed and hold its lock for the block (for commands that write as they go: gen --refilter,
    eval, demo). `remove_if_unused`: a directory this made and the block left empty is removed again."""
    path = Path(path)
    made = not path.exists()
    lock = OutputLock(path)
    path.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
        yield lock
    finally:
        lock.release()
        if made and remove_if_unused and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def lock_file_of(target: Path) -> Path:
    return target.with_name(f".{target.name}.lock")


@contextlib.contextmanager
def file_lock(target: str | os.PathLike) -> Iterator[Path]:
    """For a command whose output is one file (model export): a lock file beside it, `.NAME.lock`, held for the
    block and removed after (one that a killed run left is taken over and removed)."""
    import fcntl

    target = Path(target).expanduser()
    lock = lock_file_of(target) if target.name else None
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except (OSError, TypeError):  # nowhere to write: the command's own checks name the problem
            fd = None
        if fd is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(in_use_message(lock, "output file", shown=target)) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file the previous holder removed as we opened it
            break
        os.close(fd)
    if fd is None:
        yield target
        return
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)


@contextlib.contextmanager
def lock_existing(path: str | os.PathLike, create: bool = False) -> Iterator[None]:
    """Hold the lock of `path` for the block where it is a directory (else nothing: the command's own checks say
    what is wrong with it). `create`: a path not there yet is made and locked, and removed again if left empty."""
    path = Path(path).expanduser()
    made = None
    if create and not path.exists():
        existing = next((p for p in path.parents if p.exists()), None)
        if existing is not None and existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            made = next(p for p in (path, *path.parents) if p.parent == existing)
            path.mkdir(parents=True)
    lock = OutputLock(path)
    if path.is_dir():
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
        if made is not None:
            for leftover in (path, *path.parents):  # what this made and the block left empty
                if not leftover.is_dir() or any(leftover.iterdir()):
                    break
                leftover.rmdir()
                if leftover == made:
                    break
