"""Health of Spark, Ray and storage, read through their own HTTP APIs.

Each reader returns :class:`ServiceHealth` rows and never raises for a service that is down
or not answering: that is a state (``down``) with the reason in ``detail``.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

TIMEOUT_S = 2.0


@dataclass
class ServiceHealth:
    name: str  # e.g. spark-master, spark-worker, ray-head, ray-node, storage
    state: str  # up | down
    address: str
    url: str | None = None
    detail: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    answered: bool = True  # False: its API did not answer, so ``state`` is "down" by default

    @property
    def source(self) -> str:
        """The API this row was read from: spark, ray, storage (hdfs later)."""
        return self.name.split("-")[0]

    @property
    def key(self) -> str:
        """Stable identity of the row across readings (a table's row key)."""
        return f"{self.name} {self.address}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _get_json(url: str, *, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = requests.get(url, headers=headers, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def spark_master_json(ui_url: str) -> dict[str, Any]:
    """The Spark master's /json/ status (raises requests exceptions when unreachable)."""
    data: dict[str, Any] = _get_json(f"{ui_url}/json/")
    return data


def spark_health(master_url: str, ui_url: str) -> list[ServiceHealth]:
    """The master and every worker it lists, with cores and memory."""
    try:
        data = spark_master_json(ui_url)
    except (requests.RequestException, ValueError) as exc:
        reason = f"{ui_url}/json/ not answering: {type(exc).__name__}"
        return [ServiceHealth("spark-master", "down", master_url, ui_url, reason, answered=False)]
    master = ServiceHealth(
        "spark-master",
        "up" if data.get("status") == "ALIVE" else "down",
        data.get("url", master_url),
        ui_url,
        f"status {data.get('status')}, {data.get('aliveworkers', 0)} alive worker(s)",
        {
            "alive_workers": data.get("aliveworkers", 0),
            "active_apps": len(data.get("activeapps", [])),
        },
    )
    rows = [master]
    for worker in data.get("workers", []):
        state = worker.get("state", "UNKNOWN")
        rows.append(
            ServiceHealth(
                "spark-worker",
                "up" if state == "ALIVE" else "down",
                f"{worker.get('host')}:{worker.get('port')}",
                worker.get("webuiaddress"),
                f"{state}, {worker.get('cores')} cores, {worker.get('memory')} MiB",
                {
                    "id": worker.get("id"),
                    "cores": worker.get("cores"),
                    "cores_used": worker.get("coresused"),
                    "memory_mb": worker.get("memory"),
                    "memory_used_mb": worker.get("memoryused"),
                },
            )
        )
    return rows


def spark_master_alive(ui_url: str) -> bool:
    """True once the master answers and has been elected leader (status ALIVE)."""
    try:
        return spark_master_json(ui_url).get("status") == "ALIVE"
    except (requests.RequestException, ValueError):
        return False


def alive_spark_workers(ui_url: str) -> int:
    """How many workers the master lists ALIVE (0 when it does not answer)."""
    try:
        data = spark_master_json(ui_url)
    except (requests.RequestException, ValueError):
        return 0
    return sum(1 for w in data.get("workers", []) if w.get("state") == "ALIVE")


def ray_nodes(dashboard_url: str, token: str) -> list[dict[str, Any]]:
    """Ray's node summaries from the dashboard (raises requests exceptions when unreachable)."""
    data = _get_json(f"{dashboard_url}/nodes?view=summary", token=token)
    nodes: list[dict[str, Any]] = data["data"]["summary"]
    return nodes


def alive_ray_nodes(dashboard_url: str, token: str) -> int:
    try:
        nodes = ray_nodes(dashboard_url, token)
    except (requests.RequestException, ValueError, KeyError):
        return 0
    return sum(1 for n in nodes if n.get("raylet", {}).get("state") == "ALIVE")


def ray_health(gcs_address: str, dashboard_url: str, token: str) -> list[ServiceHealth]:
    """The Ray head (GCS and dashboard) and every node it lists."""
    try:
        nodes = ray_nodes(dashboard_url, token)
    except (requests.RequestException, ValueError, KeyError) as exc:
        reason = f"{dashboard_url} not answering: {type(exc).__name__}"
        return [
            ServiceHealth("ray-head", "down", gcs_address, dashboard_url, reason, answered=False)
        ]
    rows = [
        ServiceHealth(
            "ray-head", "up", gcs_address, dashboard_url, f"{len(nodes)} node(s), token auth on"
        )
    ]
    for node in nodes:
        raylet = node.get("raylet", {})
        resources = raylet.get("resourcesTotal", {})
        state = raylet.get("state", "UNKNOWN")
        rows.append(
            ServiceHealth(
                "ray-node",
                "up" if state == "ALIVE" else "down",
                f"{raylet.get('nodeManagerAddress')}:{raylet.get('nodeManagerPort')}",
                None,
                f"{state}, {resources.get('CPU', 0):g} CPUs"
                + (", head" if raylet.get("isHeadNode") else ""),
                {
                    "node_id": raylet.get("nodeId"),
                    "cpus": resources.get("CPU"),
                    "object_store_bytes": resources.get("objectStoreMemory"),
                },
            )
        )
    return rows


def storage_health(root: str) -> ServiceHealth:
    """A local storage root: present and writable, with free space."""
    path = Path(root)
    if not path.is_dir():
        return ServiceHealth("storage", "down", root, None, "folder missing")
    usage = shutil.disk_usage(path)
    return ServiceHealth(
        "storage",
        "up",
        root,
        path.as_uri(),
        f"local folder, {usage.free / 1024**3:.1f} GiB free",
        {"free_bytes": usage.free, "total_bytes": usage.total},
    )
