"""Health of Spark, Ray and storage, read through their own APIs from the master's runner.

Each reader returns :class:`ServiceHealth` rows and never raises for a service that is down
or not answering: that is a state (``down``) with the reason in ``detail``. The APIs listen on
the master's private address (loopback on the local provider) and are read through
``runner.forward``: an SSH tunnel to a remote master, the address itself on this machine.
:func:`problems` says what keeps a cluster from being healthy; :func:`wait_healthy` polls
until nothing does.
"""

from __future__ import annotations

import shlex
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from clusterkit.core.errors import ServiceError
from clusterkit.core.inventory import Inventory
from clusterkit.core.state import Endpoints, JobSizing
from clusterkit.exec.runner import CommandRunner
from clusterkit.services.connect import APP_NAME as CONNECT_APP

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
        """The API this row was read from: spark, ray or storage."""
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


def spark_health(master_url: str, ui_url: str, connect_url: str) -> list[ServiceHealth]:
    """The master, every worker it lists (with cores and memory), and the Spark Connect
    server as the master lists its application (the cores its executors hold now)."""
    try:
        data = spark_master_json(ui_url)
    except (requests.RequestException, ValueError) as exc:
        reason = f"{ui_url}/json/ not answering: {type(exc).__name__}"
        return [
            ServiceHealth("spark-master", "down", master_url, ui_url, reason, answered=False),
            ServiceHealth("spark-connect", "down", connect_url, None, reason, answered=False),
        ]
    # a worker the master lists DEAD is history (removed by `scale`, or restarted since): it
    # is counted, not listed; a node of the cluster without an ALIVE worker is problems()'
    listed = [w for w in data.get("workers", []) if isinstance(w, dict)]
    dead = sum(w.get("state") == "DEAD" for w in listed)
    master = ServiceHealth(
        "spark-master",
        "up" if data.get("status") == "ALIVE" else "down",
        data.get("url", master_url),
        ui_url,
        f"status {data.get('status')}, {data.get('aliveworkers', 0)} alive worker(s)"
        + (f" ({dead} dead before)" if dead else ""),
        {
            "alive_workers": data.get("aliveworkers", 0),
            "active_apps": len(data.get("activeapps", [])),
        },
    )
    rows = [master]
    for worker in listed:
        state = worker.get("state", "UNKNOWN")
        if state == "DEAD":
            continue
        rows.append(
            ServiceHealth(
                "spark-worker",
                "up" if state == "ALIVE" else "down",
                f"{worker.get('host')}:{worker.get('port')}",
                worker.get("webuiaddress"),
                f"{state}, {worker.get('cores')} cores, {worker.get('memory')} MiB",
                {
                    "id": worker.get("id"),
                    "state": state,
                    "cores": worker.get("cores"),
                    "cores_used": worker.get("coresused"),
                    "memory_mb": worker.get("memory"),
                    "memory_used_mb": worker.get("memoryused"),
                },
            )
        )
    app = next((a for a in data.get("activeapps", []) if a.get("name") == CONNECT_APP), None)
    if app is None:
        rows.append(ServiceHealth("spark-connect", "down", connect_url, None,
                                  f"the master lists no application {CONNECT_APP}"))  # fmt: skip
    else:
        rows.append(ServiceHealth(
            "spark-connect", "up" if app.get("state") in ("RUNNING", "WAITING") else "down",
            connect_url, None,
            f"{app.get('state')}, {app.get('id')}, {app.get('cores', 0)} cores held now "
            f"(idle executors are given back)",
            {"app_id": app.get("id"), "cores": app.get("cores", 0)},
        ))  # fmt: skip
    return rows


#: The HTTP/2 client preface and an empty SETTINGS frame: what a gRPC client sends first.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def grpc_answers(address: str) -> str | None:
    """None when a gRPC (HTTP/2) server answers at ``host:port`` with its SETTINGS frame; else
    why not. Proves the server is listening even through an SSH tunnel, whose local end
    accepts a connection whether or not anything listens behind it."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT_S) as sock:
            sock.settimeout(TIMEOUT_S)
            sock.sendall(_H2_PREFACE)
            header = sock.recv(9)
    except OSError as exc:
        return f"nothing answers at {address} ({type(exc).__name__})"
    if len(header) < 4 or header[3] != 4:
        return f"no HTTP/2 server answers at {address}"
    return None


def spark_master_alive(ui_url: str) -> bool:
    """True once the master answers and has been elected leader (status ALIVE)."""
    try:
        return spark_master_json(ui_url).get("status") == "ALIVE"
    except (requests.RequestException, ValueError):
        return False


def ray_nodes(dashboard_url: str, token: str) -> list[dict[str, Any]]:
    """Ray's node summaries from the dashboard (raises requests exceptions when unreachable)."""
    data = _get_json(f"{dashboard_url}/nodes?view=summary", token=token)
    nodes: list[dict[str, Any]] = data["data"]["summary"]
    return nodes


