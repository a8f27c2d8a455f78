"""Live readings of a cluster, for consoles (the TUI now; an idle guard later).

:class:`LiveSource` reads a cluster through the same core calls as ``clusterkit status`` and
``clusterkit run``. :class:`HealthBoard` keeps every service's last reading with the time its
source last answered, and keeps the rows of a source that stopped answering as stale (last
known) rather than dropping them. :class:`NodeHistory` keeps recent CPU and memory per node.
Nothing here imports a UI framework, and nothing here raises for a cluster that is down.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from clusterkit.cluster import Cluster, stopped_message, submit_job
from clusterkit.core.errors import NoCluster
from clusterkit.core.records import RunRecord
from clusterkit.core.state import Contexts
from clusterkit.metrics.nodes import NodeWatch
from clusterkit.power import cost_summary, idle_guard_view
from clusterkit.runs.store import FolderRunStore, RunStore
from clusterkit.services.health import ServiceHealth

#: a reading older than this is marked stale even if its source has not failed outright
STALE_AFTER_S = 6.0
#: Seconds between two readings of a remote cluster's idle guard and cost.
EXTRAS_EVERY_S = 30.0
HISTORY_POINTS = 60


@dataclass(frozen=True)
class ClusterInfo:
    """Which cluster a console is looking at and whether it is up."""

    name: str | None
    state: str  # up | down | stopped (`clusterkit stop`) | none (no cluster known at all)
    provider: str | None = None
    started_at: str | None = None
    message: str = ""  # for down/stopped/none: what is the matter and what to do
    #: a remote cluster's idle guard ("idle for 12 min, stops in 48 min") and, on AWS, its
    #: cost ("$0.1939/h now, $1.23 since up"); "" when there is none
    guard: str = ""
    cost: str = ""

    def uptime_s(self, now: float) -> float | None:
        if self.state != "up" or self.started_at is None:
            return None
        return max(0.0, now - datetime.fromisoformat(self.started_at).timestamp())


class ClusterSource(Protocol):
    """What a console reads: :class:`LiveSource` for a real cluster (tests give a fixed one)."""

    def info(self) -> ClusterInfo: ...
    def nodes(self) -> list[dict[str, Any]]: ...
    def services(self) -> list[ServiceHealth]: ...
    def store(self) -> RunStore | None: ...
    def reap(self, record: RunRecord) -> RunRecord: ...
    def submit(self, job: str, args: Sequence[str]) -> RunRecord: ...
    def cancel(self, run_id: str) -> RunRecord: ...
    def close(self) -> None: ...


class LiveSource:
    """A cluster (the named one, else the current one) read through the core.

    Every method is safe to call from a worker thread and re-resolves the cluster, so a
    cluster brought up or down while a console watches is seen as such. The cluster's
    runners (one SSH connection per remote node) and its nodes' samplers are kept while it
    stays the same, and closed when it changes and by :meth:`close`.
    """

    def __init__(self, name: str | None = None) -> None:
        self.requested = name
        self._loaded: tuple[tuple[str, int], Cluster] | None = None
        self._watch: NodeWatch | None = None
        self._lock = threading.RLock()  # the console's workers read from several threads
        self._extras_read: tuple[float, str, str] | None = None

    def _forget(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        if self._loaded is not None:
            self._loaded[1].close()
            self._loaded = None

    def _cluster(self) -> tuple[ClusterInfo, Cluster | None]:
        with self._lock:
            return self._resolve()

    def _resolve(self) -> tuple[ClusterInfo, Cluster | None]:
        try:
            name, paths = Contexts().resolve(self.requested)
        except NoCluster as exc:
            return ClusterInfo(self.requested, "none", message=str(exc)), None
        try:
            stamp = (str(paths.state_file), os.stat(paths.state_file).st_mtime_ns)
        except OSError:
            self._forget()
            fix = f"start it with `clusterkit up` (state in {paths.root})"
            return ClusterInfo(name, "down", message=f"cluster {name!r} is down: {fix}"), None
        if self._loaded is None or self._loaded[0] != stamp:
            self._forget()
            loaded = Cluster.load(paths)
            if loaded is None:
                return ClusterInfo(name, "down", message=f"cluster {name!r} is down"), None
            self._loaded = (stamp, loaded)
        found = self._loaded[1]
        if found.state.power == "stopped":  # nothing to read: its services are stopped
            return ClusterInfo(name, "stopped", found.state.provider,
                               message=stopped_message(found.state)), None  # fmt: skip
        guard, cost = self._extras(found)
        return ClusterInfo(name, "up", found.state.provider, found.state.started_at,
                           guard=guard, cost=cost), found  # fmt: skip

    def _extras(self, found: Cluster) -> tuple[str, str]:
        """The idle guard's line and the cost line, read at most every :data:`EXTRAS_EVERY_S`
        (each asks the master or AWS once)."""
        now = time.monotonic()
        if found.state.provider == "local":
            return "", ""
        if self._extras_read is None or now - self._extras_read[0] > EXTRAS_EVERY_S:
            guard = idle_guard_view(found)
            spend = cost_summary(found)
            self._extras_read = (now, guard.get("line", ""), (spend or {}).get("line", ""))
        return self._extras_read[1], self._extras_read[2]

    def info(self) -> ClusterInfo:
        return self._cluster()[0]

    def nodes(self) -> list[dict[str, Any]]:
        """Every node's latest CPU and memory, from a sampler kept running on each node;
        [] when the cluster is down."""
        with self._lock:
            found = self._resolve()[1]
            if found is None:
                return []
            if self._watch is None:
                self._watch = found.node_watch()
            watch = self._watch
        return watch.latest()

    def services(self) -> list[ServiceHealth]:
        """Every service read through its API (rows of a silent API say so); [] when down."""
        found = self._cluster()[1]
        return found.health() if found is not None else []

    def store(self) -> RunStore | None:
        """The cluster's run store (also for a cluster that is down: its history stays); a
        remote cluster's copies the master's runs in when refreshed."""
        found = self._cluster()[1]
        if found is not None:
            return found.runs().store
        try:
            _, paths = Contexts().resolve(self.requested)
        except NoCluster:
            return None
        return FolderRunStore(paths.runs)

    def reap(self, record: RunRecord) -> RunRecord:
        """``record``, recorded failed when its supervisor is gone (as ``clusterkit runs``)."""
        found = self._cluster()[1]
        return found.runs().reap_if_orphaned(record) if found is not None else record

    def submit(self, job: str, args: Sequence[str]) -> RunRecord:
        """As ``clusterkit run --detach``: raises the same errors (ParamsRefused, NoCluster)."""
        info, found = self._cluster()
        why = NoCluster(info.message or f"cluster {info.name!r} is down")
        return submit_job(job, args, cluster=found if found is not None else why)

    def cancel(self, run_id: str) -> RunRecord:
        """As ``clusterkit cancel``: waits until the run is recorded cancelled."""
        found = self._cluster()[1]
        if found is None:
            raise NoCluster(f"cluster {self.requested or 'current'} is down: nothing runs")
        return found.runs().cancel(run_id)

    def close(self) -> None:
        with self._lock:
            self._forget()


@dataclass(frozen=True)
class ServiceRow:
    health: ServiceHealth
    read_at: float | None  # when its source last answered (None: never, while watched)
    stale: bool  # its source did not answer at the last reading: this is the last known

    def age_s(self, now: float) -> float | None:
        return None if self.read_at is None else max(0.0, now - self.read_at)

    def is_stale(self, now: float, *, after_s: float = STALE_AFTER_S) -> bool:
        age = self.age_s(now)
        return self.stale or age is None or age > after_s


class HealthBoard:
    """The services as last read, keyed by :attr:`ServiceHealth.key`, in reading order."""

    def __init__(self) -> None:
        self.rows: dict[str, ServiceRow] = {}

    def update(self, readings: Iterable[ServiceHealth], now: float) -> None:
        readings = list(readings)
        silent = {r.source for r in readings if not r.answered}
        fresh: dict[str, ServiceRow] = {}
        for health in readings:
            previous = self.rows.get(health.key)
            if health.answered:
                fresh[health.key] = ServiceRow(health, now, stale=False)
            else:
                fresh[health.key] = ServiceRow(
                    health, previous.read_at if previous else None, stale=True
                )
        for key, row in self.rows.items():
            if key not in fresh and row.health.source in silent:
                fresh[key] = ServiceRow(row.health, row.read_at, stale=True)
        self.rows = fresh


class NodeHistory:
    """The latest sample of every node and its recent CPU and memory percentages."""

    def __init__(self, points: int = HISTORY_POINTS) -> None:
        self.points = points
        self.latest: dict[str, dict[str, Any]] = {}
        self.read_at: dict[str, float] = {}
        self.cpu: dict[str, deque[float]] = {}
        self.mem: dict[str, deque[float]] = {}

    def update(self, samples: Iterable[dict[str, Any]], now: float) -> None:
        """Take every node's latest sample; a node no longer among them (a worker ``scale``
        removed) is forgotten."""
        samples = list(samples)
        if samples:
            names = {str(sample["name"]) for sample in samples}
            for gone in set(self.latest) - names:
                for table in (self.latest, self.read_at, self.cpu, self.mem):
                    table.pop(gone, None)
        for sample in samples:
            name = str(sample["name"])
            self.latest[name] = sample  # a node that did not answer: its ``error``, no figures
            if "error" in sample:
                continue
            self.read_at[name] = now
            self.cpu.setdefault(name, deque(maxlen=self.points)).append(sample["cpu_percent"])
            self.mem.setdefault(name, deque(maxlen=self.points)).append(sample["mem_percent"])

    def forget_all(self) -> None:
        """The cluster went down: its nodes are no longer there to show."""
        self.latest.clear()
        self.read_at.clear()
        self.cpu.clear()
        self.mem.clear()
