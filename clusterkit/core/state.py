"""Where clusters live on disk, which one is current (like kubectl contexts), and what a
cluster that is up is made of (:class:`ClusterState`, its ``cluster.json``).

The kit's home (``$CLUSTERKIT_HOME``, default ``~/.clusterkit``) holds ``contexts.json``:
the current cluster's name and, for every known cluster, its state folder. A command given no
cluster acts on ``$CLUSTERKIT_CLUSTER`` when it is set, else on the current one. A cluster's state
folder holds ``cluster.json`` (what ``up`` started and where), its spec, logs, the Ray token,
the default storage root and the run store (on a remote cluster, copies of the master's runs).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.core.errors import NoCluster, StateError, StateLayoutError
from clusterkit.core.files import write_json_atomic
from clusterkit.core.inventory import Inventory, SshSettings
from clusterkit.core.records import Daemon
from clusterkit.core.spec import Spec

#: The version of ``cluster.json``'s layout this kit writes and reads.
SCHEMA = 3
LOOPBACK = "127.0.0.1"
#: Names the cluster a command acts on when it is given none (over the current one).
CLUSTER_ENV = "CLUSTERKIT_CLUSTER"


def home() -> Path:
    """The kit's home folder."""
    return Path(os.environ.get("CLUSTERKIT_HOME", Path.home() / ".clusterkit")).expanduser()


@dataclass(frozen=True)
class ClusterPaths:
    """The files of one cluster's state folder."""

    root: Path

    @property
    def state_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.yaml"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def ray_token(self) -> Path:
        return self.root / "ray-token"

    @property
    def spark_connect_token(self) -> Path:
        return self.root / "spark-connect-token"

    @property
    def pids(self) -> Path:
        return self.root / "pids"

    @property
    def spark_secret(self) -> Path:
        return self.root / "spark-secret"

    @property
    def spark_dir(self) -> Path:
        return self.root / "spark"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"


@dataclass(frozen=True)
class Endpoints:
    """How clients reach the services: what ``status`` prints and jobs are given."""

    spark_master_url: str
    spark_master_ui: str
    spark_worker_ui: str
    ray_address: str
    ray_dashboard: str
    ray_client: str
    spark_connect_url: str  # on the master's loopback (`clusterkit tunnel` brings it here)

    @classmethod
    def for_spec(cls, spec: Spec, host: str = LOOPBACK, worker: str | None = None) -> Endpoints:
        """The spec's ports on ``host`` (the master); the worker's UI on ``worker``; the Spark
        Connect server on the master's loopback, named ``localhost`` (its client then uses
        the token over a local channel, not TLS)."""
        ports = spec.ports
        return cls(
            spark_master_url=f"spark://{host}:{ports.spark_master}",
            spark_master_ui=f"http://{host}:{ports.spark_master_ui}",
            spark_worker_ui=f"http://{worker or host}:{ports.spark_worker_ui}",
            ray_address=f"{host}:{ports.ray_gcs}",
            ray_dashboard=f"http://{host}:{ports.ray_dashboard}",
            ray_client=f"ray://{host}:{ports.ray_client}",
            spark_connect_url=f"sc://localhost:{ports.spark_connect}",
        )


@dataclass(frozen=True)
class JobSizing:
    """What each job is given: a worker's cores and memory, and the driver's memory."""

    worker_cores: int
    worker_memory_mb: int
    driver_memory_mb: int


@dataclass
class ClusterState:
    """A cluster that is up: ``cluster.json``, written by ``up`` as soon as anything of it
    exists (so that ``down`` can remove it) and again once it is healthy.

    ``node_python`` is the Python of the nodes' environment (drivers, supervisors and
    samplers run with it); ``runs_dir`` the driver node's run folders. The ``daemons``,
    ``java_home`` and ``ray_temp_dir`` are the local services'; ``provisioned`` the
    playbooks' task counts; ``power`` whether ``clusterkit stop`` stopped it.
    """

    name: str
    provider: str
    spec: Spec
    started_at: str
    state_dir: str
    storage_root: str
    inventory: Inventory
    endpoints: Endpoints
    node_python: str
    runs_dir: str
    ssh: SshSettings | None = None
    sizing: JobSizing | None = None
    daemons: list[Daemon] = field(default_factory=list)
    java_home: str | None = None
    ray_temp_dir: str | None = None
    provisioned: dict[str, Any] | None = None
    #: "running", or "stopped" by ``clusterkit stop`` (nodes, disks and data kept) at
    #: ``stopped_at``; a file written before stop/start existed loads as running.
    power: str = "running"
    stopped_at: str | None = None
    schema: int = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["spec"] = self.spec.model_dump()
        data["ssh"] = self.ssh.to_dict() if self.ssh else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterState:
        return cls(
            **{
                **data,
                "spec": Spec.model_validate(data["spec"]),
                "inventory": Inventory.from_dict(data["inventory"]),
                "endpoints": Endpoints(**data["endpoints"]),
                "ssh": SshSettings.from_dict(data["ssh"]) if data.get("ssh") else None,
                "sizing": JobSizing(**data["sizing"]) if data.get("sizing") else None,
                "daemons": [Daemon.from_dict(d) for d in data.get("daemons", [])],
            }
        )

    def save(self, paths: ClusterPaths) -> None:
        write_json_atomic(paths.state_file, self.to_dict())

    @classmethod
    def load(cls, paths: ClusterPaths) -> ClusterState | None:
        """The saved state, or None when the cluster is down. StateError, saying what to do,
        when the file cannot be read as this kit writes it."""
        path = paths.state_file
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(
                f"{path}: cannot be read ({exc.strerror}); check its owner and mode"
            ) from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise StateError(
                f"{path} is not valid JSON ({exc}); if nothing of the cluster runs any more, "
                f"delete it and run `clusterkit up` again"
            ) from exc
        schema = data.get("schema") if isinstance(data, dict) else None
        schema = schema if isinstance(schema, int) else 1  # the first layout had none
        if schema != SCHEMA:
            raise StateLayoutError(
                f"{path} was written by {'an older' if schema < SCHEMA else 'a newer'} "
                f"clusterkit (layout {schema}; this one reads {SCHEMA}): take the cluster "
                f"down with the kit that started it, or, if nothing of it runs any more, "
                f"delete the file"
            )
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateError(
                f"{path} is missing or has a malformed field ({exc}); if nothing of the "
                f"cluster runs any more, delete it and run `clusterkit up` again"
            ) from exc


