"""The cluster's runs: none says it is going while its supervisor is gone, and none goes on
without what it needs (the stall rule of :mod:`clusterkit.runs.stall`, seen from outside:
an ALIVE Spark worker and an ALIVE Ray node).

:func:`read_runs` reads the run folders of this machine (the local provider's runs) and
asks whether each active run's supervisor lives; :func:`judge_runs` is pure.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from datetime import datetime

from clusterkit.core.records import ACTIVE, RunRecord
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.exec.local import LocalRunner
from clusterkit.runs.launcher import START_TIMEOUT_S


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
class RunsReading:
    """The active runs, how many runs the store holds, whether the cluster is up, and its
    ALIVE Spark workers and Ray nodes now (None: not read, the cluster being down) with the
    spec's ``runs.stall_timeout``."""

    active: list[RunReading]
    total: int
    cluster_up: bool
    spark_workers: int | None = None
    ray_nodes: int | None = None
    stall_timeout_s: float = 120.0


def _age(record: RunRecord, now: float) -> float:
    try:
        return max(0.0, now - datetime.fromisoformat(record.created).timestamp())
    except (TypeError, ValueError):
        return 0.0


def read_runs(target: Target) -> RunsReading:
    assert target.paths is not None  # a check of a known cluster
    folder, here, now = target.paths.runs, LocalRunner(), time.time()
    records = sorted(folder.glob("*/record.json")) if folder.is_dir() else []
    active = []
    for path in records:
        with contextlib.suppress(OSError, ValueError, TypeError):  # the state check says so
            record = RunRecord.from_dict(json.loads(path.read_text()))
            if record.status not in ACTIVE:
                continue
            pid = int(record.supervisor["pid"]) if record.supervisor else None
            alive = pid is not None and here.alive(pid, marker=record.id)
            if pid is not None and not alive:  # it may have ended just now: read it once more
                record = RunRecord.from_dict(json.loads(path.read_text()))
                if record.status not in ACTIVE:
                    continue
            active.append(RunReading(record.id, record.job, record.status, _age(record, now),
                                     pid, alive))  # fmt: skip
    found = target.health()
    spark = ray = None
    if found is not None:
        spark = sum(r.name == "spark-worker" and r.state == "up" for r in found.rows)
        ray = sum(r.name == "ray-node" and r.state == "up" for r in found.rows)
    return RunsReading(active, len(records), target.up, spark, ray,
                       target.spec.runs.stall_timeout)  # fmt: skip


def judge_runs(reading: RunsReading) -> list[Finding]:
    """Per active run (its id the runbook's RUN): its supervisor gone: FAIL (run-stuck;
    ``clusterkit runs`` records it failed and stops its processes); queued longer than a
    supervisor takes to start (60 s) with none: WARN (run-stuck); running while the cluster
    has no ALIVE Spark worker or no ALIVE Ray node: WARN (run-stuck: its supervisor fails it
    after ``runs.stall_timeout`` if it uses that engine). One OK line otherwise."""
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
    if found:
        return found
    going = len(reading.active)
    return [ok("runs", f"{going} going, each with its supervisor ({reading.total} in the store)"
               if going else f"none going ({reading.total} in the store)")]  # fmt: skip
