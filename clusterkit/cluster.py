"""Bring a cluster up, take it down, tell its status: the core the CLI and the TUI call.

``up`` is idempotent (a healthy cluster is left as it is and the report says so); ``down``
verifies by pid and by port that nothing it started is left; ``status`` reads every service
through its own API and never raises for a service that is down.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusterkit import daemons, local_services, metrics, preflight, remote_cluster, runs, services
from clusterkit.daemons import Daemon
from clusterkit.errors import ClusterkitError, NoCluster, ServiceError
from clusterkit.inventory import Inventory
from clusterkit.local_services import Endpoints
from clusterkit.providers import get_provider
from clusterkit.providers.aws import AwsProvider
from clusterkit.remote import NodeUnreachable
from clusterkit.remote_runs import RunMirror
from clusterkit.spec import Spec, parse_spec
from clusterkit.state import (
    ClusterPaths,
    Contexts,
    default_state_dir,
    load_cluster_state,
    new_cluster_state,
    storage_root_for,
    write_json_atomic,
)

Progress = Callable[[str], None]

UP_TIMEOUT_S = 120.0
PORTS_FREE_TIMEOUT_S = 15.0


def _quiet(_: str) -> None:
    return None


@dataclass
class Cluster:
    """A cluster that is up, as ``cluster.json`` describes it."""

    name: str
    paths: ClusterPaths
    spec: Spec
    state: dict[str, Any]

    @classmethod
    def load(cls, name: str, paths: ClusterPaths) -> Cluster | None:
        """The cluster whose state folder is ``paths``, or None when it is down."""
        state = load_cluster_state(paths)
        if state is None:
            return None
        return cls(name, paths, parse_spec(state["spec"], source=str(paths.state_file)), state)

    @property
    def provider(self) -> str:
        return str(self.state["provider"])

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(**self.state["endpoints"])

    @property
    def inventory(self) -> Inventory:
        return Inventory.from_dict(self.state["inventory"])

    @property
    def storage_root(self) -> str:
        return str(self.state["storage_root"])

    @property
    def daemons(self) -> list[Daemon]:
        return [Daemon.from_dict(d) for d in self.state["daemons"]]

    @property
    def ray_token(self) -> str:
        return self.paths.ray_token.read_text().strip()

    @property
    def is_remote(self) -> bool:
        """True when the nodes are other machines, reached over SSH (not the local provider)."""
        return self.provider != "local"

    def run_store(self) -> runs.RunStore:
        """The cluster's runs: local folders, copies of the master's on a remote cluster."""
        if self.is_remote:
            return runs.RunStore(self.paths.runs, mirror=RunMirror(self))
        return runs.RunStore(self.paths.runs)

    def job_env(self) -> dict[str, str]:
        """What a job's driver needs to reach this cluster (added to the run's environment;
        on a remote cluster, the driver runs on the master)."""
        sizing = self.state["sizing"]
        node_env = (
            remote_cluster.job_env(self.state)
            if self.is_remote
            else {
                **local_services.spark_env(self.paths, Path(self.state["java_home"])),
                **local_services.ray_client_env(self.paths),
            }
        )
        return {
            **node_env,
            "CLUSTERKIT_CLUSTER": self.name,
            "CLUSTERKIT_STORAGE_ROOT": self.storage_root,
            "CLUSTERKIT_SPARK_MASTER": self.endpoints.spark_master_url,
            "CLUSTERKIT_SPARK_EXECUTOR_CORES": str(sizing["worker_cores"]),
            "CLUSTERKIT_SPARK_EXECUTOR_MEMORY": f"{sizing['worker_memory_mb']}m",
            "CLUSTERKIT_SPARK_DRIVER_MEMORY": f"{sizing['driver_memory_mb']}m",
            "CLUSTERKIT_RAY_ADDRESS": self.endpoints.ray_address,
        }


def open_cluster(name: str | None = None) -> Cluster:
    """The named (or current) cluster, which must be up; NoCluster with the fix otherwise."""
    name, paths = Contexts().resolve(name)
    cluster = Cluster.load(name, paths)
    if cluster is None:
        raise NoCluster(f"cluster {name!r} is down: start it with `clusterkit up`")
    return cluster


@dataclass
class UpReport:
    cluster: str
    provider: str
    changed: bool
    message: str
    elapsed_s: float
    endpoints: dict[str, str]
    sizing: dict[str, int]
    state_dir: str


@dataclass
class DownReport:
    cluster: str | None
    changed: bool
    message: str
    stopped_pids: list[int] = field(default_factory=list)
    ports_checked: list[int] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0


def _spec_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    changes = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changes += _spec_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            changes.append(f"{prefix}{key}")
    return changes


def _healthy(cluster: Cluster) -> list[str]:
    """What is wrong with a running cluster (empty: healthy)."""
    problems = [
        f"{d.name} (pid {d.pid}) exited" for d in cluster.daemons if not daemons.is_alive(d)
    ]
    endpoints = cluster.endpoints
    if services.alive_spark_workers(endpoints.spark_master_ui) < 1:
        problems.append("the Spark master lists no ALIVE worker")
    if services.alive_ray_nodes(endpoints.ray_dashboard, cluster.ray_token) < 1:
        problems.append("Ray lists no ALIVE node")
    return problems


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def _wait_for(
    checks: dict[str, Callable[[], bool]],
    started: list[Daemon],
    *,
    deadline: float,
    say: Progress,
) -> None:
    """Poll every check until all pass; fail fast if a daemon exits, or at ``deadline``."""
    pending = dict(checks)
    while pending:
        for daemon in started:
            if not daemons.is_alive(daemon):
                raise ServiceError(
                    f"{daemon.name} exited while starting; its log {daemon.log} ends: "
                    f"{_log_tail(daemon.log)}"
                )
        for label, check in list(pending.items()):
            if check():
                say(label)
                del pending[label]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"not healthy in time: still waiting for {'; '.join(pending)}; see the logs "
                f"in {Path(started[0].log).parent}"
            )
        time.sleep(0.1)


@dataclass(frozen=True)
class Plan:
    """What ``up`` will start, checked: the Java found and the services' sizes."""

    spec: Spec
    java: preflight.Java
    sizing: preflight.Sizing

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster": self.spec.name,
            "provider": self.spec.provider,
            "state_dir": str(default_state_dir(self.spec.name, self.spec.state_dir)),
            "java_home": str(self.java.home),
            "java_major": self.java.major,
            "sizing": asdict(self.sizing),
            "ports": self.spec.ports.fixed(),
        }


