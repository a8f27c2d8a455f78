"""The one module jobs import: what a job is made of (:class:`Job`, :class:`Param`), what it
knows while it runs (:class:`JobContext`), the runs it may submit (:class:`ChildRuns`), and the
entry point that runs it (``python -m jobs NAME``, :func:`main`).

A job module defines ``JOB = Job(name=..., summary=..., engine=..., params=[...], main=fn)``.
Heavy imports (pyspark, ray) stay inside ``main`` so that listing the catalog is cheap.
``main(ctx)`` does the work and returns the job-specific part of ``result.json``; :func:`main`
adds ``job``, ``params``, ``wall_s`` and ``stages`` and writes it whole.

The context reads the cluster from environment variables that the run's supervisor sets, so
a job runs unchanged on every provider: CLUSTERKIT_RUN_ID, CLUSTERKIT_RUN_DIR,
CLUSTERKIT_STORAGE_ROOT, CLUSTERKIT_SPARK_MASTER (+ executor sizes), CLUSTERKIT_RAY_ADDRESS.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from clusterkit.catalog import find_job
from clusterkit.core import spec
from clusterkit.core.errors import BadInput
from clusterkit.core.files import write_json_atomic
from clusterkit.core.fmt import human_bytes, human_seconds
from clusterkit.core.jobspec import Job, JobInputError, Param, parse_count
from clusterkit.core.records import INPUT_FILE, RUN_MARKER, SHARED_FILE, RunRecord
from clusterkit.runs.compare import markdown, measurement, summarise, to_csv
from clusterkit.runs.launcher import SETUP_FILE, Runs, RunSetup
from clusterkit.runs.store import FolderRunStore

__all__ = [
    "NAME_PATTERN",
    "ChildRuns",
    "Job",
    "JobContext",
    "JobFailed",
    "JobInputError",
    "NoSpaceLeft",
    "Param",
    "RunRecord",
    "check_name",
    "connect_url",
    "human_bytes",
    "human_seconds",
    "interrupt_session",
    "is_no_space",
    "main",
    "mark_shared",
    "markdown",
    "measurement",
    "parse_count",
    "spark_session",
    "summarise",
    "to_csv",
]


@dataclass
class JobContext:
    """Everything a running job knows about its run and its cluster."""

    job: Job
    params: dict[str, Any]
    run_id: str
    run_dir: Path
    storage_root: str
    stages: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    _spark: Any = None
    _children: ChildRuns | None = None

    @classmethod
    def from_env(cls, job: Job, params: dict[str, Any]) -> JobContext:
        run_dir = Path(os.environ.get("CLUSTERKIT_RUN_DIR") or tempfile.mkdtemp(prefix="ck-run-"))
        return cls(
            job=job,
            params=params,
            run_id=os.environ.get(RUN_MARKER, "adhoc"),
            run_dir=run_dir,
            storage_root=os.environ.get("CLUSTERKIT_STORAGE_ROOT", str(run_dir / "storage")),
        )

    def elapsed(self) -> float:
        """Seconds since the job started (what ``result.json`` reports as ``wall_s``)."""
        return time.perf_counter() - self.started

    def storage_path(self, *parts: str) -> str:
        """A path under the storage root (a local folder, or an hdfs:// URL on AWS)."""
        return "/".join([self.storage_root.rstrip("/"), *parts])

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the job; the seconds go to ``result.json`` under ``stages``.

        While the job runs, ``stages.json`` in the run folder says which stages are done and
        which one is running since when (what consoles show live).
        """
        started = time.perf_counter()
        self._write_stages(current=name)
        try:
            yield
        finally:
            self.stages[name] = round(time.perf_counter() - started, 3)
            self._write_stages(current=None)

    def _write_stages(self, *, current: str | None) -> None:
        write_json_atomic(
            self.run_dir / "stages.json",
            {"done": self.stages, "current": current, "since": time.time()},
        )

    def write_run_file(self, name: str, data: Any) -> None:
        """Write ``data`` as JSON to ``name`` in the run folder, atomically (readers see the
        old or the new file, never half of one): for figures consoles follow while it runs."""
        write_json_atomic(self.run_dir / name, data)

    def record_input(self, path: str, checksum: Any) -> None:
        """Name the run's input dataset and the checksum its writer recorded (None: none):
        the supervisor copies both into the record's ``environment``."""
        self.write_run_file(INPUT_FILE, {"path": path, "checksum": checksum})

    def progress(self, done: float, total: float, unit: str) -> None:
        """Report progress: ``progress.json`` in the run folder, drawn as a bar by the CLI."""
        write_json_atomic(
            self.run_dir / "progress.json",
            {"done": done, "total": total, "unit": unit, "t": time.time()},
        )

    @contextlib.contextmanager
    def spark_progress(self, total: float, unit: str, *, interval_s: float = 0.5) -> Iterator[None]:
        """While the block runs, report Spark's finished-task share of ``total`` units (from
        the Connect server's progress reports, or a classic session's status tracker)."""
        spark = self.spark()
        if self.warm:
            handler = _ConnectProgress(lambda done: self.progress(total * done, total, unit))
            spark.registerProgressHandler(handler)
            try:
                yield
            finally:
                spark.removeProgressHandler(handler)
                self.progress(total, total, unit)
            return
        tracker = spark.sparkContext.statusTracker()
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(interval_s):
                infos = [tracker.getStageInfo(i) for i in tracker.getActiveStageIds()]
                tasks = sum(i.numTasks for i in infos if i)
                if tasks:
                    finished = sum(i.numCompletedTasks for i in infos if i)
                    self.progress(total * finished / tasks, total, unit)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.progress(total, total, unit)

    @property
    def warm(self) -> bool:
        """Whether Spark work goes to the cluster's Spark Connect server (the default) rather
        than to an application of the run's own (``--spark-session classic``)."""
        return spark_session() == "warm" and bool(os.environ.get("CLUSTERKIT_SPARK_CONNECT"))

    def spark(self) -> Any:
        """A SparkSession for the run: attached to the cluster's warm Spark Connect server,
        or (classic) an application of its own on the cluster's master, its executors marked
        with the run id."""
        if self._spark is None:
            self._spark = self._warm_session() if self.warm else self._classic_session()
        return self._spark

    def _warm_session(self) -> Any:
        """The run's session on the Connect server: its id derived from the run's (so the
        session can be interrupted when the run is cancelled), the server's processes counted
        with the run's as shared ones (``shared.json``)."""
        from pyspark.sql import SparkSession

        url = connect_url(self.run_id)
        spark = SparkSession.builder.remote(url).getOrCreate()
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        # int64 UTC microseconds, as DuckDB and Arrow write them (not legacy INT96)
        spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        mark_shared(self)

        def interrupt(signum: int, _frame: Any) -> None:  # a cancel: stop the server's work
            with contextlib.suppress(Exception):
                spark.interruptAll()
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, interrupt)
        return spark

    def _classic_session(self) -> Any:
        from pyspark.sql import SparkSession

        env = os.environ
        builder = (
            SparkSession.builder.appName(f"clusterkit-{self.job.name}-{self.run_id}")
            .master(env.get("CLUSTERKIT_SPARK_MASTER", "local[*]"))
            .config(f"spark.executorEnv.{RUN_MARKER}", self.run_id)
            .config("spark.pyspark.python", env.get("PYSPARK_PYTHON", "python3"))
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.ui.enabled", "false")
        )
        for key, var in (
            ("spark.executor.cores", "CLUSTERKIT_SPARK_EXECUTOR_CORES"),
            ("spark.executor.memory", "CLUSTERKIT_SPARK_EXECUTOR_MEMORY"),
            ("spark.driver.memory", "CLUSTERKIT_SPARK_DRIVER_MEMORY"),
        ):
            if env.get(var):
                builder = builder.config(key, env[var])
        spark = builder.getOrCreate()
        spark.sparkContext.setLogLevel("WARN")
        return spark

    def ray(self) -> Any:
        """Connect to the cluster's Ray head; tasks and actors carry the run marker."""
        import ray

        if not ray.is_initialized():
            ray.init(
                address=os.environ.get("CLUSTERKIT_RAY_ADDRESS", "local"),
                runtime_env={"env_vars": {RUN_MARKER: self.run_id}},
                log_to_driver=True,
                logging_level=logging.WARNING,
            )
        return ray

    def fail(self, message: str, *, exit_code: int = 1) -> NoReturn:
        """End the job as failed with ``message`` (the run's error) and ``exit_code``."""
        raise JobFailed(message, exit_code)

    def children(self) -> ChildRuns:
        """The runs this job submits (a suite's steps, a bench's cells)."""
        if self._children is None:
            self._children = ChildRuns(self)
        return self._children

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()


