"""``clusterkit stop`` and ``clusterkit start``: a cluster stopped with its nodes, disks and
data kept, and started again; what ``status`` says of a stopped cluster.

What stops, per provider (chosen once, in :func:`_nodes_of`):

- local: the services' processes, as ``down`` stops them (the keeper first, then every
  process tree, verified by pid and port); started again as ``up`` starts them. The state
  folder (data, run history, logs, tokens) stays.
- netns: the kit's systemd units on the nodes (:mod:`clusterkit.services.units`), the
  workers' first; the nodes, their folders and the run history on the master stay.
- aws: the instances (:mod:`clusterkit.providers.aws.power`), the workers first; their
  volumes stay (and bill). On start the master comes back with another public address: the
  saved Terraform outputs, the known_hosts entry (the same host key, no new trust), the
  inventory and the state follow it.

``start`` then waits for health, and runs the playbooks only when the services are not
healthy by then. Both verbs take the cluster's lock; ``stop`` refuses while a run is active
unless forced (then the runs are cancelled, as ``down`` does); each writes the power log.
A ``start`` whose nodes did not start leaves the cluster stopped (``start`` again); one
whose services did not come up leaves it running: ``up`` repairs it, ``stop`` stops it.

Also here, for ``status``, ``clusterkit idle`` and the console: a remote cluster's idle guard
as its master sees it (:func:`idle_guard`), an AWS cluster's cost now and since ``up``
(:func:`cost_summary`), and an AWS cluster its guard powered off (:func:`stopped_outside`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import yaml

from clusterkit.cluster import Cluster
from clusterkit.core import power_log
from clusterkit.core.errors import (
    BadInput,
    ClusterkitError,
    NoCluster,
    NodeUnreachable,
    ServiceError,
)
from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.lock import ClusterBusy, cluster_lock, state_lock
from clusterkit.core.records import RunRecord, now_iso
from clusterkit.core.spec import parse_size
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts
from clusterkit.exec.ssh import move_host_keys
from clusterkit.idle.rules import parse_duration
from clusterkit.notebook import stop_notebook
from clusterkit.providers.aws import accrued, pricing
from clusterkit.providers.aws import power as aws_power
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws.provider import AwsProvider, inventory_from_outputs
from clusterkit.runs.launcher import Runs
from clusterkit.runs.store import FolderRunStore
from clusterkit.services import health
from clusterkit.services.playbooks import PlaybookServices
from clusterkit.services.units import start_units, stop_units

Progress = Callable[[str], None]
#: How long ``start`` waits for every node to answer SSH, then for health (each).
START_TIMEOUT_S = 300.0
RUNNING, STOPPED = "running", "stopped"


def _quiet(_: str) -> None:
    return None


class RunsActive(ClusterkitError):
    """``stop`` was asked while runs are going, without ``--force``."""


@dataclass
class PowerReport:
    cluster: str
    provider: str
    action: str  # "stop" or "start"
    changed: bool
    message: str
    power: str  # after the action: "running" or "stopped"
    stopped_at: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


# -- the nodes, per provider ------------------------------------------------------------------
class _Nodes(Protocol):
    """How a provider's cluster stops and starts. ``states``: the nodes' own word (EC2's
    instance states), None where only the kit's state knows; ``held``: what a stopped cluster
    still costs per hour, None where nothing bills."""

    kept: str

    def states(self, cluster: Cluster) -> dict[str, str] | None: ...
    def check_start(self, cluster: Cluster, *, yes: bool, say: Progress) -> None: ...
    def stop(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]: ...
    def start(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]: ...
    def held(self, cluster: Cluster) -> dict[str, Any] | None: ...


class _Processes:
    """The local provider: this machine's processes."""

    kept = "its data, run history and logs are kept in {state_dir}"

    def states(self, cluster: Cluster) -> dict[str, str] | None:
        return None

    def check_start(self, cluster: Cluster, *, yes: bool, say: Progress) -> None:
        cluster.services.plan(cluster.state.spec)  # Java, sizes, free ports: before anything

    def stop(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        done = cluster.services.stop(cluster.state, cluster.paths, say=say)
        return {"stopped_pids": done.pids, "ports_checked": done.ports}

    def start(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        cluster.services.start(cluster.state, cluster.paths, say=say, timeout_s=START_TIMEOUT_S)
        return {}

    def held(self, cluster: Cluster) -> dict[str, Any] | None:
        return None


def _workers_first(inventory: Inventory) -> list[Node]:
    master = inventory.driver()
    return [*(n for n in inventory.nodes if n.name != master.name), master]


class _Units:
    """Nodes that stay up (the rehearsal): the kit's systemd units on them."""

    kept = "its nodes, their disks and the run history on the master are kept"

    def states(self, cluster: Cluster) -> dict[str, str] | None:
        return None

    def check_start(self, cluster: Cluster, *, yes: bool, say: Progress) -> None:
        return None

    def stop(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        runners = [cluster.runner(n) for n in _workers_first(cluster.state.inventory)]
        return {"units_stopped": stop_units(runners, say=say)}

    def start(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        # the idle guard as after a boot (these nodes do not boot): no idle time counted
        # from before the stop, armed again; a cluster with no guard answers no, and is fine
        cluster.driver().run([cluster.state.node_python, "-m", "clusterkit.idle.control",
                              "booted"], timeout=30, check=False)  # fmt: skip
        runners = [cluster.runner(n) for n in reversed(_workers_first(cluster.state.inventory))]
        return {"units_started": start_units(runners, say=say)}

    def held(self, cluster: Cluster) -> dict[str, Any] | None:
        return None


class _Instances:
    """AWS: the EC2 instances, found by the cluster's tags (and recorded id)."""

    kept = "its volumes (system, HDFS, run history) are kept, and still billed"

    def __init__(self) -> None:
        self.provider = AwsProvider()
        self._client: Any = None

    def _region(self, cluster: Cluster) -> str:
        region = self.provider.terraform(cluster.paths).read_vars().get("region")
        if not region:
            raise ClusterkitError(
                f"cluster {cluster.name!r}: no region in its Terraform variables "
                f"({cluster.paths.root / 'terraform'}); was it made by `clusterkit up "
                f"--provider aws`?"
            )
        return str(region)

    def _ec2(self, cluster: Cluster) -> tuple[Any, str | None]:
        """The EC2 client of the cluster's region, and its recorded id (None: by name)."""
        if self._client is None:
            self._client = aws_preflight.session(self._region(cluster)).client("ec2")
        return self._client, self.provider.recorded_id(cluster.paths) or None

    def states(self, cluster: Cluster) -> dict[str, str] | None:
        ec2, cluster_id = self._ec2(cluster)
        return aws_power.states(ec2, cluster.name, cluster_id=cluster_id)

    def check_start(self, cluster: Cluster, *, yes: bool, say: Progress) -> None:
        """The budget check of the cluster running again (its list price per hour against
        the spec's ``aws.max_hourly_usd``; ``yes`` accepts a price over it, or none)."""
        self.provider.check_budget(cluster.state.spec, yes=yes, region=self._region(cluster),
                                   made=True, say=say)  # fmt: skip

    def stop(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        ec2, cluster_id = self._ec2(cluster)
        change = aws_power.stop(ec2, cluster.name, cluster_id=cluster_id, say=say)
        return {"instances_stopped": change.acted, "already_stopped": change.already}

    def start(self, cluster: Cluster, *, say: Progress) -> dict[str, Any]:
        ec2, cluster_id = self._ec2(cluster)
        change = aws_power.start(ec2, cluster.name, cluster_id=cluster_id, say=say)
        assert change.public_ip is not None  # aws_power.start raises otherwise
        _follow_address(cluster, self.provider, change.public_ip, say=say)
        return {"instances_started": change.acted, "already_running": change.already,
                "master_public_ip": change.public_ip,
                "reclaimed": change.reclaimed}  # fmt: skip

    def held(self, cluster: Cluster) -> dict[str, Any] | None:
        """What still bills (volumes, an address left), at the kit's table's prices; the
        reason instead when AWS could not be asked."""
        try:
            ec2, cluster_id = self._ec2(cluster)
            cost = pricing.running(ec2, cluster.name, self._region(cluster),
                                   cluster_id=cluster_id)  # fmt: skip
        except Exception as exc:  # no credentials or network: status still answers
            return {"error": f"what it still costs could not be asked of AWS: {exc}"}
        return {"hourly_usd": round(cost.hourly, 4), "formula": cost.formula(),
                "lines": [asdict(line) for line in cost.lines],
                "price_table_date": pricing.PRICE_TABLE_DATE}  # fmt: skip


def _nodes_of(cluster: Cluster) -> _Nodes:
    """The one place the provider's way of stopping is chosen."""
    if cluster.provider.services == "processes":
        return _Processes()
    if isinstance(cluster.provider, AwsProvider):
        return _Instances()
    return _Units()


def _follow_address(cluster: Cluster, provider: AwsProvider, public_ip: str, *,
                    say: Progress) -> None:  # fmt: skip
    """The master's new public address into the saved outputs, the known_hosts file (its
    recorded keys moved to it), the inventory (state and ``inventory/hosts.yml``)."""
    paths, state = cluster.paths, cluster.state
    outputs = provider.outputs(paths)
    old = str(outputs.get("master_public_ip", ""))
    if old != public_ip:
        assert state.ssh is not None, "an AWS cluster's state records its SSH settings"
        move_host_keys(state.ssh.known_hosts, old, public_ip)
        outputs["master_public_ip"] = public_ip
        provider._save_outputs(paths, outputs)
        say(f"the master's public address is now {public_ip} (was {old}); its host key is "
            "the one recorded")  # fmt: skip
    cluster.close()  # the runners knew the old address
    state.inventory = inventory_from_outputs(cluster.name, outputs)
    _save(cluster)
    _write_hosts(cluster)


def _write_hosts(cluster: Cluster) -> None:
    """``<state>/inventory/hosts.yml`` again, when the playbooks wrote one."""
    hosts = cluster.paths.root / "inventory" / "hosts.yml"
    if isinstance(cluster.services, PlaybookServices) and hosts.exists():
        hosts.write_text(yaml.safe_dump(cluster.services.inventory(cluster.state),
                                        sort_keys=False))  # fmt: skip


# -- the state --------------------------------------------------------------------------------
def _save(cluster: Cluster) -> None:
    with state_lock(cluster.paths.root):
        cluster.state.save(cluster.paths)


def _mark(cluster: Cluster, power: str) -> None:
    """Record ``power`` ("running" or "stopped", with since when) in ``cluster.json``."""
    cluster.state.power = power
    cluster.state.stopped_at = now_iso() if power == STOPPED else None
    _save(cluster)


def stopped_status(cluster: Cluster) -> dict[str, Any]:
    """``status`` of a stopped cluster, without probing its services: since when, and (AWS)
    what it still costs per hour (``still_billed``)."""
    state = cluster.state
    data: dict[str, Any] = {
        "cluster": state.name,
        "provider": state.provider,
        "state": STOPPED,
        "stopped_at": state.stopped_at,
        "started_at": state.started_at,
        "state_dir": str(cluster.paths.root),
        "storage_root": state.storage_root,
        "endpoints": asdict(state.endpoints),
        "nodes": [],
        "services": [],
        "processes": {},
    }
    held = _nodes_of(cluster).held(cluster)
    if held is not None:
        data["still_billed"] = held
    return data


def _described(cluster: Cluster) -> list[dict[str, Any]] | None:
    """The AWS cluster's instances as EC2 describes them; None when AWS cannot be asked."""
    try:
        ec2, cluster_id = _Instances()._ec2(cluster)
        return accrued.describe(ec2, cluster.name, cluster_id=cluster_id)[0]
    except Exception:  # no credentials or network: the callers go on without EC2's word
        return None


def _all_stopped(found: list[dict[str, Any]] | None) -> bool:
    return bool(found) and all(i["State"]["Name"] in ("stopping", "stopped") for i in found or [])


def _log_outside_stop(cluster: Cluster, found: list[dict[str, Any]], *,
                      now: float | None) -> float | None:  # fmt: skip
    """Write the ``stop`` the kit did not make (the idle guard's poweroff) into the power
    log, at EC2's stop time; with no such time, at ``now`` (None: not written). The time
    written, or None."""
    events, _skipped = power_log.read(cluster.paths.root)
    life = accrued.current_life(events)
    if life and life[-1].event in power_log.STOPPING:
        return None  # the log knows already
    at = accrued.unlogged_stop(found, events)
    at = now if at is None else at
    if at is not None:
        power_log.record(cluster.paths.root, "stop", by="outside-the-kit", at=at)
    return at


def stopped_outside(cluster: Cluster, *, now: float | None = None) -> dict[str, Any] | None:
    """``status`` of an AWS cluster the kit believes running whose every instance EC2 says
    is stopped: powered off from inside, as the idle guard does. It is marked stopped in the
    state (since EC2's stop time when EC2 gives it, else now) and a ``stop`` by
    ``outside-the-kit`` goes into the power log, so that ``start``, ``status`` and ``cost``
    agree with EC2. None for any other cluster, when AWS cannot be asked (``status`` goes on
    as before), or while a ``stop`` or ``start`` holds the cluster's lock (it is theirs)."""
    if not isinstance(cluster.provider, AwsProvider) or cluster.state.power == STOPPED:
        return None
    try:
        with cluster_lock(cluster.paths.root, "status", wait_s=0):
            found = _described(cluster)
            if found is None or not _all_stopped(found):
                return None
            at = _log_outside_stop(cluster, found, now=time.time() if now is None else now)
            with state_lock(cluster.paths.root):
                fresh = ClusterState.load(cluster.paths) or cluster.state
                fresh.power = cluster.state.power = STOPPED
                when = datetime.fromtimestamp(at or time.time(), UTC)
                fresh.stopped_at = cluster.state.stopped_at = when.isoformat(timespec="seconds")
                fresh.save(cluster.paths)
    except ClusterBusy:  # a stop or start is at it: theirs to record
        return None
    guard = cluster.state.spec.idle_guard
    minutes = guard.minutes_for("aws")
    data = stopped_status(cluster)
    data["stopped_by"] = (
        f"not the kit: every node was powered off from inside at {cluster.state.stopped_at} "
        + (f"(its idle guard {guard.action_for('aws')}s it after {minutes} idle minutes)"
           if minutes else "(by hand, or by AWS)")
    )  # fmt: skip
    return data


def _report(cluster: Cluster, action: str, *, changed: bool, message: str, t0: float,
            details: dict[str, Any] | None = None) -> PowerReport:  # fmt: skip
    state = cluster.state
    return PowerReport(cluster=state.name, provider=state.provider, action=action,
                       changed=changed, message=message, power=state.power,
                       stopped_at=state.stopped_at, details=details or {},
                       elapsed_s=round(time.monotonic() - t0, 2))  # fmt: skip


def _load(name: str, paths: ClusterPaths, verb: str) -> Cluster:
    """The cluster whose state folder is ``paths``; NoCluster with the fix when it is down."""
    cluster = Cluster.load(paths)
    if cluster is None:
        raise NoCluster(f"cluster {name!r} is down (nothing of it is kept): there is nothing "
                        f"to {verb}; `clusterkit up` makes it")  # fmt: skip
    return cluster


# -- stop -------------------------------------------------------------------------------------
def stop(name: str | None = None, *, force: bool = False, say: Progress = _quiet) -> PowerReport:
    """Stop the cluster, its nodes' disks and data kept (see the module). Already stopped:
    says so, changes nothing. RunsActive while a run is going, unless ``force`` (then they
    are cancelled, each record saying why). NoCluster with the fix when it is down."""
    t0 = time.monotonic()
    name, paths = Contexts().resolve(name)
    with cluster_lock(paths.root, "stop"):
        cluster = _load(name, paths, "stop")
        try:
            return _stop_locked(cluster, force=force, say=say, t0=t0)
        finally:
            cluster.close()


def _stop_locked(cluster: Cluster, *, force: bool, say: Progress, t0: float) -> PowerReport:
    name, state = cluster.name, cluster.state
    if state.power == STOPPED:
        return _report(cluster, "stop", changed=False, t0=t0,
                       message=f"cluster {name!r} is already stopped (since "
                               f"{state.stopped_at}); nothing changed")  # fmt: skip
    nodes = _nodes_of(cluster)
    found = nodes.states(cluster)
    if found and all(s == STOPPED for s in found.values()):  # the idle guard, or the console
        _mark(cluster, STOPPED)
        _log_outside_stop(cluster, _described(cluster) or [], now=time.time())
        return _report(cluster, "stop", changed=True, t0=t0,
                       message=f"cluster {name!r}: its instances were stopped already (by its "
                               "idle guard, or in the EC2 console); recorded as stopped",
                       details={"instances": found})  # fmt: skip
    settle_runs(cluster, force=force, say=say)
    _stop_notebook(cluster, say=say)
    details = nodes.stop(cluster, say=say)
    _mark(cluster, STOPPED)
    power_log.record(cluster.paths.root, "stop")
    kept = nodes.kept.format(state_dir=cluster.paths.root)
    return _report(cluster, "stop", changed=True, t0=t0, details=details,
                   message=f"cluster {name!r} is stopped: {kept}; `clusterkit start` starts "
                           "it again")  # fmt: skip


def settle_runs(cluster: Cluster, *, force: bool, say: Progress, verb: str = "stop") -> None:
    """Nothing when no run is going. RunsActive naming them and the fixes, unless ``force``:
    then each is cancelled (its record says why: ``clusterkit VERB --force``); when the master
    does not answer, their copies here are recorded failed with the reason."""
    runs = cluster.runs()
    why = {"stop": "the cluster was stopped"}.get(verb, "workers were removed")
    try:
        runs.store.refresh()
        active = [r for r in map(runs.reap_if_orphaned, runs.store.active()) if not r.final]
    except NodeUnreachable as exc:
        if not force:
            raise RunsActive(
                f"cluster {cluster.name!r}: its runs could not be checked ({exc}); `clusterkit "
                f"{verb} --force` goes on all the same (runs still going are recorded failed)"
            ) from exc
        fail_copies(cluster, f"{why}; its master did not answer: {exc}", say)
        return
    if not active:
        return
    listed = ", ".join(f"{r.id} ({r.job})" for r in active)
    if not force:
        raise RunsActive(
            f"cluster {cluster.name!r} has {len(active)} run(s) going: {listed}; wait for them "
            f"(`clusterkit runs`), cancel them (`clusterkit cancel ID`), or `clusterkit {verb} "
            f"--force` cancels them and goes on"
        )
    cancel_runs(runs, active, reason=f"{why} (clusterkit {verb} --force)", say=say)


def cancel_runs(runs: Runs, records: list[RunRecord], *, reason: str, say: Progress) -> None:
    """Cancel each of ``records`` (its record says ``reason``); one that cannot be cancelled
    is said, and the others go on (so does the caller: ``stop``, ``down``)."""
    for record in records:
        say(f"cancelling run {record.id} ({record.job})")
        try:
            runs.cancel(record.id, reason=reason)
        except ClusterkitError as exc:
            say(f"run {record.id} ({record.job}) could not be cancelled: {exc}")


def fail_copies(cluster: Cluster, why: str, say: Progress) -> None:
    """The cluster's runs still going, as copied here, recorded failed with ``why`` (their
    master does not answer, so they cannot be cancelled there)."""
    here = FolderRunStore(cluster.paths.runs)
    for record in here.active():
        say(f"run {record.id} ({record.job}) could not be cancelled; recorded failed: {why}")
        record.status, record.ended, record.error = "failed", now_iso(), why
        here.save(record)


def _stop_notebook(cluster: Cluster, *, say: Progress) -> None:
    try:
        if stop_notebook(cluster):
            say("stopped the notebook server")
    except ClusterkitError as exc:  # the cluster stops all the same; say why it was not checked
        say(f"the notebook server was not checked: {exc}")


# -- start ------------------------------------------------------------------------------------
def start(name: str | None = None, *, yes: bool = False, say: Progress = _quiet,
          timeout_s: float = START_TIMEOUT_S) -> PowerReport:  # fmt: skip
    """Start a stopped cluster again and return once it is healthy (the playbooks run only
    when it is not by ``timeout_s``). Running already: says so, changes nothing. On AWS the
    budget is checked first (``yes`` accepts a price over it). NoCluster with the fix when
    the cluster is down."""
    t0 = time.monotonic()
    name, paths = Contexts().resolve(name)
    with cluster_lock(paths.root, "start"):
        cluster = _load(name, paths, "start")
        try:
            return _start_locked(cluster, yes=yes, say=say, timeout_s=timeout_s, t0=t0)
        finally:
            cluster.close()


def _start_locked(cluster: Cluster, *, yes: bool, say: Progress, timeout_s: float,
                  t0: float) -> PowerReport:  # fmt: skip
    name, state = cluster.name, cluster.state
    nodes = _nodes_of(cluster)
    found = nodes.states(cluster) if state.power == RUNNING else None
    if state.power == RUNNING and not (found and any(s != RUNNING for s in found.values())):
        return _report(cluster, "start", changed=False, t0=t0,
                       message=f"cluster {name!r} is already running (since "
                               f"{state.started_at}); nothing changed (`clusterkit status` "
                               "shows its health, `clusterkit up` repairs it)")  # fmt: skip
    nodes.check_start(cluster, yes=yes, say=say)
    if isinstance(nodes, _Instances):  # stopped by the idle guard: when, before the start
        _log_outside_stop(cluster, _described(cluster) or [], now=None)
    power_log.record(cluster.paths.root, "start")  # billing starts with the call (errs high)
    machines = isinstance(nodes, _Instances)  # EC2 starts them whole, or not at all
    if not machines:  # processes or units started halfway: a running cluster to repair
        _mark(cluster, RUNNING)
    try:
        details = nodes.start(cluster, say=say)
    except BaseException:
        say(f"cluster {name!r} did not start: `clusterkit start` tries again" if machines else
            f"cluster {name!r} did not start whole: `clusterkit up` repairs it, `clusterkit "
            "stop` stops it again")  # fmt: skip
        raise
    _mark(cluster, RUNNING)  # from here a start cut short is a running cluster to repair
    if details.get("reclaimed"):  # spot workers only EC2 may start: health cannot come
        return _report(cluster, "start", changed=True, t0=t0, details=details,
                       message=f"cluster {name!r} is running again but for spot worker(s) "
                               f"AWS reclaimed ({', '.join(details['reclaimed'])}): `clusterkit "
                               f"scale --workers {len(state.inventory.workers())}` replaces "
                               "them")  # fmt: skip
    try:
        details |= _healthy(cluster, say=say, timeout_s=timeout_s)
    except BaseException:
        say(f"cluster {name!r} did not start whole: `clusterkit up` repairs it, `clusterkit "
            "stop` stops it again")  # fmt: skip
        raise
    how = " (the playbooks ran: it was not healthy)" if details.get("provisioned") else ""
    return _report(cluster, "start", changed=True, t0=t0, details=details,
                   message=f"cluster {name!r} is running again{how}")  # fmt: skip


def _healthy(cluster: Cluster, *, say: Progress, timeout_s: float) -> dict[str, Any]:
    """Wait until every node answers and the services are healthy; when they are not by
    ``timeout_s`` on a remote cluster, the playbooks run (they start what is stopped and put
    back what drifted) and health is waited for again."""
    _wait_reachable(cluster, say=say, timeout_s=timeout_s)
    try:
        wait_healthy(cluster, say=say, timeout_s=timeout_s)
        return {"provisioned": False}
    except ServiceError as exc:
        if cluster.provider.services == "processes":
            raise  # nothing to provision: `up` restarts this machine's processes
        say(f"{exc}: running the playbooks")
    report = cluster.services.provision(cluster.state, cluster.paths, say=say)
    _save(cluster)
    wait_healthy(cluster, say=say, timeout_s=timeout_s)
    return {"provisioned": True, "tasks_changed": report.total_changed}


def _wait_reachable(cluster: Cluster, *, say: Progress, timeout_s: float) -> None:
    """Every node answers a command (remote nodes boot, then sshd answers); NodeUnreachable
    naming the node after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for node in reversed(_workers_first(cluster.state.inventory)):
        runner = cluster.runner(node)
        while True:
            try:
                runner.run(["true"], timeout=30)
                break
            except NodeUnreachable as exc:
                if time.monotonic() > deadline:
                    raise NodeUnreachable(f"{exc} (waited {timeout_s:.0f} s after start)") from exc
                time.sleep(5)
    if not cluster.driver().local:
        say("every node answers SSH")


def wait_healthy(cluster: Cluster, *, say: Progress, timeout_s: float) -> None:
    """Spark and Ray list every node (as ``up`` waits for them); the sizes jobs are given,
    from what Spark lists, saved."""
    rows = health.wait_healthy(cluster.read_health, cluster.problems,
                               what=f"cluster {cluster.name!r}", timeout_s=timeout_s, say=say,
                               failed=lambda: cluster.services.failed(cluster.state))  # fmt: skip
    driver_mb = parse_size(cluster.state.spec.nodes.driver_memory) // 1024**2
    with state_lock(cluster.paths.root):  # the local keeper may have recorded a restart
        fresh = ClusterState.load(cluster.paths) or cluster.state
        fresh.sizing = cluster.state.sizing = health.job_sizing(rows, driver_mb)
        fresh.save(cluster.paths)


# -- the idle guard and what the cluster costs, as status and the console show them ------
#: What ``clusterkit idle`` can do: show the guard, put off its action, stop it acting, arm it.
IDLE_VERBS = ("show", "extend", "off", "on")


def idle_guard(cluster: Cluster, verb: str = "show", duration: str | None = None,
               ) -> dict[str, Any]:  # fmt: skip
    """The idle guard of ``cluster`` as its master sees it (:mod:`clusterkit.idle.control`),
    after ``verb``: ``installed`` false when it has none (the local provider never has one).
    BadInput for a wrong verb or duration (checked here, before any node is reached);
    ClusterkitError with the master's reason when it refuses."""
    if verb not in IDLE_VERBS:
        raise BadInput(f"unknown idle verb {verb!r}: one of {', '.join(IDLE_VERBS)}")
    if verb == "extend":
        parse_duration(duration or "")
    if cluster.state.provider == "local":
        if verb != "show":
            raise BadInput("the local cluster has no idle guard (it would power off this "
                           "machine): `clusterkit down` stops it")  # fmt: skip
        return {"installed": False, "line": "no idle guard (local cluster)"}
    argv = [cluster.state.node_python, "-m", "clusterkit.idle.control", verb]
    if verb == "extend":
        argv.append(str(duration))
    result = cluster.driver().run(argv, timeout=30, check=False)
    try:
        data = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ClusterkitError(
            f"the master's idle guard did not answer (exit {result.exit_code}: "
            f"{(result.stderr or result.stdout).strip()[-300:]})"
        ) from None
    if "error" in data:
        raise ClusterkitError(f"master: {data['error']}")
    return dict(data)


def idle_guard_view(cluster: Cluster) -> dict[str, Any]:
    """The idle guard as the master sees it (:func:`idle_guard`); a guard that cannot be read
    is said, never an error of the caller's."""
    try:
        return idle_guard(cluster)
    except ClusterkitError as exc:
        return {"installed": None, "line": f"the idle guard could not be read: {exc}"}


def cost_summary(cluster: Cluster, *, now: float | None = None) -> dict[str, Any] | None:
    """An AWS cluster's list price per hour now and its cost since ``up`` (the kit's table's
    prices: no Price List API call, so ``status`` and the console stay quick; ``clusterkit
    cost`` asks it), with a one-line ``line``; the reason instead when AWS could not be
    asked; None for other providers."""
    if not isinstance(cluster.provider, AwsProvider):
        return None
    try:
        nodes = _Instances()
        ec2, cluster_id = nodes._ec2(cluster)
        region = nodes._region(cluster)
        prices = pricing.Prices(region)
        hourly = pricing.running(ec2, cluster.name, region, cluster_id=cluster_id,
                                 prices=prices).hourly  # fmt: skip
        spent = accrued.accrued(ec2, cluster.name, cluster.paths.root, prices=prices,
                                cluster_id=cluster_id, now=now).usd  # fmt: skip
    except Exception as exc:  # no credentials or network: said, never an error of status
        return {"error": str(exc), "line": f"cost unknown ({exc})"}
    line = (f"${hourly:.4f}/h now, ${spent:.2f} since up (list prices, the kit's table of "
            f"{pricing.PRICE_TABLE_DATE}; `clusterkit cost` for the formula)")  # fmt: skip
    return {"hourly_usd": round(hourly, 4), "accrued_usd": round(spent, 4), "line": line}