def up_check(spec: Spec) -> Plan:
    """What ``up`` would do, checked without starting anything: Java, sizes, free ports.

    Raises the error ``up`` would raise; returns the plan otherwise.
    """
    get_provider(spec.provider)
    if spec.provider != "local":  # the services' ports are the nodes', not this machine's
        remote_cluster.provider_for(spec.provider).preflight()
    java = preflight.find_java(spec.versions.java_min)
    sizing = preflight.size_services(spec)
    if spec.provider == "local":
        preflight.check_ports(spec)
    return Plan(spec=spec, java=java, sizing=sizing)


def up(spec: Spec, *, say: Progress = _quiet, timeout_s: float = UP_TIMEOUT_S,
       confirm: Callable[[str], bool] | None = None) -> UpReport:  # fmt: skip
    """Start the cluster ``spec`` describes and return once every service is healthy. When a
    cloud ``up`` fails or is interrupted, ``confirm`` is asked whether to remove what it made
    (None: remove it)."""
    t0 = time.monotonic()
    provider = get_provider(spec.provider)
    paths = ClusterPaths(default_state_dir(spec.name, spec.state_dir))
    contexts = Contexts()
    existing = load_cluster_state(paths)
    note = ""
    if existing is not None:
        changes = _spec_changes(existing["spec"], spec.model_dump())
        if changes:
            raise ClusterkitError(
                f"cluster {spec.name!r} is up with a different spec (changed: "
                f"{', '.join(changes)}); run `clusterkit down` first, then `clusterkit up`"
            )
        running = Cluster(spec.name, paths, spec, existing)
        if running.is_remote:
            return _up_remote_again(running, t0=t0, say=say)
        problems = _healthy(running)
        if not problems:
            contexts.add(spec.name, paths.root)
            return _report(
                running,
                changed=False,
                t0=t0,
                message=f"cluster {spec.name!r} is already up and healthy; nothing changed",
            )
        say(f"cluster {spec.name!r} was unhealthy ({'; '.join(problems)}): restarting it")
        daemons.stop_all(running.daemons)
        note = f" (restarted: {'; '.join(problems)})"

    if spec.provider != "local":
        remote_cluster.provider_for(spec.provider).preflight()
        paths.spec_file.parent.mkdir(parents=True, exist_ok=True)
        paths.spec_file.write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))
        if spec.provider == "aws":  # `down --name` finds a cloud cluster whose `up` failed
            contexts.add(spec.name, paths.root)
        state = remote_cluster.up(spec, paths, say=say, confirm=confirm)
        contexts.add(spec.name, paths.root)
        cluster = Cluster(spec.name, paths, spec, state)
        return _report(cluster, changed=True, t0=t0, message=f"cluster {spec.name!r} is up")

    plan = up_check(spec)
    java, sizing = plan.java, plan.sizing
    inventory = provider.up(spec, paths)
    storage_root = storage_root_for(spec.storage.root, paths)
    storage_root.mkdir(parents=True, exist_ok=True)
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.spec_file.write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))

    endpoints = Endpoints.for_spec(spec)
    say(
        f"starting Spark master + worker ({sizing.worker_cores} cores, "
        f"{sizing.worker_memory_mb} MiB) and Ray head ({sizing.ray_cpus} CPUs)"
    )
    launcher = local_services.Launcher(spec, paths, java=java, sizing=sizing, base_env=os.environ)
    token = paths.ray_token.read_text().strip()
    started = [launcher.spark_master(), launcher.ray_head()]
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
        "java_home": str(java.home),
        "sizing": asdict(sizing),
        "ray_temp_dir": str(local_services.ray_temp_dir(paths)),
        "daemons": [d.to_dict() for d in started],
    }
    # Saved as soon as anything runs, so that `down` can clean up after an interrupted `up`.
    write_json_atomic(paths.state_file, state)
    contexts.add(spec.name, paths.root)
    deadline = time.monotonic() + timeout_s
    try:
        _wait_for(
            {
                f"Spark master {endpoints.spark_master_url} is ALIVE": lambda: (
                    services.spark_master_alive(endpoints.spark_master_ui)
                )
            },
            started,
            deadline=deadline,
            say=say,
        )
        started.append(launcher.spark_worker())
        state["daemons"] = [d.to_dict() for d in started]
        write_json_atomic(paths.state_file, state)
        _wait_for(
            {
                "Spark master lists its worker ALIVE": lambda: (
                    services.alive_spark_workers(endpoints.spark_master_ui) >= 1
                ),
                f"Ray head {endpoints.ray_address} lists its node ALIVE": lambda: (
                    services.alive_ray_nodes(endpoints.ray_dashboard, token) >= 1
                ),
            },
            started,
            deadline=deadline,
            say=say,
        )
    except BaseException:
        daemons.stop_all(started)
        paths.state_file.unlink(missing_ok=True)
        raise
    cluster = Cluster(spec.name, paths, spec, state)
    return _report(cluster, changed=True, t0=t0, message=f"cluster {spec.name!r} is up{note}")