def spark_session() -> str:
    """How this run's Spark work is done: ``warm`` (the cluster's Spark Connect server) or
    ``classic`` (an application of the run's own), as the run was submitted."""
    return os.environ.get("CLUSTERKIT_SPARK_SESSION", "warm")


def connect_url(run_id: str) -> str:
    """The cluster's Spark Connect server for run ``run_id``, checked to answer, its token
    put where the client reads it (``SPARK_CONNECT_AUTHENTICATE_TOKEN``, from the token file:
    never on a command line), with the run's own session id."""
    url = os.environ["CLUSTERKIT_SPARK_CONNECT"]
    token_file = os.environ.get("CLUSTERKIT_SPARK_CONNECT_TOKEN_FILE")
    if token_file:
        os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = Path(token_file).read_text().strip()
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    try:  # the client would retry a server that is gone for ten minutes: ask first
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError as exc:
        raise RuntimeError(
            f"the cluster's Spark Connect server ({url}) does not answer ({exc.strerror or exc}); "
            f"`clusterkit up` starts it again (or run with --spark-session classic)"
        ) from exc
    return f"{url}/;session_id={session_id(run_id)}"


def mark_shared(ctx: JobContext) -> None:
    """Say that the run now uses the processes runs share (the Connect server): its
    supervisor then counts them with the run's own (``shared.json``)."""
    write_json_atomic(ctx.run_dir / SHARED_FILE, {"spark-connect": time.time()})


