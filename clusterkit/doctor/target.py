"""What doctor looks at: the cluster the kit knows (the one given, else the named or current
one of the kit's home) in whichever state it is, found once and shared by every check.

Nothing here starts anything: the cluster's state files are read, and its services' health
(loopback HTTP with short timeouts, what ``status`` reads) only when a check asks, once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from clusterkit.cluster import Cluster
from clusterkit.core import versions
from clusterkit.core.errors import ClusterkitError, NoCluster, StateError, StateLayoutError
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts
from clusterkit.exec import processes
from clusterkit.services import health
from clusterkit.services.health import ServiceHealth
from clusterkit.services.local import KEEPER, keeper_daemon

#: What a check can apply to: the cluster's provider, or "none" when the kit knows no cluster
#: (or cannot tell which provider a cluster that is down had).
KINDS = ("none", "local", "netns", "aws")
#: Why a state file cannot be read: it does not parse or lacks a field (``damaged``), it
#: cannot be opened (``permissions``: its owner or mode), or another version of the kit wrote
#: it (``version``: another layout, or other Spark, Ray or Python versions than this kit's).
PROBLEMS = ("damaged", "permissions", "version")

T = TypeVar("T")


@dataclass(frozen=True)
class Health:
    """The services as ``status`` reads them: a row per service, and what keeps the cluster
    from being healthy (empty: healthy)."""

    rows: list[ServiceHealth]
    problems: list[str]
    unread: str | None = None  # why they could not be read at all (a lost token, a master gone)


@dataclass
class Target:
    """The cluster doctor looks at.

    ``paths`` is None when the kit knows no cluster; ``state`` is its ``cluster.json`` when
    that reads (None: down, or ``unreadable``, ``why`` then saying why, ``problem`` which of
    :data:`PROBLEMS` it is and ``broken`` naming the file: ``cluster.json`` or the home's
    ``contexts.json``); ``cluster`` is the cluster when it is up and running (stopped: None;
    ``gone``, naming them, when none of the processes it records runs any more: a crash of
    this machine). ``spec`` is the one whose ports and Java are checked: the cluster's, else
    the one given (the defaults)."""

    home: Path
    spec: Spec
    name: str | None = None
    paths: ClusterPaths | None = None
    kind: str = "none"
    state: ClusterState | None = None
    cluster: Cluster | None = None
    unreadable: bool = False
    why: str = ""
    broken: Path | None = None
    problem: str = ""
    gone: list[str] = field(default_factory=list)
    _health: Health | None = field(default=None, repr=False)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """none, unreadable, down, stopped, crashed (its state says up, but none of its
        processes runs) or up."""
        if self.unreadable:
            return "unreadable"
        if self.paths is None:
            return "none"
        if self.state is None:
            return "down"
        if self.gone:
            return "crashed"
        return "up" if self.cluster is not None else "stopped"

    @property
    def up(self) -> bool:
        return self.cluster is not None

    def health(self) -> Health | None:
        """The services' health, read once (None: the cluster is not up). Never raises: a
        reading that failed is a problem saying why."""
        if self.cluster is None:
            return None
        if self._health is None:
            try:
                rows = self.cluster.read_health()  # raises what health() makes a row of
                found = health.problems(self.cluster.state.inventory, rows)
            except (ClusterkitError, OSError) as exc:  # e.g. the Ray token file is gone
                self._health = Health([], [], unread=str(exc))
            else:
                self._health = Health(rows, found)
        return self._health

    def shared(self, key: str, read: Callable[[], T]) -> T:
        """A reading several checks share (the nodes' SSH probe), made by ``read`` the first
        time ``key`` is asked for and the same object after."""
        if key not in self._shared:
            self._shared[key] = read()
        found: T = self._shared[key]
        return found


def saved_spec(paths: ClusterPaths) -> Spec | None:
    """The spec the cluster's last ``up`` saved (``spec.yaml``), or None when it cannot be
    read as one."""
    try:
        data = yaml.safe_load(paths.spec_file.read_text())
        return Spec.model_validate(data) if isinstance(data, dict) else None
    except (OSError, yaml.YAMLError, ValueError):
        return None


def recorded_python(paths: ClusterPaths) -> str | None:
    """The Python (major.minor) ``cluster.json`` says the cluster was brought up with, read
    without validating the rest (None: no such file or field)."""
    try:
        data: Any = json.loads(paths.state_file.read_text())
        value = data["spec"]["versions"]["python"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def other_versions(exc: ClusterkitError, path: Path) -> str | None:
    """What says that ``exc`` (raised reading ``path``) is another version of the kit's
    state: another layout (:class:`StateLayoutError`'s own message), or the Spark, Ray or
    Python versions it records (``spec.versions``, which this kit's must match) not being
    this kit's. None when it is not that."""
    if isinstance(exc, StateLayoutError):
        return str(exc)
    cause = exc.__cause__
    if not isinstance(cause, pydantic.ValidationError):
        return None
    mine = {"spark": versions.spark_version, "ray": versions.ray_version,
            "python": versions.python_version}  # fmt: skip
    found = [(str(e["loc"][1]), e["input"]) for e in cause.errors()
             if e["loc"][:1] == ("versions",) and e["loc"][1:] and e["loc"][1] in mine]  # fmt: skip
    if not found:
        return None
    recorded = ", ".join(f"{name} {value}" for name, value in found)
    here = ", ".join(f"{name} {mine[name]()}" for name, _ in found)
    return (f"{path} was written by another version of the kit: it records {recorded}; this "
            f"kit has {here}")  # fmt: skip


def state_problem(exc: ClusterkitError, path: Path) -> tuple[str, str]:
    """Which of :data:`PROBLEMS` keeps ``path`` from being read, and the line that says so."""
    if isinstance(exc.__cause__, PermissionError):
        return "permissions", str(exc)
    other = other_versions(exc, path)
    if other is not None:
        return "version", other
    return "damaged", str(exc)


def find_target(cluster: Cluster | None, *, home: Path, name: str | None = None,
                spec: Spec | None = None) -> Target:  # fmt: skip
    """``cluster`` when given; else the named (or current) cluster of the kit's ``home``, in
    whichever state it is. Never raises for what it finds: a state file that cannot be read
    is a Target that says so. A cluster given is the caller's to close; one it loads, the
    Target's (closed already when the Target keeps none)."""
    if cluster is not None:
        return _of(home, cluster)
    given = spec or Spec()
    try:
        name, paths = Contexts(home).resolve(name)
    except NoCluster as exc:
        return Target(home, given, why=str(exc))
    except StateError as exc:  # contexts.json itself
        problem, why = state_problem(exc, Contexts(home).file)
        return Target(home, given, unreadable=True, why=why, broken=Contexts(home).file,
                      problem=problem)  # fmt: skip
    saved = saved_spec(paths)
    kind = saved.provider if saved is not None else "none"
    try:
        loaded = Cluster.load(paths)
    except ClusterkitError as exc:  # StateError, a provider the kit does not know
        problem, why = state_problem(exc, paths.state_file)
        return Target(home, saved or given, name, paths, kind, unreadable=True, why=why,
                      broken=paths.state_file, problem=problem)  # fmt: skip
    if loaded is None:
        return Target(home, saved or given, name, paths, kind, why=f"cluster {name!r} is down")
    target = _of(home, loaded)
    if target.cluster is None:
        loaded.close()
    return target


def gone_processes(state: ClusterState, paths: ClusterPaths) -> list[str]:
    """The processes a running cluster of this machine records (its daemons and keeper) when
    not one of them runs any more, as ``name (pid N)``: what a crash or a restart of this
    machine leaves. Empty when any runs, or the cluster records none (a remote one)."""
    keeper = keeper_daemon(paths)
    recorded = [d for d in state.daemons if d.name != KEEPER] + ([keeper] if keeper else [])
    if not recorded or any(processes.is_alive(d) for d in recorded):
        return []
    return [f"{d.name} (pid {d.pid})" for d in recorded]


def _of(home: Path, cluster: Cluster) -> Target:
    state = cluster.state
    running = cluster if state.power != "stopped" else None
    gone = gone_processes(state, cluster.paths) if running is not None else []
    return Target(home, state.spec, state.name, cluster.paths, state.provider, state,
                  None if gone else running, gone=gone)  # fmt: skip