def _up_remote_again(cluster: Cluster, *, t0: float, say: Progress) -> UpReport:
    """``up`` on a remote cluster that is up: nothing when healthy, else the playbooks again
    (they start what is stopped and change nothing else)."""
    Contexts().add(cluster.name, cluster.paths.root)
    found = remote_cluster.problems(
        cluster.state, remote_cluster.read_health(cluster.state, cluster.paths)
    )
    if not found:
        return _report(cluster, changed=False, t0=t0,
                       message=f"cluster {cluster.name!r} is already up and healthy; "
                               "nothing changed")  # fmt: skip
    say(f"cluster {cluster.name!r} was unhealthy ({'; '.join(found)}): provisioning again")
    remote_cluster.provision(cluster.state, cluster.paths, say=say)
    remote_cluster.wait_healthy(cluster.state, cluster.paths, say=say)
    return _report(cluster, changed=True, t0=t0,
                   message=f"cluster {cluster.name!r} is up (provisioned again: "
                           f"{'; '.join(found)})")  # fmt: skip


def provision(name: str | None = None, *, say: Progress = _quiet) -> dict[str, Any]:
    """Run the playbooks again on a remote cluster that is up; the counts of tasks changed
    per host (all zero when nothing had drifted)."""
    cluster = open_cluster(name)
    if not cluster.is_remote:
        raise ClusterkitError(
            f"cluster {cluster.name!r} is local: there is nothing to provision (its services "
            f"are this machine's processes; `clusterkit up` restarts them)"
        )
    t0 = time.monotonic()
    report = remote_cluster.provision(cluster.state, cluster.paths, say=say)
    remote_cluster.wait_healthy(cluster.state, cluster.paths, say=say)
    return {
        "cluster": cluster.name,
        "tasks": report.tasks,
        "changed": {host: report.changed.get(host, 0) for host in sorted(report.ok)},
        "total_changed": report.total_changed,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }


