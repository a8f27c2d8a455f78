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

import yaml

from clusterkit.cluster import Cluster
from clusterkit.core.errors import ClusterkitError, NoCluster, StateError
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts
from clusterkit.services import health
from clusterkit.services.health import ServiceHealth

#: What a check can apply to: the cluster's provider, or "none" when the kit knows no cluster
#: (or cannot tell which provider a cluster that is down had).
KINDS = ("none", "local", "netns", "aws")

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
    that reads (None: down, or ``unreadable``, ``why`` then saying why and ``broken`` naming
    the file: ``cluster.json`` or the home's ``contexts.json``); ``cluster`` is the
    cluster when it is up and running (stopped: None). ``spec`` is the one whose ports and
    Java are checked: the cluster's, else the one given (the defaults)."""

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
    _health: Health | None = field(default=None, repr=False)
    _shared: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def status(self) -> str:
        """none, unreadable, down, stopped or up."""
        if self.unreadable:
            return "unreadable"
        if self.paths is None:
            return "none"
        if self.state is None:
            return "down"
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


def find_target(cluster: Cluster | None, *, home: Path, name: str | None = None,
                spec: Spec | None = None) -> Target:  # fmt: skip
    """``cluster`` when given; else the named (or current) cluster of the kit's ``home``, in
    whichever state it is. Never raises for what it finds: a state file that cannot be read
    is a Target that says so. A cluster it loads is the caller's to close."""
    if cluster is not None:
        return _of(home, cluster)
    given = spec or Spec()
    try:
        name, paths = Contexts(home).resolve(name)
    except NoCluster as exc:
        return Target(home, given, why=str(exc))
    except StateError as exc:  # contexts.json itself
        return Target(home, given, unreadable=True, why=str(exc), broken=Contexts(home).file)
    saved = saved_spec(paths)
    kind = saved.provider if saved is not None else "none"
    try:
        loaded = Cluster.load(paths)
    except ClusterkitError as exc:  # StateError, a provider the kit does not know
        return Target(home, saved or given, name, paths, kind, unreadable=True, why=str(exc),
                      broken=paths.state_file)  # fmt: skip
    if loaded is None:
        return Target(home, saved or given, name, paths, kind, why=f"cluster {name!r} is down")
    return _of(home, loaded)


def _of(home: Path, cluster: Cluster) -> Target:
    state = cluster.state
    running = cluster if state.power != "stopped" else None
    return Target(home, state.spec, state.name, cluster.paths, state.provider, state, running)
