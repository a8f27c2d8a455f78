"""What every job is made of: declared parameters, a context, a result.

A job module defines ``JOB = Job(name=..., summary=..., engine=..., params=[...], main=fn)``.
Heavy imports (pyspark, ray) stay inside ``main`` so that listing the catalog is cheap.
``main(ctx)`` does the work and returns the job-specific part of ``result.json``; the runtime
adds ``job``, ``params``, ``wall_s`` and ``stages`` and writes it atomically.

The context reads the cluster from environment variables that ``clusterkit run`` sets, so a
job runs unchanged on every provider: CLUSTERKIT_RUN_ID, CLUSTERKIT_RUN_DIR,
CLUSTERKIT_STORAGE_ROOT, CLUSTERKIT_SPARK_MASTER (+ executor sizes), CLUSTERKIT_RAY_ADDRESS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.metrics import RUN_MARKER

_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s*$")
_COUNT_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


class JobInputError(Exception):
    """Bad input to a job (a parameter, a path, a column): the message says which and why."""


def parse_count(text: str | int) -> int:
    """A count such as ``200k``, ``30M``, ``1.5m`` or ``1000``; must be positive."""
    if isinstance(text, int):
        value = text
    else:
        match = _COUNT.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a count; write e.g. 1000, 200k or 30M")
        number, unit = match.groups()
        value = int(float(number) * _COUNT_UNITS[unit.lower()])
    if value <= 0:
        raise ValueError(f"{text!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Param:
    """One declared job parameter: ``--name VALUE`` (``--name``/``--no-name`` for flags)."""

    name: str
    kind: str  # int | float | str | count | bool | choice | choices | counts
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, raw: Any) -> Any:
        """Convert ``raw`` (a string from the command line, or a JSON value) or raise ValueError."""
        if self.kind == "count":
            return parse_count(raw)
        if self.kind == "int":
            return int(raw)
        if self.kind == "float":
            return float(raw)
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not true or false")
        if self.kind == "choice":
            if raw not in self.choices:
                raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
            return raw
        if self.kind in ("choices", "counts"):  # a comma-separated list, e.g. spark,duckdb
            items = [i.strip() for i in (raw.split(",") if isinstance(raw, str) else raw)]
            if not items or "" in items:
                raise ValueError(f"{raw!r}: give a comma-separated list without empty items")
            if self.kind == "counts":
                return [parse_count(i) for i in items]
            unknown = [i for i in items if i not in self.choices]
            if unknown:
                raise ValueError(f"unknown {', '.join(map(repr, unknown))}; "
                                 f"choose from {', '.join(self.choices)}")  # fmt: skip
            return list(dict.fromkeys(items))
        return str(raw)


@dataclass(frozen=True)
class Job:
    name: str
    summary: str
    engine: str  # spark | ray | python: the default engine
    main: Callable[[JobContext], dict[str, Any]]
    params: Sequence[Param] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines the job runs on: its ``engine`` parameter's choices, or its one engine."""
        choice = self.param("engine")
        return choice.choices if choice is not None and choice.choices else (self.engine,)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


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
        from clusterkit.state import write_json_atomic

        write_json_atomic(
            self.run_dir / "stages.json",
            {"done": self.stages, "current": current, "since": time.time()},
        )

    def progress(self, done: float, total: float, unit: str) -> None:
        """Report progress: ``progress.json`` in the run folder, drawn as a bar by the CLI."""
        from clusterkit.state import write_json_atomic

        write_json_atomic(
            self.run_dir / "progress.json",
            {"done": done, "total": total, "unit": unit, "t": time.time()},
        )

    @contextlib.contextmanager
    def spark_progress(self, total: float, unit: str, *, interval_s: float = 0.5) -> Iterator[None]:
        """While the block runs, report Spark's finished-task share of ``total`` units."""
        import threading

        tracker = self.spark().sparkContext.statusTracker()
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

    def spark(self) -> Any:
        """A SparkSession on the cluster's master, its executors marked with the run id."""
        if self._spark is None:
            from pyspark.sql import SparkSession

            env = os.environ
            builder = (
                SparkSession.builder.appName(f"clusterkit-{self.job.name}-{self.run_id}")
                .master(env.get("CLUSTERKIT_SPARK_MASTER", "local[*]"))
                .config(f"spark.executorEnv.{RUN_MARKER}", self.run_id)
                .config("spark.pyspark.python", env.get("PYSPARK_PYTHON", "python3"))
                .config("spark.sql.session.timeZone", "UTC")
                # int64 UTC microseconds, as DuckDB and Arrow write them (not legacy INT96)
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
            self._spark = builder.getOrCreate()
            self._spark.sparkContext.setLogLevel("WARN")
        return self._spark

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

    def close(self) -> None:
        if self._spark is not None:
            self._spark.stop()
            self._spark = None
        ray = sys.modules.get("ray")
        if ray is not None and ray.is_initialized():
            ray.shutdown()