def _report(cluster: Cluster, *, changed: bool, t0: float, message: str) -> UpReport:
    return UpReport(
        cluster=cluster.name,
        provider=cluster.provider,
        changed=changed,
        message=message,
        elapsed_s=round(time.monotonic() - t0, 2),
        endpoints=asdict(cluster.endpoints),
        sizing=dict(cluster.state["sizing"]),
        state_dir=str(cluster.paths.root),
    )


def _cancel_active_runs(cluster: Cluster, *, say: Progress) -> None:
    """Cancel the cluster's runs still going, each record saying why (before ``down``).

    When a remote cluster's master does not answer, its runs' copies here are recorded failed
    with that reason (the nodes are removed all the same)."""
    store = cluster.run_store()
    try:
        store.refresh()
    except NodeUnreachable as exc:
        for record in store.active():
            say(f"run {record.id} ({record.job}) could not be cancelled: {exc}")
            record.status, record.ended = "failed", runs.now_iso()
            record.error = f"the cluster was taken down; its master did not answer: {exc}"
            store.save(record)
        return
    for record in store.active():
        say(f"cancelling run {record.id} ({record.job})")
        runs.cancel(cluster, record.id, reason="the cluster was taken down", store=store)


def _stop(cluster: Cluster, *, say: Progress) -> tuple[list[int], list[int]]:
    """Cancel the cluster's active runs, stop its daemons, verify its ports are free.

    Returns (pids stopped, ports checked); raises ServiceError naming any port still held.
    """
    _cancel_active_runs(cluster, say=say)
    pids = daemons.stop_all(cluster.daemons)
    ports = sorted(cluster.spec.ports.fixed().values())
    if not daemons.wait_until(
        lambda: not preflight.listening_ports(ports), timeout_s=PORTS_FREE_TIMEOUT_S
    ):
        holders = ", ".join(
            f"{p} ({preflight.port_holder(p)})" for p in preflight.listening_ports(ports)
        )
        raise ServiceError(
            f"cluster {cluster.name!r} stopped, but ports are still listening: {holders}"
        )
    shutil.rmtree(cluster.state["ray_temp_dir"], ignore_errors=True)
    cluster.paths.state_file.unlink(missing_ok=True)
    return pids, ports


def down_by_tag(name: str, *, region: str | None, say: Progress = _quiet) -> DownReport:
    """Remove every AWS resource tagged with cluster ``name`` in ``region``, with no state
    needed (it was lost, or is on another machine); ClusterkitError names what is left."""
    t0 = time.monotonic()
    paths = ClusterPaths(default_state_dir(name, None))
    removed = AwsProvider().down(paths, name, region=region, say=say)
    paths.state_file.unlink(missing_ok=True)
    elapsed = round(time.monotonic() - t0, 2)
    return DownReport(cluster=name, changed=bool(removed), message=_removed(name, removed),
                      elapsed_s=elapsed)  # fmt: skip


def _removed(name: str, removed: list[str]) -> str:
    """What a remote ``down`` says: what it removed, or that nothing of the cluster was left."""
    if not removed:
        return f"cluster {name!r} is down: nothing tagged clusterkit:cluster={name} was left"
    return f"cluster {name!r} is down: removed {', '.join(removed)}"