def interrupt_session(run_id: str) -> None:
    """Stop whatever the run's Spark Connect session is doing on the server (a cancel); the
    server itself goes on for the next run. Best effort: a server that does not answer has
    nothing to stop."""
    with contextlib.suppress(Exception):
        from pyspark.sql import SparkSession

        SparkSession.builder.remote(connect_url(run_id)).getOrCreate().interruptAll()


def session_id(run_id: str) -> str:
    """The Spark Connect session id of run ``run_id`` (a UUID, derived: the same every time)."""
    return str(uuid.UUID(hashlib.sha256(run_id.encode()).hexdigest()[:32], version=4))


class JobFailed(Exception):
    """The job failed with a message of its own (the run's error) and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


#: What a dataset's or a model's name may be: the rule of cluster names (``clusterkit.core.spec``).
NAME_PATTERN = spec.NAME_PATTERN


def check_name(value: str, *, param: str) -> str:
    """``value`` when it is a name the kit allows (NAME_PATTERN, as for clusters); otherwise
    a JobInputError naming ``--param``, the value and the rule (the run exits 2)."""
    try:
        return spec.check_name(value, what=f"--{param}")
    except BadInput as exc:
        raise JobInputError(str(exc)) from exc


class NoSpaceLeft(JobFailed):
    """The storage being written is full: the run fails with ``no space left on PATH``."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"no space left on {path}: free space on its file system (or write less) and "
            f"run the job again",
            1,
        )
        self.path = path


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it was raised from (an engine's wrapper: Ray's task
    error, pyarrow's, DuckDB's) is a full disk (ENOSPC, "No space left on device")."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if getattr(current, "errno", None) == errno.ENOSPC:
            return True
        if "no space left on device" in str(current).lower():
            return True
        cause = getattr(current, "cause", None)  # Ray's RayTaskError keeps the task's own
        todo += [current.__cause__, current.__context__,
                 cause if isinstance(cause, BaseException) else None]  # fmt: skip
    return False


