"""Records the kit keeps: one per run (:class:`RunRecord`, a run folder's ``record.json``)
and one per process it started and must find again (:class:`Daemon`).

A run's states: ``queued -> running -> succeeded | failed | cancelled``.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
#: The environment variable that marks every process of a run (driver, executors, Ray
#: workers), on every node: how a run's processes are found, sampled and stopped.
RUN_MARKER = "CLUSTERKIT_RUN_ID"
#: The environment variable that marks the processes every run shares (the Spark Connect
#: server and its executors): sampled with a run that uses them, and named as shared.
SHARED_MARKER = "CLUSTERKIT_SHARED"
#: In a run's folder once its job attached to the shared processes (the Connect server):
#: from then on, they are sampled with the run's own.
SHARED_FILE = "shared.json"
#: In a run's folder once its job named its input dataset (``{"path", "checksum"}``): the
#: supervisor copies it into the record's ``environment``.
INPUT_FILE = "input.json"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_run_id() -> str:
    """Sortable by start time, unique: 20261121-083012-3f2a."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class RunRecord:
    id: str
    job: str
    params: dict[str, Any]
    cluster: str
    provider: str
    status: str = "queued"
    created: str = field(default_factory=now_iso)
    started: str | None = None
    ended: str | None = None
    wall_s: float | None = None
    error: str | None = None
    exit_code: int | None = None
    metrics_enabled: bool = True
    supervisor: dict[str, Any] | None = None  # {"pid", "create_time", "node"}
    job_pid: int | None = None
    peak_rss_bytes: int | None = None
    nodes: dict[str, Any] = field(default_factory=dict)  # per-node peaks
    cancel_requested: str | None = None
    parent: str | None = None  # the run that submitted this one (a suite's steps)
    children: list[str] = field(default_factory=list)  # the runs this one submitted
    rerun_of: str | None = None  # the run whose job, parameters and engine this one repeats
    spark_session: str = "warm"  # warm: the cluster's Spark Connect server; classic: its own
    # the processes runs share that did this run's work too (the Connect server, its
    # executors), by node: counted in the peaks, and named here as shared
    shared_processes: dict[str, list[str]] = field(default_factory=dict)
    # what the run outlived (a Spark worker or Ray node lost, then back), said plainly
    notes: list[str] = field(default_factory=list)
    # what the run was made with (clusterkit.runs.environment): versions on the driver
    # node, each node's installed packages' hash, the lock's and the spec's hashes, the input
    environment: dict[str, Any] | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def elapsed_s(self, now: float) -> float | None:
        """Seconds it ran: ``wall_s`` once final, else since it started (None if it has not)."""
        if self.final and self.wall_s is not None:
            return self.wall_s
        if self.started is None:
            return None
        return max(0.0, now - datetime.fromisoformat(self.started).timestamp())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Daemon:
    """A long-running process the kit started: found again by pid *and* create time, so a
    reused pid is never mistaken for it."""

    name: str
    pid: int
    create_time: float
    argv: list[str]
    log: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Daemon:
        return cls(**data)