def down(name: str | None = None, *, purge: bool = False, say: Progress = _quiet) -> DownReport:
    """Stop everything the cluster started, verified by pid and port; ``purge`` deletes data.

    With nothing up, says so and changes nothing (not an error). Runs still going are
    cancelled first, their records saying why.
    """
    t0 = time.monotonic()
    contexts = Contexts()
    try:
        name, paths = contexts.resolve(name)
    except NoCluster as exc:
        return DownReport(cluster=name, changed=False, message=f"nothing is up: {exc}")
    report = DownReport(cluster=name, changed=False, message="")
    cluster = Cluster.load(name, paths)
    if cluster is None and (paths.root / "terraform").is_dir():
        # an AWS `up` that failed before its state was saved, or resources kept after one
        removed = AwsProvider().down(paths, name, say=say)
        report.changed = bool(removed)
        report.message = _removed(name, removed)
    elif cluster is None:
        report.message = f"cluster {name!r} is not up; nothing to stop"
    elif cluster.is_remote:
        _cancel_active_runs(cluster, say=say)
        removed = remote_cluster.down(cluster.state, cluster.paths, say=say)
        report.changed = True
        report.message = _removed(name, removed)
    else:
        report.stopped_pids, report.ports_checked = _stop(cluster, say=say)
        report.changed = True
        ports = report.ports_checked
        report.message = (
            f"cluster {name!r} is down: {len(report.stopped_pids)} processes stopped, "
            f"ports {ports[0]}..{ports[-1]} free"
        )
        if purge and cluster.storage_root != str(paths.data):
            report.message += f"; storage root {cluster.storage_root} kept (not the kit's folder)"
    if purge:
        if paths.root.exists():
            shutil.rmtree(paths.root)
            report.purged.append(str(paths.root))
        contexts.remove(name)
        report.changed = True
        report.message += f"; purged {paths.root}"
    report.elapsed_s = round(time.monotonic() - t0, 2)
    return report


def service_health(cluster: Cluster) -> list[services.ServiceHealth]:
    """Every service of the cluster, each read through its own API; never raises."""
    if cluster.is_remote:
        try:
            return remote_cluster.read_health(cluster.state, cluster.paths)
        except ClusterkitError as exc:
            master = cluster.inventory.driver()
            return [services.ServiceHealth("spark-master", "down", master.address, None,
                                           str(exc), answered=False)]  # fmt: skip
    endpoints = cluster.endpoints
    rows = services.spark_health(endpoints.spark_master_url, endpoints.spark_master_ui)
    rows += services.ray_health(endpoints.ray_address, endpoints.ray_dashboard, cluster.ray_token)
    rows.append(services.storage_health(cluster.storage_root))
    return rows


def node_metrics(cluster: Cluster, *, cpu_interval: float | None = None) -> list[dict[str, Any]]:
    """Memory and CPU of every node now (name, address, roles and a metrics sample).

    With ``cpu_interval`` None, CPU is the share since the previous call in this process,
    which is what a console polling every second wants (the first call reads 0).
    """
    if cluster.is_remote:
        return remote_cluster.node_metrics(cluster.state, cpu_interval=cpu_interval or 0.2)
    return [
        {
            "name": node.name,
            "address": node.address,
            "roles": list(node.roles),
            **metrics.node_sample(node.name, cpu_interval=cpu_interval),
        }
        for node in cluster.inventory.nodes
    ]


def status(name: str | None = None) -> dict[str, Any]:
    """Provider, nodes (memory, CPU), services (state, address, URL) of a cluster.

    Raises NoCluster only when no cluster is known at all; a cluster that is down is a state.
    """
    name, paths = Contexts().resolve(name)
    cluster = Cluster.load(name, paths)
    if cluster is None:
        return {
            "cluster": name,
            "state": "down",
            "state_dir": str(paths.root),
            "nodes": [],
            "services": [],
        }
    rows = service_health(cluster)
    processes = {
        d.name: {"pid": d.pid, "alive": daemons.is_alive(d), "log": d.log} for d in cluster.daemons
    }  # the local provider's; a remote cluster's services are the nodes' systemd units
    nodes = node_metrics(cluster, cpu_interval=0.2)
    overall = "up" if all(r.state == "up" for r in rows) else "degraded"
    return {
        "cluster": name,
        "provider": cluster.provider,
        "state": overall,
        "started_at": cluster.state["started_at"],
        "state_dir": str(paths.root),
        "storage_root": cluster.storage_root,
        "endpoints": asdict(cluster.endpoints),
        "nodes": nodes,
        "services": [r.to_dict() for r in rows],
        "processes": processes,
    }