def ray_health(gcs_address: str, dashboard_url: str, token: str) -> list[ServiceHealth]:
    """The Ray head (GCS and dashboard) and every node it lists."""
    try:
        nodes = ray_nodes(dashboard_url, token)
    except (requests.RequestException, ValueError, KeyError) as exc:
        reason = f"{dashboard_url} not answering: {type(exc).__name__}"
        return [
            ServiceHealth("ray-head", "down", gcs_address, dashboard_url, reason, answered=False)
        ]
    # a node Ray lists DEAD is history (a worker removed by `scale`, a raylet restarted): it
    # is counted, not listed; a node of the cluster that is missing is :func:`problems`' to say
    dead = [n for n in nodes if n.get("raylet", {}).get("state") == "DEAD"]
    nodes = [n for n in nodes if n not in dead]
    gone = f" ({len(dead)} dead before)" if dead else ""
    rows = [
        ServiceHealth(
            "ray-head", "up", gcs_address, dashboard_url,
            f"{len(nodes)} node(s){gone}, token auth on",
        )
    ]  # fmt: skip
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


def storage_health(master: CommandRunner, root: str) -> ServiceHealth:
    """A storage root that is a folder, as the master sees it (its jobs' drivers write
    there): present, with its free space (``df`` on the master)."""
    quoted = shlex.quote(root)
    result = master.run(f"test -d {quoted} && df -B1 --output=avail,size {quoted}",
                        check=False)  # fmt: skip
    words = result.stdout.split()
    if result.exit_code != 0 or len(words) < 2 or not words[-1].isdigit():
        return ServiceHealth("storage", "down", root, None, "folder missing")
    free, total = int(words[-2]), int(words[-1])
    return ServiceHealth(
        "storage",
        "up",
        root,
        Path(root).as_uri(),
        f"folder, {free / 1024**3:.1f} GiB free",
        {"free_bytes": free, "total_bytes": total},
    )


#: Where the hadoop role installs HDFS on the nodes (its defaults).
NODE_HADOOP_HOME = "/opt/hadoop"
NODE_HDFS = f"{NODE_HADOOP_HOME}/bin/hdfs --config /etc/clusterkit/hadoop"


def is_hdfs(root: str) -> bool:
    return root.startswith("hdfs://")


def hdfs_health(master: CommandRunner, root: str) -> ServiceHealth:
    """HDFS as its NameNode reports it (``hdfs dfsadmin -report`` on the master, as the hdfs
    user): up with its live DataNodes counted, or down with the report's last line."""
    result = master.run(f"runuser -u hdfs -- {NODE_HDFS} dfsadmin -report", check=False)
    text = result.stdout or ""
    live = next((int(line.split("(")[1].split(")")[0]) for line in text.splitlines()
                 if line.startswith("Live datanodes (")), None)  # fmt: skip
    if result.exit_code != 0 or live is None:
        last = (result.stderr or text).strip().splitlines()[-1:] or ["no report"]
        return ServiceHealth("storage", "down", root, None, f"HDFS: {last[0]}")
    detail = f"HDFS, {live} live DataNodes"
    return ServiceHealth("storage", "up", root, None, detail, {"live_datanodes": live})


def _host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port, url
    return parts.hostname, parts.port


