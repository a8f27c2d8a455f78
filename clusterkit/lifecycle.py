"""Bring a cluster up, provision it, tell its status, take it down: one path for every
provider, the core the CLI and the TUI call.

``up`` makes the nodes (the provider), starts the services on them (this machine's processes
or the playbooks) and returns once Spark and Ray list every node; it is idempotent (a healthy
cluster is left as it is and the report says so; an unhealthy one is repaired). When a
failed or interrupted ``up`` made something, it is removed (asked first when the provider's
resources are worth asking about). ``down`` cancels the runs still going, stops the services,
removes the nodes and verifies that nothing is left. ``status`` never raises for a service
that is down.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from clusterkit import power
from clusterkit.cluster import Cluster, open_cluster, services_for, stopped_message
from clusterkit.core import power_log
from clusterkit.core.errors import (
    ClusterkitError,
    NoCluster,
    NodeUnreachable,
    ServiceError,
    StateError,
    StateLayoutError,
)
from clusterkit.core.files import private_dir, write_text_atomic
from clusterkit.core.lock import cluster_lock
from clusterkit.core.records import now_iso
from clusterkit.core.spec import Spec
from clusterkit.core.state import (
    CLUSTER_ENV,
    ClusterPaths,
    ClusterState,
    Contexts,
    Endpoints,
    paths_for,
    storage_root_for,
)
from clusterkit.exec.processes import is_alive
from clusterkit.metrics.sampling import stop_run_processes
from clusterkit.notebook import stop_notebook
from clusterkit.providers import get_provider
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.base import NodeProvider
from clusterkit.runs import environment
from clusterkit.runs.store import FolderRunStore
from clusterkit.services.keeper_events import read_events
from clusterkit.services.local import keeper_alive

Progress = Callable[[str], None]
Confirm = Callable[[str], bool]

#: How long ``up`` waits for Spark and Ray to list every node once the services started.
HEALTH_TIMEOUT_S = 180.0


def _quiet(_: str) -> None:
    return None


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


def up_check(spec: Spec) -> dict[str, Any]:
    """What ``up`` would do, checked without starting or making anything: what the provider
    found (a cloud's account, region and list price), and what the services need (for this
    machine's, Java, their sizes and free ports). Raises the error ``up`` would raise."""
    provider = get_provider(spec.provider)
    paths = paths_for(spec)
    plan: dict[str, Any] = {
        "cluster": spec.name,
        "provider": spec.provider,
        "state_dir": str(paths.root),
        "ports": spec.ports.fixed(),
        **provider.check(spec, paths),
    }
    return plan | services_for(provider, spec.name, paths).plan(spec)


def _report(cluster: Cluster, *, changed: bool, t0: float, message: str) -> UpReport:
    state = cluster.state
    return UpReport(
        cluster=state.name,
        provider=state.provider,
        changed=changed,
        message=message,
        elapsed_s=round(time.monotonic() - t0, 2),
        endpoints=asdict(state.endpoints),
        sizing=asdict(state.sizing) if state.sizing else {},
        state_dir=str(cluster.paths.root),
    )


def up(spec: Spec, *, say: Progress = _quiet, timeout_s: float = HEALTH_TIMEOUT_S,
       confirm: Confirm | None = None, accept_price: bool = False) -> UpReport:  # fmt: skip
    """Start the cluster ``spec`` describes and return once every service is healthy. When a
    failed or interrupted ``up`` made nodes whose provider asks before removing them,
    ``confirm`` is asked (None: remove them). On aws, a new cluster whose list price per hour
    is over ``aws.max_hourly_usd`` is refused before anything is made, unless
    ``accept_price``."""
    paths = paths_for(spec)
    private_dir(paths.root, tighten=True)  # 0700: tokens, keys and runs are the operator's
    with cluster_lock(paths.root, "up"):
        return _up_locked(spec, paths, say=say, timeout_s=timeout_s, confirm=confirm,
                          accept_price=accept_price)  # fmt: skip


def _up_locked(spec: Spec, paths: ClusterPaths, *, say: Progress, timeout_s: float,
               confirm: Confirm | None, accept_price: bool = False) -> UpReport:  # fmt: skip
    t0, began = time.monotonic(), time.time()  # the nodes bill from their making
    provider = get_provider(spec.provider)
    existing = ClusterState.load(paths)
    if existing is not None:
        changes = _spec_changes(existing.spec.model_dump(), spec.model_dump())
        if changes:
            raise ClusterkitError(
                f"cluster {spec.name!r} is up with a different spec (changed: "
                f"{', '.join(changes)}); run `clusterkit down` first, then `clusterkit up`"
            )
        if existing.power == "stopped":  # `start` is the verb that bills again (budget, --yes)
            raise ClusterkitError(stopped_message(existing))
        return _up_again(Cluster.of(existing, paths), t0=t0, say=say, timeout_s=timeout_s)
    if isinstance(provider, AwsProvider):  # over aws.max_hourly_usd: refused, nothing made
        provider.check_budget(spec, yes=accept_price, say=say)
    services = services_for(provider, spec.name, paths)
    services.plan(spec)  # what this machine must have (Java, free ports), before anything
    write_text_atomic(paths.spec_file, yaml.safe_dump(spec.model_dump(), sort_keys=False))
    contexts = Contexts()
    if provider.ask_before_removing:  # `down --cluster NAME` finds what a failed `up` kept
        contexts.add(spec.name, paths.root)
    shared = None if "://" in (spec.storage.root or "") else storage_root_for(
        spec.storage.root, paths)  # fmt: skip
    if shared is not None:
        shared.mkdir(parents=True, exist_ok=True)
    cluster: Cluster | None = None
    try:
        inventory = provider.create(spec, paths, storage=shared, say=say)
        master = inventory.driver()
        worker = next((n for n in inventory.nodes if "worker" in n.roles), master)
        state = ClusterState(
            name=spec.name,
            provider=provider.name,
            spec=spec,
            started_at=now_iso(),
            state_dir=str(paths.root),
            storage_root=provider.storage_root(spec, paths),
            inventory=inventory,
            endpoints=Endpoints.for_spec(spec, host=master.address, worker=worker.address),
            node_python=provider.node_python(),
            runs_dir=services.runs_dir(paths),
            ssh=provider.ssh_settings(paths),
        )
        state.save(paths)  # from here on, `down` can clean up
        contexts.add(spec.name, paths.root)
        cluster = Cluster(state, paths, provider, services)
        services.start(state, paths, say=say, timeout_s=timeout_s)
        power.wait_healthy(cluster, say=say, timeout_s=timeout_s)
    except BaseException as exc:
        _remove_after_failure(provider, spec, paths, cluster, exc, say=say, confirm=confirm)
        raise
    finally:
        if cluster is not None:
            cluster.close()
    power_log.record(paths.root, "up", at=began)  # what `cost` counts the cluster's time from
    cluster.record_lock(say=say)
    return _report(cluster, changed=True, t0=t0, message=f"cluster {spec.name!r} is up")


def _remove_after_failure(provider: NodeProvider, spec: Spec, paths: ClusterPaths,
                          cluster: Cluster | None, exc: BaseException, *, say: Progress,
                          confirm: Confirm | None) -> None:  # fmt: skip
    """What a failed or interrupted ``up`` leaves: its services stopped and what its provider
    made removed (asked first when the provider says so), the first error kept."""
    what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        if cluster is not None:
            cluster.services.stop(cluster.state, paths, say=say)
        if provider.nodes(spec.name, paths) is not None:
            question = (f"`up` {what} after the {provider.name} provider made nodes; remove "
                        f"what it made (cluster {spec.name!r})?")  # fmt: skip
            if provider.ask_before_removing and confirm is not None and not confirm(question):
                say(f"kept; `clusterkit provision` retries, `clusterkit down --cluster "
                    f"{spec.name}` removes them")  # fmt: skip
                return
            say(f"removing what this `up` made (cluster {spec.name!r})")
            provider.remove(spec.name, paths, say=say, confirm=confirm)
        paths.state_file.unlink(missing_ok=True)
    except ClusterkitError as cleanup:  # the first error is the one raised
        say(f"could not remove everything: {cleanup}")


def _up_again(cluster: Cluster, *, t0: float, say: Progress, timeout_s: float) -> UpReport:
    """``up`` on a cluster that is up: nothing when healthy, else its services repaired (this
    machine's processes started again; the playbooks run again, which start what is stopped
    and change nothing else)."""
    Contexts().add(cluster.name, cluster.paths.root)
    try:
        try:
            found = cluster.problems(cluster.read_health())
        except ClusterkitError as exc:  # a service that exited, a master that does not answer
            found = [str(exc)]
        if not found:
            if environment.load_lock(cluster.paths.root) is None:  # brought up before locks
                cluster.record_lock(say=say)
            return _report(cluster, changed=False, t0=t0,
                           message=f"cluster {cluster.name!r} is already up and healthy; "
                                   "nothing changed")  # fmt: skip
        say(f"cluster {cluster.name!r} was unhealthy ({'; '.join(found)}): repairing it")
        done = cluster.services.repair(cluster.state, cluster.paths, say=say, timeout_s=timeout_s)
        power.wait_healthy(cluster, say=say, timeout_s=timeout_s)
        cluster.record_lock(say=say)
    finally:
        cluster.close()
    message = f"cluster {cluster.name!r} is up ({done}: {'; '.join(found)})"
    return _report(cluster, changed=True, t0=t0, message=message)


def provision(name: str | None = None, *, say: Progress = _quiet) -> dict[str, Any]:
    """Run the playbooks again on a cluster that is up; the counts of tasks changed per host
    (all zero when nothing had drifted). Refused for a cluster of this machine's processes."""
    name, paths = Contexts().resolve(name)
    t0 = time.monotonic()
    with cluster_lock(paths.root, "provision"):
        cluster = open_cluster(name)
        try:
            report = cluster.services.provision(cluster.state, cluster.paths, say=say)
            power.wait_healthy(cluster, say=say, timeout_s=HEALTH_TIMEOUT_S)
            cluster.record_lock(say=say)
        finally:
            cluster.close()
    return {
        "cluster": cluster.name,
        "tasks": report.tasks,
        "changed": {host: report.changed.get(host, 0) for host in sorted(report.ok)},
        "total_changed": report.total_changed,
        "elapsed_s": round(time.monotonic() - t0, 2),
    }


def stop(name: str | None = None, *, force: bool = False,
         say: Progress = _quiet) -> power.PowerReport:  # fmt: skip
    """Stop the cluster, its nodes' disks and data kept (:mod:`clusterkit.power`: this
    machine's processes, the rehearsal's units, AWS's instances, the workers first); already
    stopped, nothing changes. Refused while a run is going, unless ``force`` (then cancelled)."""
    return power.stop(name, force=force, say=say)


def start(name: str | None = None, *, yes: bool = False,
          say: Progress = _quiet) -> power.PowerReport:  # fmt: skip
    """Start a stopped cluster again (the master first) and return once it is healthy, the
    playbooks run only if it is not; already running, nothing changes. On AWS the list price
    is checked against ``aws.max_hourly_usd`` first (``yes`` accepts a price over it)."""
    return power.start(name, yes=yes, say=say)


def _cancel_active_runs(cluster: Cluster, *, say: Progress) -> None:
    """Cancel the cluster's runs still going, each record saying why (before ``down``).

    When the master does not answer, its runs' copies here are recorded failed with that
    reason (the nodes are removed all the same)."""
    runs = cluster.runs()
    try:
        runs.store.refresh()
    except NodeUnreachable as exc:  # the copies: the master cannot be written
        power.fail_copies(cluster, f"the cluster was taken down; its master did not answer: "
                                   f"{exc}", say)  # fmt: skip
        return
    power.cancel_runs(runs, runs.store.active(), reason="the cluster was taken down", say=say)


def _removed(name: str, removed: list[str]) -> str:
    """What a ``down`` of nodes says: what it removed, or that nothing of the cluster was left."""
    if not removed:
        return f"cluster {name!r} is down: nothing of it was left"
    return f"cluster {name!r} is down: removed {', '.join(removed)}"


def _saved_spec_data(paths: ClusterPaths) -> dict[str, Any] | None:
    """The fields of the spec the cluster's last ``up`` saved, or None when unreadable."""
    try:
        data = yaml.safe_load(paths.spec_file.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _provider_of(paths: ClusterPaths) -> NodeProvider | None:
    """The provider of a cluster that is not up, from the spec its last ``up`` saved."""
    data = _saved_spec_data(paths) or {}
    return get_provider(data["provider"]) if "provider" in data else None


def down(name: str | None = None, *, purge: bool = False, say: Progress = _quiet,
         confirm: Confirm | None = None) -> DownReport:  # fmt: skip
    """Stop everything the cluster started and remove its nodes, verified (by pid and port
    on this machine, by the provider's own listing elsewhere); ``purge`` deletes its data.

    With nothing up, says so and changes nothing (not an error); what a failed ``up`` left
    (a cloud's resources, a crashed rehearsal's namespaces) is removed. Runs still going are
    cancelled first, their records saying why. ``confirm`` is asked before a provider
    removes what it is unsure is this cluster's (None: it is left, and said).
    """
    t0 = time.monotonic()
    contexts = Contexts()
    try:
        name, paths = contexts.resolve(name)
    except NoCluster as exc:
        if name is None and os.environ.get(CLUSTER_ENV):  # a stale variable: not "nothing"
            raise
        return DownReport(cluster=name, changed=False, message=f"nothing is up: {exc}")
    with cluster_lock(paths.root, "down"):
        report = _down_locked(name, paths, purge=purge, say=say, confirm=confirm)
    if purge:
        if paths.root.exists():
            shutil.rmtree(paths.root)
            report.purged.append(str(paths.root))
        contexts.remove(name)
        report.changed = True
        report.message += f"; purged {paths.root}"
    report.elapsed_s = round(time.monotonic() - t0, 2)
    return report


def _down_locked(name: str, paths: ClusterPaths, *, purge: bool, say: Progress,
                 confirm: Confirm | None) -> DownReport:  # fmt: skip
    report = DownReport(cluster=name, changed=False, message="")
    try:
        cluster = Cluster.load(paths)
    except StateLayoutError:
        raise  # another kit's cluster: that kit takes it down
    except StateError as exc:
        return _down_without_state(name, paths, exc, say=say, confirm=confirm)
    if cluster is None:
        provider = _provider_of(paths)
        removed = (provider.remove(name, paths, say=say, confirm=confirm)
                   if provider is not None else [])  # fmt: skip
        report.changed = bool(removed)
        report.message = (_removed(name, removed) if removed
                          else f"cluster {name!r} is not up; nothing to stop")  # fmt: skip
    else:
        try:
            if cluster.state.power != "stopped":  # stopped: no run goes on, no notebook runs
                _cancel_active_runs(cluster, say=say)
                try:
                    if stop_notebook(cluster):
                        say("stopped the notebook server")
                except ClusterkitError as exc:  # the nodes go anyway; say why it was not checked
                    say(f"the notebook server was not checked: {exc}")
            stopped = cluster.services.stop(cluster.state, paths, say=say)
            removed = cluster.provider.remove(name, paths, say=say, confirm=confirm)
        finally:
            cluster.close()
        if cluster.provider.nodes(name, paths) is not None:
            raise ServiceError(f"cluster {name!r}: nodes still exist after down")
        paths.state_file.unlink(missing_ok=True)
        power_log.record(paths.root, "down")
        report.changed = True
        if stopped.ports:  # this machine's processes: stopped, and their ports free
            ports = stopped.ports
            report.stopped_pids, report.ports_checked = stopped.pids, ports
            report.message = (f"cluster {name!r} is down: {len(stopped.pids)} processes "
                              f"stopped, ports {ports[0]}..{ports[-1]} free")  # fmt: skip
            if purge and cluster.state.storage_root != str(paths.data):
                report.message += (f"; storage root {cluster.state.storage_root} kept "
                                   "(not the kit's folder)")  # fmt: skip
        else:
            report.message = _removed(name, removed)
    return report


def _down_without_state(name: str, paths: ClusterPaths, unreadable: StateError, *,
                        say: Progress, confirm: Confirm | None) -> DownReport:  # fmt: skip
    """``down`` when ``cluster.json`` cannot be read: stop what can be found without it (this
    machine's daemons by their pid files and the spec's ports, a provider's nodes by its own
    records), then set the unreadable file aside. ServiceError says what could not be done."""
    spec = _saved_spec(paths)
    if spec is None:
        raise ServiceError(
            f"{unreadable}; and {paths.spec_file} cannot be read either, so nothing could be "
            f"found to stop: stop the cluster's processes by hand, then delete "
            f"{paths.state_file}"
        ) from unreadable
    say(f"{unreadable}; stopping what can be found without it")
    provider = get_provider(spec.provider)
    if provider.services == "processes":  # this machine's runs: their processes, by marker
        _fail_runs_here(paths, say=say)
    stopped = services_for(provider, name, paths).stop_found(spec, paths, say=say)
    removed = provider.remove(name, paths, say=say, confirm=confirm)
    if provider.nodes(name, paths) is not None:
        raise ServiceError(f"cluster {name!r}: nodes still exist after down; run it again")
    aside = paths.state_file.with_name(f"{paths.state_file.name}.unreadable")
    if paths.state_file.exists():
        paths.state_file.replace(aside)
    power_log.record(paths.root, "down")
    what = [f"{len(stopped.pids)} processes stopped by pid file"] if stopped.ports else []
    what += removed
    return DownReport(
        cluster=name, changed=True, stopped_pids=stopped.pids, ports_checked=stopped.ports,
        message=(f"cluster {name!r} is down without its state file ({', '.join(what) or 'nothing'}"
                 f" found and stopped{', ports free' if stopped.ports else ''}); the unreadable "
                 f"file is kept as {aside}"),
    )  # fmt: skip


def _fail_runs_here(paths: ClusterPaths, *, say: Progress) -> None:
    """The runs still going on this machine, their processes stopped (found by the run's
    marker) and each recorded failed with the reason."""
    store = FolderRunStore(paths.runs)
    for record in store.active():
        stopped = stop_run_processes(record.id, settle=True)
        say(f"run {record.id} ({record.job}): {len(stopped)} processes stopped")
        record.status, record.ended = "failed", now_iso()
        record.error = "the cluster was taken down without its state file"
        store.save(record)


def _saved_spec(paths: ClusterPaths) -> Spec | None:
    """The spec the cluster's last ``up`` saved, or None when it cannot be read as one."""
    data = _saved_spec_data(paths)
    try:
        return Spec.model_validate(data) if data is not None else None
    except ValueError:
        return None


def _reclaimed(cluster: Cluster) -> list[str] | None:
    """The spot workers AWS took back (``clusterkit scale`` replaces them); None when EC2
    could not say, empty for any other provider."""
    if not isinstance(cluster.provider, AwsProvider):
        return []
    try:
        return cluster.provider.reclaimed_workers(cluster.name, cluster.paths)
    except ClusterkitError:
        return None


def status(name: str | None = None) -> dict[str, Any]:
    """Provider, nodes (memory, CPU), services (state, address, URL) of a cluster.

    Raises NoCluster only when no cluster is known at all; a cluster that is down is a state.
    """
    name, paths = Contexts().resolve(name)
    cluster = Cluster.load(paths)
    if cluster is None:
        return {"cluster": name, "state": "down", "state_dir": str(paths.root), "nodes": [],
                "services": []}  # fmt: skip
    if cluster.state.power == "stopped":  # its services are not probed: they are stopped
        return power.stopped_status(cluster)
    outside = power.stopped_outside(cluster)  # AWS: the idle guard powered it off
    if outside is not None:
        cluster.close()
        return outside
    try:
        rows = cluster.health()
        found = cluster.problems(rows)  # a node missing from Spark or Ray: not up
        nodes = cluster.node_metrics(cpu_interval=0.2)
        guard = power.idle_guard_view(cluster)
        spend = power.cost_summary(cluster)
        reclaimed = _reclaimed(cluster)
    finally:
        cluster.close()
    state = cluster.state
    # the local services' processes (a remote cluster's are the nodes' systemd units)
    processes = {d.name: {"pid": d.pid, "alive": is_alive(d), "log": d.log}
                 for d in state.daemons}  # fmt: skip
    overall = "up" if all(r.state == "up" for r in rows) and not found else "degraded"
    kept = {}
    if state.provider == "local":  # a remote cluster's nodes have systemd
        events = read_events(paths)
        kept = {"keeper": {"alive": keeper_alive(paths), "restarts": events["restarts"],
                           "given_up": events["given_up"],
                           "events": events["events"][-5:]}}  # fmt: skip
    return {
        "cluster": name,
        "provider": state.provider,
        "state": overall,
        "started_at": state.started_at,
        "state_dir": str(paths.root),
        "storage_root": state.storage_root,
        "endpoints": asdict(state.endpoints),
        "nodes": nodes,
        "services": [r.to_dict() for r in rows],
        "problems": found,
        "reclaimed": reclaimed,
        "processes": processes,
        "idle_guard": guard,
        "cost": spend,
        **kept,
    }
