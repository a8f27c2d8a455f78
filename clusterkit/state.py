"""Where clusters live on disk, and which one is current (like kubectl contexts).

The kit's home (``$CLUSTERKIT_HOME``, default ``~/.clusterkit``) holds ``contexts.json``:
the current cluster's name and, for every known cluster, its state folder. A cluster's state
folder holds ``cluster.json`` (what ``up`` started and where), its spec, logs, the Ray token,
the default storage root and the run store.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterkit.errors import NoCluster
from clusterkit.inventory import Inventory
from clusterkit.spec import Spec


def home() -> Path:
    """The kit's home folder."""
    return Path(os.environ.get("CLUSTERKIT_HOME", Path.home() / ".clusterkit")).expanduser()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True, default=str)
            out.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    def spark_dir(self) -> Path:
        return self.root / "spark"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def runs(self) -> Path:
        return self.root / "runs"


class Contexts:
    """``contexts.json`` in the kit's home: known clusters and the current one."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or home()
        self.file = self.root / "contexts.json"

    def _load(self) -> dict[str, Any]:
        if not self.file.exists():
            return {"current": None, "clusters": {}}
        data: dict[str, Any] = json.loads(self.file.read_text())
        return data

    def clusters(self) -> dict[str, Path]:
        return {name: Path(p) for name, p in self._load()["clusters"].items()}

    def current(self) -> str | None:
        current: str | None = self._load()["current"]
        return current

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
        """The named cluster, or the current one; NoCluster with the fix if there is none."""
        data = self._load()
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


def load_cluster_state(paths: ClusterPaths) -> dict[str, Any] | None:
    """The saved ``cluster.json``, or None when the cluster is down."""
    if not paths.state_file.exists():
        return None
    data: dict[str, Any] = json.loads(paths.state_file.read_text())
    return data


def storage_root_for(storage_root: str | None, paths: ClusterPaths) -> Path:
    """The cluster's storage root: the spec's ``storage.root``, else the state folder's data/."""
    return Path(storage_root).expanduser().resolve() if storage_root else paths.data


def new_cluster_state(
    spec: Spec, provider: str, paths: ClusterPaths, *, storage_root: Path | str,
    inventory: Inventory, endpoints: dict[str, str], started_at: str,
) -> dict[str, Any]:  # fmt: skip
    """The keys every ``cluster.json`` has; each provider's path adds its own."""
    return {
        "name": spec.name,
        "provider": provider,
        "spec": spec.model_dump(),
        "started_at": started_at,
        "state_dir": str(paths.root),
        "storage_root": str(storage_root),
        "inventory": inventory.to_dict(),
        "endpoints": endpoints,
    }
