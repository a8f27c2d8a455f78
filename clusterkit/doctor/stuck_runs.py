"""The cluster's runs: none says it is going while its supervisor is gone, none goes on
without what it needs (the stall rule of :mod:`clusterkit.runs.stall`, seen from outside:
an ALIVE Spark worker and an ALIVE Ray node), and no job's latest run failed out of memory.

:func:`read_runs` reads the run folders of this machine (the local provider's runs) and
asks whether each active run's supervisor lives; :func:`judge_runs` is pure.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime

from clusterkit.core.records import ACTIVE, RunRecord
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.exec.local import LocalRunner
from clusterkit.runs.launcher import START_TIMEOUT_S

#: What a run's error says when its job ran out of memory: the JVM's (a Spark driver or
#: executor; an executor that ends on it exits with 52, Spark's code for it), Python's, Ray's
#: (its memory monitor kills a task when the node runs low; its object store fills), a C++
#: allocator's and the kernel's (ENOMEM).
OUT_OF_MEMORY = re.compile(
    r"OutOfMemoryError|Java heap space|GC overhead limit exceeded|\bMemoryError\b"
    r"|running low on memory|ObjectStoreFullError|Cannot allocate memory|std::bad_alloc"
    r"|Command exited with code 52\b"
)
#: ... and what it says when its job was killed as the kernel's OOM killer kills (SIGKILL;
#: a shell's exit code 137 is 128 + 9): most likely out of memory, not for sure.
KILLED = re.compile(r"killed by signal SIGKILL|exited with code 137\b")
#: How long after it ended a run that failed out of memory is still said (its job run again
#: since says it no more, whatever the time).
OUT_OF_MEMORY_WINDOW_S = 24 * 3600.0
#: How much of such a run's error its finding quotes (``clusterkit logs RUN`` has the rest).
ERROR_CHARS = 300


@dataclass(frozen=True)
class RunReading:
    """An active run (queued or running) as its record says: its age (seconds since it was
    made), its supervisor's pid (None: none took it yet) and whether that process lives."""

    id: str
    job: str
    status: str
    age_s: float
    supervisor_pid: int | None = None
    supervisor_alive: bool = False


@dataclass(frozen=True)
class MemoryReading:
    """The latest run of a job (of a script, for ``submit``), failed with an error that reads
    as out of memory: what it ran (``etl``, ``submit my.py``), its error, how long ago it
    ended, and whether it was killed as the OOM killer kills (not said for sure)."""

    id: str
    what: str
    error: str
    ago_s: float
    killed: bool = False


@dataclass(frozen=True)
class RunsReading:
    """The active runs, how many runs the store holds, whether the cluster is up, and its
    ALIVE Spark workers and Ray nodes now (None: not read, the cluster being down) with the
    spec's ``runs.stall_timeout``; the jobs whose latest run failed out of memory, and the
    cluster's state folder (the job-out-of-memory runbook's STATE_DIR)."""

    active: list[RunReading]
    total: int
    cluster_up: bool
    spark_workers: int | None = None
    ray_nodes: int | None = None
    stall_timeout_s: float = 120.0
    out_of_memory: list[MemoryReading] = field(default_factory=list)
    state_dir: str = ""


def _age(stamp: str | None, now: float) -> float:
    try:
        return max(0.0, now - datetime.fromisoformat(stamp or "").timestamp())
    except (TypeError, ValueError):
        return 0.0


def what_ran(record: RunRecord) -> str:
    """The job, and for ``submit`` its script: what a later run of the same thing repeats."""
    script = record.params.get("script") if record.job == "submit" else None
    return f"{record.job} {script}" if script else record.job


def out_of_memory(record: RunRecord, now: float) -> MemoryReading | None:
    """``record`` as a run that failed out of memory within :data:`OUT_OF_MEMORY_WINDOW_S`
    (None: it did not, or long ago)."""
    error = record.error or ""
    if record.status != "failed" or _age(record.ended, now) > OUT_OF_MEMORY_WINDOW_S:
        return None
    if OUT_OF_MEMORY.search(error):
        return MemoryReading(record.id, what_ran(record), error, _age(record.ended, now))
    if KILLED.search(error):
        return MemoryReading(record.id, what_ran(record), error, _age(record.ended, now), True)
    return None