class Contexts:
    """``contexts.json`` in the kit's home: known clusters and the current one."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home()
        self.file = self.root / "contexts.json"

    def _load(self) -> dict[str, Any]:
        if not self.file.exists():
            return {"current": None, "clusters": {}}
        try:
            data: dict[str, Any] = json.loads(self.file.read_text())
        except OSError as exc:  # e.g. made by root (a `sudo clusterkit ...`)
            raise StateError(f"{self.file} cannot be read ({exc.strerror}): see "
                             "docs/runbooks/state-permissions.md") from exc  # fmt: skip
        except ValueError as exc:
            raise StateError(
                f"{self.file} is not valid JSON ({exc}); fix or delete it (it only lists "
                f"known clusters; their state folders are kept)"
            ) from exc
        if not (
            isinstance(data, dict)
            and isinstance(data.get("clusters"), dict)
            and (data.get("current") is None or isinstance(data["current"], str))
        ):
            raise StateError(f"{self.file} is not a list of clusters as the kit writes it; fix "
                             "or delete it (their state folders are kept)")  # fmt: skip
        data.setdefault("current", None)
        return data

    def clusters(self) -> dict[str, Path]:
        return {name: Path(p) for name, p in self._load()["clusters"].items()}

    def current(self) -> str | None:
        """The cluster `use` (or the latest `up`) made current."""
        current: str | None = self._load()["current"]
        return current

    def chosen(self) -> str | None:
        """The cluster a command given none acts on: $CLUSTERKIT_CLUSTER, else the current one."""
        return os.environ.get(CLUSTER_ENV) or self.current()

    def add(self, name: str, state_dir: Path, *, make_current: bool = True) -> None:
        data = self._load()
        data["clusters"][name] = str(state_dir)
        if make_current:
            data["current"] = name
        write_json_atomic(self.file, data)

    def remove(self, name: str) -> None:
        data = self._load()
        data["clusters"].pop(name, None)
        if data["current"] == name:
            data["current"] = next(iter(data["clusters"]), None)
        write_json_atomic(self.file, data)

    def use(self, name: str) -> None:
        data = self._load()
        if name not in data["clusters"]:
            raise NoCluster(self._unknown(name, data))
        data["current"] = name
        write_json_atomic(self.file, data)

    def resolve(self, name: str | None) -> tuple[str, ClusterPaths]:
        """The named cluster, else $CLUSTERKIT_CLUSTER's, else the current one; NoCluster with
        the fix if there is none."""
        data = self._load()
        if name is None and os.environ.get(CLUSTER_ENV):
            name = os.environ[CLUSTER_ENV]
            if name not in data["clusters"]:
                known = ", ".join(sorted(data["clusters"])) or "none"
                raise NoCluster(f"{CLUSTER_ENV}={name} names no known cluster (known: "
                                f"{known}); unset it, or start that cluster with `clusterkit "
                                "up`")  # fmt: skip
        if name is None:
            name = data["current"]
            if name is None:
                raise NoCluster("no cluster is up: start one with `clusterkit up`")
        if name not in data["clusters"]:
            raise NoCluster(self._unknown(name, data))
        return name, ClusterPaths(Path(data["clusters"][name]))

    @staticmethod
    def _unknown(name: str, data: dict[str, Any]) -> str:
        known = ", ".join(sorted(data["clusters"])) or "none"
        return f"no cluster named {name!r} (known: {known}); start it with `clusterkit up`"


def default_state_dir(name: str, state_dir: str | None) -> Path:
    """A cluster's state folder: the spec's ``state_dir``/clusters/NAME, else under home."""
    base = Path(state_dir).expanduser() if state_dir else home()
    return (base / "clusters" / name).resolve()


def paths_for(spec: Spec) -> ClusterPaths:
    """The state folder of the cluster ``spec`` describes."""
    return ClusterPaths(default_state_dir(spec.name, spec.state_dir))


def storage_root_for(storage_root: str | None, paths: ClusterPaths) -> Path:
    """The cluster's storage root: the spec's ``storage.root``, else the state folder's data/."""
    return Path(storage_root).expanduser().resolve() if storage_root else paths.data
