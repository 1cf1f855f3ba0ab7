"""Exactly-once generation: deterministic shards, each run as its own distilabel pipeline, committed atomically.

Why not distilabel's cache: in 1.5.3 a run killed mid-way does not recover (the rerun emits one batch and hangs,
distilabel issue #1065). So the planned rows are cut into fixed shards; a shard's pipeline runs with
`use_cache=False`, and what it produced is written to `work/shards/shard-K.pass-P.jsonl` in one rename. A row is
settled once a committed file says `ok` or `filtered`; a `failed` row (its batch was voided, or its answer was
unusable) is asked again in the next pass, up to `output.max_passes` tries, then stays failed with its error.
A rerun reads the committed files and asks only for unsettled rows, so after a kill the same command finishes the
job without asking the LLM again for anything already committed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
from collections import defaultdict
from pathlib import Path

from ..errors import UsageError
from ..outputs import atomic_write_text

WORK = "work"
_PART = re.compile(r"shard-(\d+)\.pass-(\d+)\.jsonl$")


class ShardStore:
    """The committed records under DIR/work/shards (or another folder: a quality pass's), one JSON line per row
    and attempt, keyed by `key`."""

    def __init__(self, out_dir: Path, folder: str = "shards", key: str = "gen_id"):
        self.root = Path(out_dir) / WORK / folder
        self.key = key

    def parts(self) -> list[tuple[int, int, Path]]:
        if not self.root.is_dir():
            return []
        found = [(int(m.group(1)), int(m.group(2)), p) for p in self.root.iterdir() if (m := _PART.match(p.name))]
        return sorted(found)

    def records(self) -> dict:
        """key -> its records in commit order."""
        out: dict = defaultdict(list)
        for _, _, path in self.parts():
            for line in path.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                out[record[self.key]].append(record)
        return out

    def next_pass(self, shard: int) -> int:
        return 1 + max((p for s, p, _ in self.parts() if s == shard), default=0)

    def commit(self, shard: int, pass_no: int, records: list[dict]) -> None:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        atomic_write_text(self.root / f"shard-{shard:05d}.pass-{pass_no}.jsonl", text)


def settled(history: list[dict]) -> dict | None:
    """The record that ends a row's story: ok or filtered (failures are retried)."""
    return next((r for r in history if r["status"] in ("ok", "filtered")), None)


def pending(rows: list[dict], history: dict, max_passes: int, key: str = "gen_id") -> list[dict]:
    return [r for r in rows if settled(history.get(r[key], [])) is None and len(history.get(r[key], [])) < max_passes]


class PipelineLog(logging.Handler):
    """Listens to distilabel's log: keeps the last error a failed batch logged (so a failed row says why), counts
    the batches the last step sends (for the progress bar), and mutes distilabel's own console handler so our
    display is the only one (its full log still goes to the pipeline.log file under DIR/work)."""

    def __init__(self, last_step: str, on_batch, verbose: bool):
        super().__init__(level=logging.INFO)
        self.last_error: str | None = None
        self.handlers_list: list | None = None
        self.on_progress = None
        self.last_step, self.on_batch, self.verbose = last_step, on_batch, verbose

    def emit(self, record: logging.LogRecord) -> None:
        if self.handlers_list is not None and not self.verbose:
            from rich.logging import RichHandler

            for handler in self.handlers_list:
                if isinstance(handler, RichHandler):
                    handler.setLevel(logging.CRITICAL + 1)
        message = record.getMessage()
        if "Subprocess traceback" in message:
            lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
            self.last_error = lines[-1][:300] if lines else None
        elif f"Step '{self.last_step}' sending batch" in message and self.on_batch:
            self.on_batch()
        if self.on_progress is not None:
            self.on_progress()


@contextlib.contextmanager
def scoped_environ(values: dict):
    """Environment for the run's own processes, put back afterwards (gen may be called from Python, e.g. demo)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_pipeline(recipe, rows: list[dict], build, work: Path, name: str, where: str, on_batch=None):
    """One distilabel pipeline over `rows`, whose steps `build(source, replicas)` attaches (returning the last one)
    -> (its output rows, the last batch error it logged, and how it ended: complete, interrupted (Ctrl-C) or stopped
    (a step crashed)). A worker that dies or stalls ends it with GenerationStopped, naming the step and `where`."""
    from distilabel.pipeline import Pipeline

    from .steps import PlannedRows
    from .watchdog import WATCH_ENV, Watchdog, WorkerLost

    llm, ray = recipe.sections["llm"], recipe.sections["ray"]
    cache = work / "distilabel"
    shutil.rmtree(cache / name, ignore_errors=True)  # what a killed run of this pass left behind
    if llm.backend == "vllm":
        # the GPU placement file distilabel's vLLM class keeps: a module constant under the system temp dir (moving
        # TMPDIR instead would also move multiprocessing's sockets, whose paths must stay short)
        from distilabel.models.mixins import cuda_device_placement

        cuda_device_placement._CUDA_DEVICE_PLACEMENT_MIXIN_FILE = (work / "cuda_device_placement.json").resolve()
    with Pipeline(name=name, cache_dir=str(cache)) as pipeline:
        source = PlannedRows(name="rows", data=rows, batch_size=llm.batch_size)
        last = build(source, ray.replicas if ray.enabled else 1)
    if ray.enabled:
        address = ray.address or os.environ.get("RAY_ADDRESS")
        # the actors' own prints would scroll our display away; distilabel's log still reaches us via its queue
        pipeline = pipeline.ray(ray_head_node_url=address,
                                ray_init_kwargs={"log_to_driver": bool(os.environ.get("SMOLALIGN_DEBUG"))})
    handlers: list = []
    listener = PipelineLog(last.name, on_batch, verbose=bool(os.environ.get("SMOLALIGN_DEBUG")))
    handlers.append(listener)
    listener.handlers_list = handlers  # distilabel appends its console and file handlers to this same list
    import datasets

    stops = _watch_stops(pipeline)
    sigint = signal.getsignal(signal.SIGINT)  # distilabel installs its own Ctrl-C handler and leaves it behind
    # distilabel reads its outputs back with `datasets.load_dataset`, whose Arrow cache would land in ~/.cache
    datasets_cache, datasets.config.HF_DATASETS_CACHE = datasets.config.HF_DATASETS_CACHE, cache / "datasets"
    alive = work / "alive" / name
    shutil.rmtree(alive, ignore_errors=True)  # the registrations of a killed run of this pass: dead pids, not ours
    # Ray's actors are not this process's children: Ray reports their deaths itself
    watchdog = Watchdog(alive, recipe.sections["output"].stall_seconds) if not ray.enabled else None
    stops["watchdog"] = watchdog  # ctrl-C ends the run through it, at once
    listener.on_progress = watchdog.progress if watchdog else None
    # the pool's workers are forked inside run(): they inherit where to register, and where distilabel's own files go
    scoped = {WATCH_ENV: str(alive.resolve()), "DISTILABEL_CACHE_DIR": str(cache.resolve())}
    try:
        with scoped_environ(scoped), watchdog or contextlib.nullcontext():
            distiset = pipeline.run(use_cache=False, logging_handlers=handlers)
        out = distiset["default"]["train"].to_list() if distiset and "default" in distiset else []
    except WorkerLost as lost:
        watchdog.wind_down(pipeline)
        raise GenerationStopped(f"{lost} in {where}") from None
    except KeyboardInterrupt:
        if watchdog is not None and watchdog.reason == "interrupted":
            watchdog.wind_down(pipeline)
        raise
    except BaseException as error:
        from distilabel.utils.logging import stop_logging

        stop_logging()  # distilabel leaves its log listener running when run() raises
        # distilabel's "Failed to load all the steps" has a worker's exception as its cause
        if not isinstance(error, RuntimeError) or error.__cause__ is None or "load" not in str(error):
            raise
        cause = str(error.__cause__).strip().splitlines()[0][:300] if str(error.__cause__).strip() else ""
        raise GenerationStopped(f"a step failed to load in {where} ({type(error.__cause__).__name__}: "
                                f"{cause})") from None
    finally:
        shutil.rmtree(alive, ignore_errors=True)
        signal.signal(signal.SIGINT, sigint)
        datasets.config.HF_DATASETS_CACHE = datasets_cache
        _keep_log(cache / name, work / "logs" / f"{name}.log")
        shutil.rmtree(cache / "datasets", ignore_errors=True)
    status = "interrupted" if stops["ctrl_c"] else "stopped" if stops["stopped"] else "complete"
    return out, listener.last_error, status


def _watch_stops(pipeline) -> dict:
    """distilabel 1.5.3 returns normally, with the rows it has, when Ctrl-C or a crashed step stopped the pipeline
    early. Rows it never reached must not count as failed tries, and the run must not carry on to the next shard:
    so note both kinds of stop (this wraps two private methods of the pipeline instance)."""
    stops = {"ctrl_c": False, "stopped": False}
    stop = pipeline._stop

    def noted_stop(*args, **kwargs):
        stops["stopped"] = True
        return stop(*args, **kwargs)

    def ctrl_c_handler():
        def on_sigint(signum, frame):
            stops["ctrl_c"] = True
            if stops.get("watchdog") is not None:  # at once (distilabel's stop waits for a lock and the batches)
                stops["watchdog"].interrupt()
            pipeline._stop()

        return signal.signal(signal.SIGINT, on_sigint)

    pipeline._stop = noted_stop
    pipeline._handle_keyboard_interrupt = ctrl_c_handler
    return stops


def _keep_log(pipeline_cache: Path, target: Path) -> None:
    """The pipeline's log is worth keeping; its cached batches are not (the run used no cache)."""
    logs = sorted(pipeline_cache.rglob("pipeline.log"), key=lambda p: p.stat().st_mtime)
    if logs:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(logs[-1], target)
    shutil.rmtree(pipeline_cache, ignore_errors=True)
    shutil.rmtree(pipeline_cache.parent / "steps_data", ignore_errors=True)


def _record(row: dict, outcome, pass_no: int) -> dict:
    record = {"gen_id": row["gen_id"], "pass": pass_no, "status": outcome.status}
    if outcome.rows is not None:  # ok rows, and a filtered row's own text (it goes to DIR/rejected/)
        record["rows"] = outcome.rows
    if outcome.status != "ok":
        record["reason"] = outcome.reason
        if outcome.detail:
            record["detail"] = outcome.detail
    return record


def generate(recipe, rows: list[dict], backends: dict, output, display) -> dict[int, list[dict]]:
    """Run every shard to completion (or to its last pass); returns each row's committed history. `output` is the
    run's outputs.Replacement: its path moves from the --overwrite sibling to the output itself when the first shard
    is complete (`output.commit()`), so every path here is read from it afresh."""
    from .subsets import add_steps, interpret

    out = recipe.sections["output"]
    history = ShardStore(output.path).records()
    shards = [rows[k:k + out.shard_size] for k in range(0, len(rows), out.shard_size)]
    display.start(len(rows), sum(1 for r in rows if not pending([r], history, out.max_passes)))
    for k, shard in enumerate(shards):
        while todo := pending(shard, history, out.max_passes):
            store, work = ShardStore(output.path), Path(output.path) / WORK
            pass_no = store.next_pass(k)
            display.begin_pass(k, len(shards), pass_no, len(todo), recipe.sections["llm"].batch_size)
            name = f"{recipe.kind}-shard-{k:05d}-pass-{pass_no}"
            where = f"{recipe.kind} shard {k + 1}/{len(shards)} (pass {pass_no})"
            build = lambda source, replicas: add_steps(recipe, source, backends, replicas=replicas)  # noqa: E731
            outputs, error, status = run_pipeline(recipe, todo, build, work, name, where, on_batch=display.batch_done)
            by_id = {o.get("gen_id"): o for o in outputs}
            records = []
            for row in todo:
                result = by_id.get(row["gen_id"])
                if result is not None:
                    records.append(_record(row, interpret(recipe, result, error), pass_no))
                elif status == "complete":  # never seen: distilabel returns every row of a finished run
                    records.append(_record(row, _lost(error), pass_no))
            if records:  # what came back is kept, even from a run stopped early; rows it never reached are not tries
                store.commit(k, pass_no, records)
            raise_if_stopped(status, error, work, name)
            for record in records:
                history[record["gen_id"]].append(record)
            display.end_pass(sum(1 for r in rows if not pending([r], history, out.max_passes)))
        output.commit()  # a complete shard: the first complete result of the run
    output.commit()
    return history


def raise_if_stopped(status: str, error: str | None, work: Path, name: str) -> None:
    if status == "interrupted":
        raise KeyboardInterrupt
    if status == "stopped":
        raise GenerationStopped(f"distilabel stopped the pipeline ({error or 'a step failed'}; log: "
                                f"{work / 'logs' / (name + '.log')}): fix it and run the same command again, it "
                                f"continues from the committed rows")


class GenerationStopped(UsageError):
    """The pipeline stopped before its rows were done (not bad input): one line, exit code 1, nothing lost."""

    exit_code = 1


def _lost(error: str | None):
    from .subsets import Outcome

    return Outcome("failed", reason="the pipeline returned no row" + (f" ({error})" if error else ""))
