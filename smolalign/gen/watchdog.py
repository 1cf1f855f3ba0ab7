"""A lost or stalled distilabel worker ends the run, with the resume hint, instead of hanging it.

distilabel 1.5.3 runs each step in a `multiprocessing.Pool` worker. When a worker dies (kill -9, the OOM killer, a
segfault) the pool starts an idle replacement, the step's task never reports back, and `Pipeline.run` waits for it
forever; a worker that deadlocks (e.g. OpenMP after a fork) does the same at 0% CPU.

So each of our steps registers its worker here when it loads (a file DIR/work/alive/<step>.<pid>, removed when
the step unloads) and touches that file as it works: every generated token (local models), every few seconds while
a request is in flight (servers). The watchdog, a thread of the process that runs the pipeline, looks every half
second:
- a registered worker that no longer exists has died: the run ends at once;
- no registered file touched and no worker using the CPU (model loading, a GPU engine's loop) for
  `output.stall_seconds` (60 by default): the run is stalled and ends. Progress is counted, not wall time: a slow
  model that keeps writing tokens is never stopped.
Ending the run: the watchdog kills the remaining step workers (its own children) and interrupts the main thread
(SIGUSR1 to it, whose handler raises), so `Pipeline.run` unwinds; the pool and its manager are shut by their own
`with` blocks. Nothing committed is touched: a shard is committed only after its pipeline returns.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

WATCH_ENV = "SMOLALIGN_WATCH_DIR"
BEAT_SECONDS = 0.5
POLL_SECONDS = 0.5
# a worker is working when, since its last progress, it used this much CPU and this share of a core (idle: ~0)
BUSY_CPU_SECONDS, BUSY_SHARE = 0.05, 0.02

# ---------------------------------------------------------------- the worker's side


_mine: dict = {"path": None, "last": 0.0}


def register(step: str) -> None:
    """Called in the worker when a step loads: its file says which step this process runs."""
    folder = os.environ.get(WATCH_ENV)
    if not folder:
        return
    path = Path(folder) / f"{step}.{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    _mine.update(path=path, last=time.monotonic())


def beat() -> None:
    """Progress: touch this worker's file (at most every BEAT_SECONDS, so a token costs nothing)."""
    path, now = _mine["path"], time.monotonic()
    if path is None or now - _mine["last"] < BEAT_SECONDS:
        return
    _mine["last"] = now
    with contextlib.suppress(OSError):
        os.utime(path)


def unregister() -> None:
    path = _mine["path"]
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()
    _mine.update(path=None)


class Watched:
    """Mixin for our distilabel steps: register on load, unregister on a clean unload."""

    def load(self) -> None:
        register(self.name)
        super().load()

    def unload(self) -> None:
        super().unload()
        unregister()


class TokenBeat:
    """A transformers logits processor that only reports progress, once per decoding step."""

    def __call__(self, input_ids, scores):
        beat()
        return scores


async def beating(request):
    """Await `request` while beating, so a long server request counts as progress (the client's own timeout
    bounds it)."""
    import asyncio

    task = asyncio.ensure_future(request)
    while True:
        done, _ = await asyncio.wait({task}, timeout=BEAT_SECONDS)
        beat()
        if done:
            return task.result()


# ---------------------------------------------------------------- the watching side


class WorkerLost(Exception):
    """Raised in the main thread when the watchdog ends a run; the message says which step and why."""


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (dead, not yet reaped) still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Watchdog:
    """Watches the workers registered under `folder` while a pipeline runs (use as a context manager)."""

    def __init__(self, folder: Path, stall_seconds: float):
        self.folder = Path(folder)
        self.stall_seconds = stall_seconds
        self.reason: str | None = None
        self._stop = threading.Event()
        self._main = threading.main_thread().ident
        self._last_progress = time.monotonic()
        self._seen: dict[str, float] = {}  # file -> mtime last seen
        self._cpu: dict[int, tuple[float, float]] = {}  # pid -> (its CPU seconds, when) at its last progress

    def progress(self) -> None:
        self._last_progress = time.monotonic()

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        self._previous = signal.signal(signal.SIGUSR1, self._raise)
        self._hook = threading.excepthook
        threading.excepthook = self._quiet_after_loss
        self._thread = threading.Thread(target=self._watch, name="smolalign-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        signal.signal(signal.SIGUSR1, self._previous)
        if self.reason is None:
            threading.excepthook = self._hook

    def _quiet_after_loss(self, args) -> None:
        """Once the run is ended, distilabel's threads die on its closed queues (EOFError): expected, not news."""
        if self.reason is None:
            self._hook(args)

    def wind_down(self, pipeline) -> None:
        """After a loss: make distilabel's own threads end (its stop flag ends its waiting loops; those blocked on
        the manager's queues, which the unwinding closed, end with EOFError) and wait for them, then stop its log
        listener (nothing logs to its queue any more) and give back the exception hook."""
        from distilabel.utils.logging import stop_logging

        pipeline._stop_called = True
        try:
            for name in ("_output_queue_thread", "_load_steps_thread"):
                thread = getattr(pipeline, name, None)
                if thread is not None:
                    thread.join(timeout=15)
            stop_logging()
        finally:
            threading.excepthook = self._hook

    def interrupt(self) -> None:
        """ctrl-C (or SIGTERM), in the main thread: end the run now, as a lost worker does, instead of waiting for
        the batches in flight (distilabel's own stop waits for them: a minute for a long answer)."""
        self._stop.set()  # the watching thread must not report the workers killed here as lost
        self.reason = "interrupted"
        for _, pid, _ in self._workers():  # nothing of theirs is committed yet
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        raise KeyboardInterrupt

    def _raise(self, signum, frame):
        if self.reason is not None and not self._stop.is_set():
            raise WorkerLost(self.reason)

    def _workers(self) -> list[tuple[str, int, Path]]:
        out = []
        for path in self.folder.iterdir() if self.folder.is_dir() else []:
            step, _, pid = path.name.rpartition(".")
            if pid.isdigit():
                out.append((step, int(pid), path))
        return out

    def _look(self) -> str | None:
        """One look: the reason to end the run, or None."""
        now = time.monotonic()
        for step, pid, path in self._workers():
            if not _alive(pid):
                if path.exists():  # still registered: it did not unload, so it died
                    return f"the worker of step '{step}' (pid {pid}) died"
                continue
            with contextlib.suppress(OSError):
                mtime = path.stat().st_mtime
                if self._seen.get(path.name) != mtime:
                    self._seen[path.name] = mtime
                    self._last_progress = now
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                # counted since the worker's last progress, not per look: on a loaded machine a working process may
                # get a few percent of a core, yet it adds up; an idle one's trickle stays under BUSY_SHARE
                since_cpu, since = self._cpu.setdefault(pid, (cpu, now))
                used = cpu - since_cpu
                if used >= BUSY_CPU_SECONDS and used >= BUSY_SHARE * (now - since):
                    self._last_progress = now
                    self._cpu[pid] = (cpu, now)
        if now - self._last_progress > self.stall_seconds:
            steps = ", ".join(sorted({step for step, _, _ in self._workers()})) or "none registered"
            return (f"no step made progress for {self.stall_seconds:g} s (steps: {steps}; raise "
                    f"output.stall_seconds if they are merely slow)")
        return None

    def _watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            reason = self._look()
            if reason is None:
                continue
            if self._stop.is_set():  # ended meanwhile (ctrl-C)
                return
            self.reason = reason
            for _, pid, _ in self._workers():  # our own pool workers: nothing of theirs is committed yet
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            signal.pthread_kill(self._main, signal.SIGUSR1)
            return
