"""What runs on a cluster's nodes, as ``up``, ``down``, ``provision`` and a job's environment
need it: :class:`Services`, done by :class:`~clusterkit.services.local.LocalServices` (this
machine's processes) or :class:`~clusterkit.services.playbooks.PlaybookServices` (the
playbooks, on remote nodes)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState
from clusterkit.services.health import ServiceHealth

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Stopped:
    """What stopping a cluster's services did on this machine: the processes ended and the
    ports then found free (none for services on other nodes, which go with the nodes)."""

    pids: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Provisioned:
    """What a run of the playbooks did: the tasks that ran and, per host, those that
    changed something (all zero when nothing had drifted), and which (``changed_tasks``; in
    check mode, those that would)."""

    tasks: int
    ok: dict[str, int]
    changed: dict[str, int]
    changed_tasks: list[str] = field(default_factory=list)  # "host: task", in order

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


class Services(Protocol):
    """A cluster's services. Contract: ``start`` returns once they are started (``up`` then
    waits for health); ``check`` names what is wrong besides what their APIs say, ``failed``
    what no waiting mends (None: nothing); ``repair`` says what it did; ``stop`` is
    idempotent; ``provision`` runs the installer again (refused where there is none)."""

    def plan(self, spec: Spec) -> dict[str, Any]: ...
    def runs_dir(self, paths: ClusterPaths) -> str: ...
    def start(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
              timeout_s: float) -> None: ...  # fmt: skip
    def repair(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
               timeout_s: float) -> str: ...  # fmt: skip
    def check(self, state: ClusterState, rows: list[ServiceHealth]) -> list[str]: ...
    def failed(self, state: ClusterState) -> str | None: ...
    def stop(self, state: ClusterState, paths: ClusterPaths, *, say: Progress) -> Stopped: ...
    def stop_found(self, spec: Spec, paths: ClusterPaths, *, say: Progress) -> Stopped: ...
    def provision(self, state: ClusterState, paths: ClusterPaths, *,
                  say: Progress) -> Provisioned: ...  # fmt: skip
    def job_env(self, state: ClusterState, paths: ClusterPaths) -> dict[str, str]: ...
