"""How a run ends when something outside it stops it: ctrl-C, SIGTERM (what schedulers and `kill` send), a full disk
or a file size limit. Each ends in one line (cli.py prints it), after the same cleanup as any failure.

- SIGTERM runs whatever ctrl-C runs at that moment (our KeyboardInterrupt, or distilabel's graceful stop), so a
  killed run cleans up as an interrupted one and exits with the same code (130). Forked workers get the default
  back: distilabel stops its pool with SIGTERM, and a worker must then just end.
- A write that fails for want of space (ENOSPC, EDQUOT) or past `ulimit -f` (EFBIG) is named with the path, the
  space there, and what the run needs where the command said (`expect_space`). Libraries wrap the OS error (torch's
  "file write failed", safetensors' IoError), so their messages are read too.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import threading
from pathlib import Path

REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is used up",
           errno.EFBIG: "the file size limit (ulimit -f) was reached"}
# how the libraries that write our files say it, without the errno
TEXTS = {"no space left on device": errno.ENOSPC, "disk quota exceeded": errno.EDQUOT,
         "file too large": errno.EFBIG}
# short writes that say no more (torch's zip writer, numpy's tofile): a full disk, or the file size limit if one is set
SHORT_WRITES = re.compile(r"file write failed|\d+ requested and \d+ written")

_expected: dict = {}  # what the running command said it needs: {"bytes": int, "what": str, "path": Path}
_in_threads: list[BaseException] = []  # disk errors that ended a library's thread (distilabel's writers)
_installed: dict = {}  # the fork hook, registered once a process


LAST_STOP: dict = {}  # whether the last run that stopped kept its output (so --resume continues it)


def human(size: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"


def handle_sigterm() -> None:
    """SIGTERM as ctrl-C, in this process only (not in the workers it forks)."""
    if threading.current_thread() is not threading.main_thread():
        return
    main_pid = os.getpid()

    def on_term(signum, frame):
        if os.getpid() != main_pid:  # a forked worker that kept our handler
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    if not _installed.get("fork"):
        os.register_at_fork(after_in_child=_default_sigterm)
        _installed["fork"] = True


def exit_promptly(code: int) -> None:
    """After ctrl-C, once the run has cleaned up and said so: end the process now. The libraries' own teardown at
    exit (torch, distilabel, datasets) takes seconds on a busy machine, and the user asked to stop. Only in a
    process of our own (real standard streams): a caller's process (a test's CliRunner) just gets SystemExit."""
    import io
    import sys

    try:
        sys.stdout.fileno()
        sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _default_sigterm() -> None:
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except ValueError:  # not the main thread of the child
        pass


def expect_space(path, size: int = 0, what: str = "") -> None:
    """The command is about to write `what` (about `size` bytes, 0: unknown) under `path`: said if the disk runs
    out."""
    _expected.update(path=Path(path), bytes=int(size), what=what)


def watch_threads() -> None:
    """A disk error that ends one of a library's threads (distilabel writes its cache from one) is kept for the
    run's last line instead of printed as a traceback; the run then stops for it (a step fails, a worker is lost)."""
    if getattr(threading.excepthook, "keeps_disk_errors", False):
        return  # installed by an earlier command in this process
    previous = threading.excepthook

    def hook(args):
        if args.exc_value is not None and _disk_error(args.exc_value) is not None:
            _in_threads.append(args.exc_value)
            return
        previous(args)

    hook.keeps_disk_errors = True
    threading.excepthook = hook


def resume_command(kept: bool | None = None) -> str:
    """The command that continues a stopped run: the same one, with --resume where the command has it (a gen run
    continues by itself), and without --overwrite once the new run is the output (`kept`; by default, whether the
    run that stopped last kept it)."""
    import shlex
    import sys

    import click

    from .redact import redact_text

    kept = LAST_STOP.get("kept", True) if kept is None else kept

    context = click.get_current_context(silent=True)
    has_resume = context is not None and any("--resume" in p.opts for p in context.command.params)
    argv = [a for a in sys.argv[1:] if not (kept and a == "--overwrite")]
    if kept and has_resume and "--resume" not in argv:
        argv.append("--resume")
    if not sys.argv[0].endswith(("smolalign", "cli.py", "__main__.py")):
        return "the same command" + (" with --resume" if kept and has_resume else "")
    return redact_text(shlex.join(["smolalign", *argv]))


def checkpoint_bytes(model) -> int:
    """A training checkpoint's size: the trainable weights three times over (them, Adam's two moments), the
    frozen ones once."""
    return sum(p.numel() * p.element_size() * (3 if p.requires_grad else 1) for p in model.parameters())


def export_bytes(model: str, dtype: str) -> int:
    """About the size of a GGUF export of the model directory `model` in `dtype` (0 where it cannot tell)."""
    import json

    place = Path(model).expanduser()
    stored = sum(f.stat().st_size for f in place.glob("*.safetensors")) if place.is_dir() else 0
    try:
        config = json.loads((place / "config.json").read_text())
    except (OSError, ValueError):
        config = {}
    stored_width = 2 if str(config.get("torch_dtype") or config.get("dtype")) in ("bfloat16", "float16") else 4
    width = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32}.get(dtype, 2)
    return int(stored / stored_width * width)


def _disk_error(error: BaseException) -> tuple[int, str | None] | None:
    """(errno, the path if known) where `error` or what caused it is a write that found no room."""
    seen, stack = set(), [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in REASONS:
            return current.errno, current.filename
        text = str(current).lower()
        for words, code in TEXTS.items():
            if words in text:
                return code, None
        if SHORT_WRITES.search(text):
            import resource

            limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
            return (errno.EFBIG if limited else errno.ENOSPC), None
        stack += [current.__cause__, current.__context__]
    return None


def disk_full_message(error: BaseException, then: str) -> str | None:
    """One line for a write that found no room (None for any other error); `then` is how to go on."""
    import resource
    import shutil

    found = _disk_error(error) or next(filter(None, map(_disk_error, _in_threads)), None)
    if found is None:
        return None
    code, filename = found
    where = Path(filename) if filename else _expected.get("path")
    place = where or Path.cwd()
    existing = next((p for p in (place, *place.parents) if p.exists()), Path("/"))
    facts = [f"{human(shutil.disk_usage(existing).free)} free there"]
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY:
        facts.append(f"files are limited to {human(limit)} by ulimit -f")
    need = (f"; the run needs about {human(_expected['bytes'])} for {_expected['what']}"
            if _expected.get("bytes") else "")
    named = f"'{where}'" if where else "a file (a cache, before the output was made)"
    return (f"could not write {named}: {REASONS[code]} ({', '.join(facts)}){need}: free some space or raise the "
            f"limit, then {then}")