class _ConnectProgress:
    """A Spark Connect progress handler: the finished share of the running stages' tasks."""

    def __init__(self, report: Callable[[float], None]) -> None:
        self.report = report

    def __call__(self, stages: Any, inflight_tasks: int, operation_id: str | None,
                 done: bool) -> None:  # fmt: skip
        stages = list(stages or [])
        tasks = sum(s.num_tasks for s in stages)
        if tasks:
            self.report(sum(s.num_completed_tasks for s in stages) / tasks)


class ChildRuns:
    """The runs a job submits: runs of their own, started on the node the job runs on (the
    driver node) through the same launcher as ``clusterkit run``, each recording this run as
    its ``parent``, so ``clusterkit runs`` lists them and cancelling this run cancels them."""

    def __init__(self, ctx: JobContext) -> None:
        if not (ctx.run_dir / SETUP_FILE).exists():
            raise JobInputError(
                f"job {ctx.job.name} submits runs of its own: start it with `clusterkit run "
                f"{ctx.job.name}` (no run setup in {ctx.run_dir})"
            )
        self.parent = ctx.run_id
        store = FolderRunStore(ctx.run_dir.parent)
        self.runs = Runs.on_driver_node(store, RunSetup.load(ctx.run_dir))

    def submit(self, job: str, params: dict[str, Any]) -> RunRecord:
        """Start ``job`` with ``params`` (checked by the job itself); its record, running."""
        return self.runs.submit(job, params, parent=self.parent, spark_session=spark_session())

    def wait(self, run_id: str) -> RunRecord:
        """The run's final record, once it is final."""
        return self.runs.wait(run_id)

    def run(self, job: str, params: dict[str, Any]) -> RunRecord:
        """Submit ``job`` and wait for it; its final record."""
        return self.wait(self.submit(job, params).id)

    def result(self, run_id: str) -> dict[str, Any] | None:
        """The run's ``result.json`` (None when it wrote none)."""
        return self.runs.store.read_json(run_id, "result.json")


def main(argv: list[str] | None = None) -> int:
    """Run one job: ``python -m jobs NAME --params-json '{...}'`` (what the run supervisor
    starts). Exit codes: 0 succeeded; 1 the job failed; 2 bad input (a JobInputError or the
    kit's BadInput). On failure the error's one-line form goes to ``error.json`` in the run
    folder, and the traceback to stderr unless the failure is one the kit names (bad input,
    JobFailed, a full disk: ``no space left on PATH``, PATH the storage being written, or
    the storage root when the job did not say)."""
    parser = argparse.ArgumentParser(prog="python -m jobs")
    parser.add_argument("name")
    parser.add_argument("--params-json", default="{}")
    args = parser.parse_args(argv)
    job = find_job(args.name)
    params = {**job.defaults(), **json.loads(args.params_json)}
    ctx = JobContext.from_env(job, params)
    try:
        fields = job.main(ctx) or {}
    except (JobInputError, BadInput) as exc:
        write_json_atomic(ctx.run_dir / "error.json", {"type": "bad input", "message": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except JobFailed as exc:
        return _failed(ctx, exc)
    except Exception as exc:
        if is_no_space(exc):
            path = getattr(exc, "filename", None) or ctx.storage_root
            return _failed(ctx, NoSpaceLeft(str(path)))
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        write_json_atomic(ctx.run_dir / "error.json", {"type": "crash", "message": message})
        return 1
    finally:
        ctx.close()
    result = {
        "job": job.name,
        "engine": params.get("engine", job.engine),
        "params": params,
        **fields,
        "wall_s": round(ctx.elapsed(), 3),
        "stages": ctx.stages,
        "driver_max_rss_bytes": _max_rss_bytes(),
    }
    write_json_atomic(ctx.run_dir / "result.json", result)
    return 0


def _failed(ctx: JobContext, exc: JobFailed) -> int:
    """Record a failure the job named (``error.json``, one line to stderr); its exit code."""
    write_json_atomic(ctx.run_dir / "error.json", {"type": "failed", "message": str(exc)})
    if isinstance(exc, NoSpaceLeft):
        print(f"error: {exc}", file=sys.stderr)
    return exc.exit_code


def _max_rss_bytes() -> int:
    """The job process's own peak resident memory, from the kernel (a short run can end
    between two of the sampler's readings; this figure cannot miss its peak)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux
