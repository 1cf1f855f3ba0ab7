"""Output directories: refuse to clobber, delete only what smolalign wrote, one run at a time, atomic writes.

A run's directory is "ours" when it holds the run record (`smolalign_run.json`) or the marker that the one-shot
writers (model init/import, tokenizer train) leave (`.smolalign`). A directory that holds nothing but a failed
run's record is not in use: the corrected command may reuse it without `--overwrite`.

`--overwrite` never deletes first. The new output is built in a sibling directory (`.NAME.overwrite`) and swapped in
by `Replacement.commit()` once it holds a first complete result (a checkpoint, a committed shard, the finished
files); the old output then stays set aside (`.NAME.old`) until the new run's final save (`Replacement.finish()`).
A failed or interrupted run before the swap removes only the sibling; one after it leaves both, and its last line
(`stop_notes`) says where each is, how to continue the new run and how to keep the old one. The swap is one
`renameat2(RENAME_EXCHANGE)` where the kernel has it, so no moment exists without an output at the path.

Every writer holds the output's lock (locks.py). A one-shot writer (tokenizer train, model init/import) checks
its output at the start and swaps its result in at the end: `atomic_directory` takes the lock, then refuses to
swap over anything another run wrote there meanwhile (the state `check_output_dir` saw is kept for this).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import UsageError
from .locks import OutputLock, check_not_in_use, claim, output_lock, release_claims  # noqa: F401 (refilter's)
from .stops import LAST_STOP, human, resume_command

RUN_FILE = "smolalign_run.json"
MARKER_FILE = ".smolalign"  # left by the one-shot writers, which keep no run record
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
    if existing == resolved and not existing.is_dir():
        raise UsageError(f"{what} '{path}' is a file, not a directory: give a directory, e.g. runs/my-run")
    if existing != resolved and not existing.is_dir():
        raise UsageError(f"{what} '{path}' lies under '{existing}', which is a file: choose another directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} '{path}' cannot be written ('{existing}' is read-only or not yours): choose "
                         f"another directory")
    return path


_SEEN: dict[Path, tuple | None] = {}  # output -> its state when check_output_dir passed it (atomic_directory's)
_NOTES: list[str] = []  # what a stopped run leaves to its last line (stop_notes)


def _state(path: Path) -> tuple | None:
    """What identifies an output's content: its inode and its entries' names and times (None: absent)."""
    try:
        inode = path.stat().st_ino
        entries = sorted((c.name, c.lstat().st_mtime_ns) for c in path.iterdir()) if path.is_dir() else []
    except FileNotFoundError:
        return None
    return inode, tuple(entries)


def disk_size(path: Path) -> int:
    return sum(f.lstat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def stop_notes() -> str:
    """What the runs that stopped in this process left where (for the error line); emptied once read."""
    notes = "; ".join(_NOTES)
    _NOTES.clear()
    return notes


def check_file_output(output: str) -> None:
    """A command that writes one file (model export): its folder exists, checked before any model loads."""
    if not str(output).strip():
        return  # the command's own check names an empty path
    folder = Path(output).expanduser().parent
    if not folder.exists():
        raise UsageError(f"--output '{output}': the folder '{folder}' does not exist: create it first (mkdir -p "
                         f"{folder}), or give a path in an existing folder")


def is_ours(path: Path) -> bool:
    return (path / RUN_FILE).is_file() or (path / MARKER_FILE).is_file()


def only_a_record(path: Path) -> bool:
    """Nothing but a run record (e.g. a run that failed before it trained): nothing to lose."""
    return path.is_dir() and {p.name for p in path.iterdir()} <= RECORD_FILES


def claim_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """`check_output_dir` for a one-shot writer (tokenizer train, model init/import), which then holds the output's
    lock until its `atomic_directory` swaps the result in: a second run into it is refused at once."""
    path = check_output_dir(path, overwrite)
    claim(path)
    remove_stale_partials(path)  # before the model loads: the room they take may be needed
    return path


def remove_stale_partials(path: Path) -> None:
    """What a writer killed while saving into `path` left beside it (`.NAME.*.partial`), removed and named. Only
    under `path`'s lock: a running writer holds it while its partial exists."""
    import click

    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.partial"):
        click.echo(f"note: removed {stale} ({human(disk_size(stale))}), left by a run that was stopped", err=True)
        shutil.rmtree(stale, ignore_errors=True)


def check_output_dir(path: str | os.PathLike, overwrite: bool, resuming: bool = False,
                     can_resume: bool = False) -> Path:
    """Check, before anything is written, that the run may use `path` (`can_resume`: the command has --resume)."""
    path = check_writable(path)
    check_not_in_use(path)
    _SEEN[path.resolve()] = _state(path)
    if resuming and (not path.is_dir() or not any(path.iterdir())):
        why = "it is empty" if path.is_dir() else "no such directory"
        raise UsageError(f"--resume: there is no run in '{path}' ({why}): check the path, or leave out --resume to "
                         f"start a new run")
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
                             f"is not replaced: choose another output directory, or empty it yourself")
        old = set_aside_path(path)
        if old.exists():
            go_on = "with --resume" if can_resume else "(the same command without --overwrite)"
            raise UsageError(f"--overwrite: '{old}' still holds the output an earlier --overwrite set aside (that run "
                             f"stopped before its final save): continue that run {go_on}, or remove '{old}' (or "
                             f"move it back over '{path}') first")
        return path
    resume = ", --resume to continue it" if can_resume else ""
    raise UsageError(f"output directory '{path}' is not empty: pass --overwrite to replace it{resume}, or choose "
                     f"another")


def empty_directory(path: Path) -> None:
    """Delete what is inside (the directory itself stays, so a lock held on it stays held)."""
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def staging_path(target: Path) -> Path:
    """Where `--overwrite` builds the new output: a hidden sibling, on the same filesystem so the swap is a rename."""
    return target.with_name(f".{target.name}.overwrite")


def set_aside_path(target: Path) -> Path:
    """Where the old output waits, once an `--overwrite` run has swapped in, until that run's final save."""
    return target.with_name(f".{target.name}.old")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where the system lacks it."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0
    return done