def read_health(
    *, endpoints: Endpoints, master: CommandRunner, ray_token: str, storage_root: str
) -> list[ServiceHealth]:
    """Spark's and Ray's own status (each API read once, through ``master.forward``) and the
    storage's. Raises NodeUnreachable when the master does not answer."""
    spark_host, spark_port = _host_port(endpoints.spark_master_ui)
    ray_host, ray_port = _host_port(endpoints.ray_dashboard)
    connect_host, connect_port = _host_port(endpoints.spark_connect_url)
    with (
        master.forward(spark_host, spark_port) as spark_at,
        master.forward(ray_host, ray_port) as ray_at,
        master.forward(connect_host, connect_port) as connect_at,
    ):
        spark_rows = spark_health(endpoints.spark_master_url, f"http://{spark_at}",
                                  endpoints.spark_connect_url)  # fmt: skip
        connect = next(r for r in spark_rows if r.name == "spark-connect")
        silent = grpc_answers(connect_at) if connect.state == "up" else None
        if silent:
            connect.state, connect.detail = "down", f"{connect.detail}; {silent}"
        ray_rows = ray_health(endpoints.ray_address, f"http://{ray_at}", ray_token)
    for row in spark_rows + ray_rows:  # the services' own addresses, not a tunnel's
        if row.url == f"http://{spark_at}":
            row.url = endpoints.spark_master_ui
        elif row.url == f"http://{ray_at}":
            row.url = endpoints.ray_dashboard
    storage = hdfs_health(master, storage_root) if is_hdfs(storage_root) else (
        storage_health(master, storage_root))  # fmt: skip
    return [*spark_rows, *ray_rows, storage]


def _alive(rows: list[ServiceHealth], name: str) -> set[str]:
    """The hosts of the ``name`` rows that are up (addresses are host:port)."""
    return {r.address.rsplit(":", 1)[0] for r in rows if r.name == name and r.state == "up"}


def problems(inventory: Inventory, rows: list[ServiceHealth]) -> list[str]:
    """What keeps the cluster from being healthy (empty: healthy), from :func:`read_health`'s
    rows: the Spark master ALIVE with every worker node's worker registered by its address,
    every node in Ray, and with HDFS as storage a live DataNode per worker."""
    found: list[str] = []
    workers = {n.address for n in inventory.nodes if "worker" in n.roles}
    alive = _alive(rows, "spark-worker")
    if not _alive(rows, "spark-master"):
        found.append("the Spark master does not answer ALIVE")
    elif not workers <= alive:
        found.append(f"Spark lists ALIVE workers {sorted(alive)}, not {sorted(workers)}")
    connect = next((r for r in rows if r.name == "spark-connect"), None)
    if connect is not None and connect.state != "up":
        found.append(f"the Spark Connect server is not running ({connect.detail})")
    expected = {n.address for n in inventory.nodes}
    ray_alive = _alive(rows, "ray-node")
    if not expected <= ray_alive:
        found.append(f"Ray lists ALIVE nodes {sorted(ray_alive)}, not {sorted(expected)}")
    storage = next((r for r in rows if r.name == "storage"), None)
    if storage is not None and is_hdfs(storage.address):
        live = storage.info.get("live_datanodes", 0) if storage.info else 0
        if storage.state != "up" or live < len(workers):
            found.append(f"HDFS has {live} live DataNodes, not {len(workers)} ({storage.detail})")
    return found


def wait_healthy(
    read: Callable[[], list[ServiceHealth]],
    check: Callable[[list[ServiceHealth]], list[str]],
    *,
    what: str,
    timeout_s: float,
    say: Callable[[str], None],
    interval_s: float = 1.0,
    failed: Callable[[], str | None] = lambda: None,
    ready: str = "Spark lists every worker ALIVE by its address; Ray lists every node",
) -> list[ServiceHealth]:
    """Poll ``read`` until ``check`` finds nothing wrong with its rows; those rows (and
    ``say`` what is ``ready``). What ``failed`` reports (a service that exited) ends the wait
    at once; after ``timeout_s``, ServiceError names what is still wrong."""
    deadline = time.monotonic() + timeout_s
    while True:
        fatal = failed()
        if fatal:
            raise ServiceError(f"{what}: {fatal}")
        rows = read()
        found = check(rows)
        if not found:
            say(f"{what}: {ready}")
            return rows
        if time.monotonic() > deadline:
            raise ServiceError(f"{what} not healthy after {timeout_s:.0f} s: {'; '.join(found)}")
        time.sleep(interval_s)


def job_sizing(rows: list[ServiceHealth], driver_memory_mb: int) -> JobSizing:
    """What jobs are given: a worker's cores and memory as its Spark master lists them, and
    the spec's driver memory."""
    worker = next(r for r in rows if r.name == "spark-worker" and r.state == "up")
    return JobSizing(
        worker_cores=int(worker.info["cores"]),
        worker_memory_mb=int(worker.info["memory_mb"]),
        driver_memory_mb=driver_memory_mb,
    )