def read_runs(target: Target) -> RunsReading:
    assert target.paths is not None  # a check of a known cluster
    folder, here, now = target.paths.runs, LocalRunner(), time.time()
    records = sorted(folder.glob("*/record.json")) if folder.is_dir() else []
    active, latest = [], {}
    for path in records:  # by id: oldest first
        with contextlib.suppress(OSError, ValueError, TypeError):  # the state check says so
            record = RunRecord.from_dict(json.loads(path.read_text()))
            if record.status not in ACTIVE:
                latest[what_ran(record)] = record
                continue
            pid = int(record.supervisor["pid"]) if record.supervisor else None
            alive = pid is not None and here.alive(pid, marker=record.id)
            if pid is not None and not alive:  # it may have ended just now: read it once more
                record = RunRecord.from_dict(json.loads(path.read_text()))
                if record.status not in ACTIVE:
                    latest[what_ran(record)] = record
                    continue
            active.append(RunReading(record.id, record.job, record.status,
                                     _age(record.created, now), pid, alive))  # fmt: skip
    memory = [m for m in (out_of_memory(r, now) for r in latest.values()) if m is not None]
    found = target.health()
    spark = ray = None
    if found is not None:
        spark = sum(r.name == "spark-worker" and r.state == "up" for r in found.rows)
        ray = sum(r.name == "ray-node" and r.state == "up" for r in found.rows)
    return RunsReading(active, len(records), target.up, spark, ray,
                       target.spec.runs.stall_timeout, memory,
                       str(target.paths.root))  # fmt: skip


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    return f"{seconds / 60:.0f} min ago" if seconds < 7200 else f"{seconds / 3600:.0f} h ago"


def judge_runs(reading: RunsReading) -> list[Finding]:
    """Per active run (its id the runbook's RUN): its supervisor gone: FAIL (run-stuck;
    ``clusterkit runs`` records it failed and stops its processes); queued longer than a
    supervisor takes to start (60 s) with none: WARN (run-stuck); running while the cluster
    has no ALIVE Spark worker or no ALIVE Ray node: WARN (run-stuck: its supervisor fails it
    after ``runs.stall_timeout`` if it uses that engine). Per job whose latest run failed out
    of memory (or was killed as the OOM killer kills) within the last day: WARN
    (job-out-of-memory; RUN and STATE_DIR). One OK line otherwise."""
    found = []
    reap = ("`clusterkit runs` records it failed and stops its processes" if reading.cluster_up
            else "`clusterkit up`, then `clusterkit runs` records it failed")  # fmt: skip
    missing = [what for what, count in (("Spark worker", reading.spark_workers),
                                        ("Ray node", reading.ray_nodes)) if count == 0]  # fmt: skip
    for run in reading.active:
        named, data = f"run {run.id} ({run.job})", {"RUN": run.id}
        if run.supervisor_pid is not None and not run.supervisor_alive:
            gone = f"{named} is {run.status}, but its supervisor (pid {run.supervisor_pid}) is gone"
            found.append(fail("runs", gone, "run-stuck", reap, data))
        elif run.supervisor_pid is None and run.age_s > START_TIMEOUT_S:
            found.append(warn("runs", f"{named} has been queued {run.age_s:.0f} s and no "
                                      "supervisor took it", "run-stuck",
                              f"`clusterkit cancel {run.id}`", data))  # fmt: skip
        elif run.status == "running" and missing:
            found.append(warn("runs", f"{named} may be stalled: no {' and no '.join(missing)} "
                                      f"is ALIVE; its supervisor fails it after "
                                      f"{reading.stall_timeout_s:.0f} s without what it uses",
                              "run-stuck", "`clusterkit up` starts again what is down "
                                           "(`clusterkit status` shows it)", data))  # fmt: skip
    for m in reading.out_of_memory:
        how = ("was killed as the kernel's OOM killer kills (most likely out of memory)"
               if m.killed else "failed out of memory")  # fmt: skip
        error = " ".join(m.error.split())
        error = error if len(error) <= ERROR_CHARS else error[: ERROR_CHARS - 3] + "..."
        found.append(warn("runs", f"run {m.id} ({m.what}) {how} {_ago(m.ago_s)}: {error}",
                          "job-out-of-memory", "run it again smaller (fewer rows, more "
                          "partitions) or with more memory: the runbook says how",
                          {"RUN": m.id, "STATE_DIR": reading.state_dir}))  # fmt: skip
    if found:
        return found
    going = len(reading.active)
    return [ok("runs", f"{going} going, each with its supervisor ({reading.total} in the store)"
               if going else f"none going ({reading.total} in the store)")]  # fmt: skip