class Replacement:
    """Where a command writes its output, and the steps that make it the output.

    - `--overwrite` of a non-empty directory (`check_output_dir` accepted it): `path` is the hidden sibling;
      `commit()` swaps it in and sets the old output aside, `finish()` (the final save) removes the old output,
      `discard()` before the swap removes the sibling and leaves the old output as it was.
    - A fresh output (absent, empty, or holding only a failed run's record): `path` is the output itself. With
      `remove_unfinished`, it is this run's own partial work until `commit()`, and `discard()` removes it (a
      training run that stopped before its first checkpoint left nothing to resume).
    - `resume`: the output is the run's already; nothing is ever removed (but an old output an earlier
      `--overwrite` set aside, at its final save).

    `lock()` takes the output's lock (so no other run uses the old output meanwhile), `open()` then the sibling's,
    which becomes the output's lock after the swap (a flock follows the directory, not its name).
    """

    def __init__(self, target: str | os.PathLike, overwrite: bool, resume: bool = False,
                 remove_unfinished: bool = False):
        self.target = Path(target)
        self.resume = resume
        self.replacing = bool(overwrite) and not resume and self.target.is_dir() and any(self.target.iterdir())
        self.path = staging_path(self.target) if self.replacing else self.target
        self.committed = resume or (not self.replacing and not remove_unfinished)
        self.finished = False
        self.made_target = not self.target.exists()
        self._locks: list[OutputLock] = []

    def lock(self) -> None:
        """Lock the existing output (writes nothing): before the checks that load models and data."""
        if not self._locks:
            held = OutputLock(self.target)
            if held.acquire():
                self._locks.append(held)

    def open(self) -> Path:
        """The first write: make the directory the run writes to (a stale sibling of a killed run is removed)."""
        import click

        self.lock()
        held_from_start = bool(self._locks)
        if self.replacing:
            if self.path.exists():
                shutil.rmtree(self.path)  # left by a run killed before its swap: we hold the output's lock
            self.path.mkdir(parents=True)
            self.path.chmod(0o777 & ~_umask())
            click.echo(f"note: --overwrite keeps the old output ({human(disk_size(self.target))} in {self.target}) "
                       f"until this run's final save: the disk holds both meanwhile", err=True)
        else:
            self.path.mkdir(parents=True, exist_ok=True)
        if all(lock.path != self.path for lock in self._locks):
            held = OutputLock(self.path)
            held.acquire()
            self._locks.append(held)
        if not self.replacing and not self.resume and not held_from_start and not only_a_record(self.target) \
                and any(self.target.iterdir()):
            self.committed = True  # another run's output: discard() must not touch it
            raise UsageError(f"another run wrote '{self.target}' while this one was starting: nothing of it was "
                             f"touched; look at it, then run again (--overwrite replaces it)")
        old = set_aside_path(self.target)
        if not self.replacing and old.is_dir():
            click.echo(f"note: '{old}' holds the output an --overwrite set aside; it is removed at this run's final "
                       f"save", err=True)
        return self.path

    def commit(self) -> Path:
        """Make what was written the output (idempotent); an old output is set aside until `finish()`."""
        if self.committed:
            return self.target
        if self.replacing:
            old = set_aside_path(self.target)
            if _exchange(self.path, self.target):
                self.path.rename(old)  # the old output now lies at the sibling's name
            else:
                self.target.rename(old)
                self.path.rename(self.target)
            for held in [lock for lock in self._locks if lock.path == self.target]:
                held.release()  # that lock was on the old output's directory, now set aside
                self._locks.remove(held)
            for held in self._locks:
                held.path = self.target
        self.path, self.committed = self.target, True
        return self.target

    def finish(self) -> Path:
        """The run's final save is written: it is the output, and an old output set aside for it is removed."""
        self.commit()
        old = set_aside_path(self.target)
        if old.is_dir() and is_ours(old):
            shutil.rmtree(old)
        self.finished = True
        return self.target

    def discard(self) -> None:
        """After a failure or an interrupt: remove only this run's own partial work. After the swap both outputs
        stay, and the run's last line says where (`stop_notes`)."""
        if self.committed:
            old = set_aside_path(self.target)
            if not self.finished and old.is_dir():
                _NOTES.append(f"the new run in '{self.target}' is unfinished (continue it: "
                              f"{resume_command(kept=True)}); the old output is kept in '{old}' (to keep it instead: "
                              f"rm -r '{self.target}' && mv '{old}' '{self.target}')")
            if self.made_target and self.target.is_dir() and not any(self.target.iterdir()):
                self.target.rmdir()
            LAST_STOP["kept"] = self.target.is_dir()
            return
        LAST_STOP["kept"] = False
        if self.replacing:
            shutil.rmtree(self.path, ignore_errors=True)
        elif self.made_target:
            shutil.rmtree(self.target, ignore_errors=True)
        elif self.target.is_dir():
            empty_directory(self.target)  # it held nothing of value before this run (check_output_dir said so)
        self.path = self.target

    def release(self) -> None:
        for held in self._locks:
            held.release()
        self._locks.clear()


@contextlib.contextmanager
def staged_output(target: str | os.PathLike, overwrite: bool) -> Iterator[Replacement]:
    """For a command that writes its whole output in one go: the block writes into `out.open()`; on success the
    result is swapped in, on any failure or interrupt only the block's own work is removed."""
    out = Replacement(target, overwrite)
    try:
        yield out
    except BaseException:
        out.discard()
        out.release()
        raise
    out.finish()
    out.release()


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, mark: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory; on success it replaces `path` in one swap, on failure it is removed.
    The output's lock is held throughout; a `.NAME.*.partial` a killed run left is removed first, and an output
    that another run wrote since `check_output_dir` passed it is refused, not swapped over.
    `mark`: a writer with no run record leaves the marker that makes the result smolalign's (--overwrite may
    replace it)."""
    path = Path(path).expanduser()
    made = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = OutputLock(path)
    lock.acquire()
    try:
        seen = _SEEN.pop(path.resolve(), "unchecked")
        if seen != "unchecked" and any(path.iterdir()) and _state(path) != seen:
            raise UsageError(f"another run wrote '{path}' while this one worked: nothing of it was replaced; look "
                             f"at it, then run again (--overwrite replaces it)")
        remove_stale_partials(path)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the result should look like any other
        try:
            yield staging
            if mark:
                (staging / MARKER_FILE).write_text("written by smolalign\n")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if _exchange(staging, path):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            staging.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        made = False
    finally:
        lock.release()
        release_claims(path)
        if made and path.is_dir() and not any(path.iterdir()):
            path.rmdir()


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
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes files private (0600); respect the umask like any other file
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk or a stop: no torn temporary is left to make the directory look foreign
        Path(tmp).unlink(missing_ok=True)
        raise
