"""What the playbooks run on a remote cluster's nodes, as doctor checks it (the rehearsal's and
AWS's, while up): the workers' way out through the master's NAT (``nat``), HDFS's DataNodes
and safe mode (``hdfs``), the idle guard's unit (``idle``), and whether the playbooks would
change anything (``drift``: check mode, slow, so only with ``doctor --drift``).

Each acts on the nodes the shared SSH probe reached (:func:`clusterkit.doctor.nodes.probe`)
and is a reading (``read_*``) and a judgement (``judge_*``, pure).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from clusterkit.core.errors import ClusterkitError, NodeUnreachable, SecretMissing
from clusterkit.core.lock import ClusterBusy, cluster_lock
from clusterkit.doctor.nodes import probe, skipped_line
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.netns.topology import Layout
from clusterkit.services.health import NODE_HDFS
from clusterkit.services.playbooks import PlaybookServices, ProvisionError
from clusterkit.services.units import Unit, units


def _data(target: Target, **more: str) -> dict[str, str]:
    """The variables every finding here carries: CLUSTER and STATE_DIR (and ``more``)."""
    assert target.cluster is not None
    return {"CLUSTER": target.cluster.name, "STATE_DIR": str(target.cluster.paths.root), **more}


# -- nat --------------------------------------------------------------------------------------

#: Run on a worker with the node's Python: a TCP connection to HOST PORT within SECONDS, and
#: how it went. A refusal is an answer: it came back from the far side (no hop on the way
#: rejects: AWS's security groups and the kit's firewall drop, and without the NAT the reply
#: has no way back to a private address).
_CONNECT = """import socket, sys
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    socket.create_connection((host, port), timeout=seconds).close()
    print("connected")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("no answer")
except OSError as exc:
    print(exc.strerror or exc)
"""
REACHED = ("connected", "refused")
CONNECT_TIMEOUT_S = 4.0


def beyond_the_master(target: Target) -> list[tuple[str, int]]:
    """What a worker should reach only through the master's NAT: on AWS the region's S3
    endpoint and the index the python role's pip installs from; on the rehearsal its
    ``outside`` namespace (the internet there: nothing listens on it, so a refusal is the
    answer; without the NAT the router drops the reply)."""
    cluster = target.cluster
    assert cluster is not None
    if isinstance(cluster.provider, AwsProvider):
        region = cluster.provider.terraform(cluster.paths).read_vars().get("region")
        s3 = [(f"s3.{region}.amazonaws.com", 443)] if region else []
        return [*s3, ("pypi.org", 443)]
    return [(Layout(cluster=cluster.name).outside, 443)]


@dataclass(frozen=True)
class NatProbe:
    """One worker's tries, in order, until one reached its target: (host:port, how it went:
    ``connected``, ``refused``, ``no answer`` or the error)."""

    node: str
    tries: list[tuple[str, str]]
    unread: str | None = None  # why the worker could not try: SSH went (``lost``), or its Python
    lost: bool = False

    @property
    def reached(self) -> bool:
        return any(outcome in REACHED for _, outcome in self.tries)


@dataclass(frozen=True)
class NatReading:
    workers: list[NatProbe]
    skipped: list[str] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)


def read_nat(target: Target) -> NatReading:
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    reached = set(probe(target).answered())
    workers = [n.name for n in cluster.state.inventory.workers()]
    goals = beyond_the_master(target)
    found = []
    for name in (w for w in workers if w in reached):
        tries: list[tuple[str, str]] = []
        unread, lost = None, False
        for host, port in goals:
            argv = [cluster.state.node_python, "-c", _CONNECT, host, str(port),
                    f"{CONNECT_TIMEOUT_S:g}"]  # fmt: skip
            try:
                result = cluster.runner(name).run(argv, timeout=CONNECT_TIMEOUT_S + 20)
            except ClusterkitError as exc:  # the node's Python does not run, or SSH went
                unread, lost = str(exc), isinstance(exc, NodeUnreachable)
                break
            said = (result.stdout.strip().splitlines() or ["no output"])[-1]
            tries.append((f"{host}:{port}", said))
            if said in REACHED:
                break
        found.append(NatProbe(name, tries, unread, lost))
    return NatReading(found, [w for w in workers if w not in reached], _data(target))


def judge_nat(reading: NatReading) -> list[Finding]:
    """A worker that reached none of its targets: FAIL (provisioning-failed: the nat role's
    masquerade rule or forwarding on the master; the worker is NODE). Workers that could not
    try: WARN (node-unreachable when SSH went, else provisioning-failed: their Python), as
    those the probe did not reach. One OK line otherwise (none when there is no worker)."""
    found = []
    for w in reading.workers:
        if w.unread is not None:
            runbook = "node-unreachable" if w.lost else "provisioning-failed"
            found.append(warn("nat", f"{w.node}: not checked ({w.unread})", runbook))
        elif not w.reached:
            tried = "; ".join(f"{where}: {outcome}" for where, outcome in w.tries)
            found.append(fail("nat", f"{w.node} reaches nothing beyond the master ({tried}): its "
                                     "way out is the master's NAT (the nat role's masquerade "
                                     "rule and forwarding); its apt and pip fail without it",
                              "provisioning-failed", "`clusterkit provision` puts the nat role's "
                              "rule back", {**reading.data, "NODE": w.node}))  # fmt: skip
    found += skipped_line("nat", reading.skipped)
    if found:
        return found
    if not reading.workers:
        return [ok("nat", "no worker to check")]
    said = ", ".join(f"{w.node} -> {w.tries[-1][0]} {w.tries[-1][1]}" for w in reading.workers)
    return [ok("nat", f"the workers reach beyond the master through its NAT: {said}")]


# -- hdfs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HdfsReading:
    """Whether the playbooks install HDFS on this cluster; the workers (name -> address);
    what ``hdfs dfsadmin -report`` and ``-safemode get`` printed on the master and how they
    exited (None: not run; ``unread`` says why, e.g. the master does not answer SSH)."""

    installed: bool
    workers: dict[str, str] = field(default_factory=dict)
    report: str | None = None
    report_code: int = 0
    safemode: str | None = None
    unread: str | None = None
    data: dict[str, str] = field(default_factory=dict)


def datanodes(report: str) -> dict[str, set[str]]:
    """The DataNodes' addresses of ``hdfs dfsadmin -report`` by section (``live``, ``dead``,
    ``decommissioning`` ...): each ``Name: ADDRESS:PORT (host)`` line under its section's
    ``Live datanodes (N):`` heading."""
    found: dict[str, set[str]] = {}
    section = None
    for line in report.splitlines():
        if line.endswith("):") and " datanodes (" in line:
            section = line.split(" datanodes (")[0].strip().lower()
            found.setdefault(section, set())
        elif line.startswith("Name: ") and section is not None:
            found[section].add(line.removeprefix("Name: ").split()[0].rsplit(":", 1)[0])
    return found


def read_hdfs(target: Target) -> HdfsReading:
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    variables = cluster.provider.playbook_variables(cluster.name, cluster.paths)
    workers = {n.name: n.address for n in cluster.state.inventory.workers()}
    data = _data(target)
    if not variables.get("clusterkit_hdfs", True):
        return HdfsReading(False, workers, data=data)
    master = cluster.state.inventory.driver()
    if master.name not in probe(target).answered():
        return HdfsReading(True, workers, unread=f"{master.name} does not answer SSH", data=data)
    runner = cluster.runner(master.name)
    hdfs = f"runuser -u hdfs -- {NODE_HDFS} dfsadmin"
    report = runner.run(f"{hdfs} -report", timeout=60, check=False)
    safemode = runner.run(f"{hdfs} -safemode get", timeout=60, check=False)
    said = (safemode.stdout + safemode.stderr).strip()
    return HdfsReading(True, workers, report.stdout + report.stderr, report.exit_code,
                       said, data=data)  # fmt: skip


def judge_hdfs(reading: HdfsReading) -> list[Finding]:
    """Not installed on this cluster (the rehearsal's storage is a folder): OK. Not read (the
    master silent): WARN. HDFS's command or user missing: FAIL (provisioning-failed). Its report
    failing (the NameNode does not answer), safe mode on, or a worker with no live DataNode:
    FAIL (hdfs-safe-mode; the worker is NODE). One OK line otherwise."""
    if not reading.installed:
        return [ok("hdfs", "not installed on this cluster (clusterkit_hdfs is false: its "
                           "storage is a folder every node shares)")]  # fmt: skip
    if reading.unread is not None or reading.report is None:
        return [warn("hdfs", f"not checked: {reading.unread} (see the ssh check)",
                     "node-unreachable")]  # fmt: skip
    data = reading.data
    last = (reading.report.strip().splitlines() or ["no output"])[-1]
    if reading.report_code == 127 or "No such file" in last or "does not exist" in last:
        return [fail("hdfs", f"HDFS's command is not on the master ({last})",
                     "provisioning-failed", "`clusterkit provision` installs it (the hadoop "
                     "role)", data)]  # fmt: skip
    if reading.report_code != 0:
        return [fail("hdfs", f"`hdfs dfsadmin -report` failed on the master (exit "
                             f"{reading.report_code}): {last}", "hdfs-safe-mode",
                     "the NameNode does not answer: the runbook", data)]  # fmt: skip
    found = []
    if reading.safemode is not None and "is ON" in reading.safemode:
        said = "" if reading.safemode.strip() == "Safe mode is ON" else f" ({reading.safemode})"
        saw = f"HDFS is in safe mode{said}: it refuses every write, so jobs that write fail"
        fix = "the runbook: its DataNodes first, then wait for it to leave"
        found.append(fail("hdfs", saw, "hdfs-safe-mode", fix, data))
    live = datanodes(reading.report).get("live", set())
    for name, address in reading.workers.items():
        if address not in live:
            found.append(fail("hdfs", f"{name} ({address}) has no live DataNode: HDFS lists "
                                      f"{', '.join(sorted(live)) or 'none'} live; blocks only "
                                      "it held are missing", "hdfs-safe-mode",
                              "the runbook starts it again", {**data, "NODE": name}))  # fmt: skip
    if found:
        return found
    return [ok("hdfs", f"{len(live)} live DataNodes (every worker's), safe mode off")]


# -- idle -------------------------------------------------------------------------------------

GUARD = "clusterkit-idle"


@dataclass(frozen=True)
class IdleReading:
    """The guard the spec asks for (``minutes`` idle, 0: none; its ``action``; ``scheduler``:
    ``timer`` on AWS, ``loop`` on the rehearsal), the provider, and the guard's units on the
    master as systemctl lists them (None: not read, ``unread`` says why)."""

    minutes: int
    action: str
    scheduler: str
    provider: str
    found: list[Unit] | None
    unread: str | None = None
    data: dict[str, str] = field(default_factory=dict)


def read_idle(target: Target) -> IdleReading:
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    spec, provider = cluster.state.spec, cluster.state.provider
    variables = cluster.provider.playbook_variables(cluster.name, cluster.paths)
    minutes = spec.idle_guard.minutes_for(provider)
    action = spec.idle_guard.action_for(provider)
    scheduler = str(variables.get("idle_guard_scheduler", "timer"))
    data = _data(target)
    master = cluster.state.inventory.driver()
    if master.name not in probe(target).answered():
        return IdleReading(minutes, action, scheduler, provider, None,
                           f"{master.name} does not answer SSH", data)  # fmt: skip
    found = [u for u in units(cluster.runner(master.name)) if u.stem == GUARD]
    return IdleReading(minutes, action, scheduler, provider, found, data=data)


def judge_idle(reading: IdleReading) -> list[Finding]:
    """The spec asks for a guard and the master's unit (``clusterkit-idle.timer``, or the
    ``.service`` of a loop) is missing, not enabled, or not active: FAIL (provisioning-failed;
    nothing stops a forgotten cluster). The spec asks for none and a unit is there: WARN
    (provisioning-failed). Not read: WARN. One OK line otherwise."""
    if reading.found is None:
        return [warn("idle", f"not checked: {reading.unread} (see the ssh check)",
                     "node-unreachable")]  # fmt: skip
    fix = "`clusterkit provision` installs it as the spec says (the idle_guard role)"
    if reading.minutes == 0:
        if reading.found:
            names = ", ".join(u.name for u in reading.found)
            return [warn("idle", f"the spec asks for no idle guard, but the master has {names}",
                         "provisioning-failed", "`clusterkit provision` removes it",
                         reading.data)]  # fmt: skip
        return [ok("idle", f"none asked for (idle_guard.idle_minutes is 0 on {reading.provider} "
                           "unless the spec sets it)")]  # fmt: skip
    unit = f"{GUARD}.{'timer' if reading.scheduler == 'timer' else 'service'}"
    have = next((u for u in reading.found if u.name == unit), None)
    billing = " (and bills)" if reading.provider == "aws" else ""
    asked = f"the spec asks for an idle guard after {reading.minutes} min"
    if have is None or not have.enabled or not have.running:
        if have is None:
            what = f"the master has no {unit}"
        elif not have.enabled:
            what = f"{unit} on the master is not enabled (it would not run after a boot)"
        else:
            what = f"{unit} on the master is {have.active}, not running"
        saw = f"{asked}, but {what}: nothing stops the cluster when it is forgotten{billing}"
        return [fail("idle", saw, "provisioning-failed", fix, reading.data)]
    acts = f"it acts ({reading.action}) after {reading.minutes} min with nothing active"
    return [ok("idle", f"{unit} enabled and {have.active} on the master: {acts}")]


# -- drift ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftReading:
    """The playbooks in check mode: ``checked`` false when not asked for (``doctor
    --drift``); else the tasks that ran, what would change (``changed`` per host, the
    ``tasks`` as "host: task") and how long it took, or ``error`` (``busy``: another command
    held the cluster; ``lost``: the file of a secret of the cluster's that is missing or
    empty here, so check mode did not run)."""

    checked: bool
    tasks: int = 0
    changed: dict[str, int] = field(default_factory=dict)
    changed_tasks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    busy: bool = False
    lost: str | None = None
    data: dict[str, str] = field(default_factory=dict)


def skip_drift(target: Target) -> DriftReading:
    """Drift not checked (a plain ``doctor``: check mode takes a minute or more)."""
    return DriftReading(False)


def read_drift(target: Target) -> DriftReading:
    """The playbooks in check mode under the cluster's lock (nothing is changed: a secret
    missing here is said, not made, and check mode does not run)."""
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    data = _data(target)
    services = cluster.services
    if not isinstance(services, PlaybookServices):
        return DriftReading(True, error="no playbooks on this cluster", data=data)
    t0 = time.monotonic()
    try:
        with cluster_lock(cluster.paths.root, "doctor --drift", wait_s=0):
            report = services.drift(cluster.state, cluster.paths, say=lambda _: None)
    except ClusterBusy as exc:
        return DriftReading(True, error=str(exc), busy=True, data=data)
    except SecretMissing as exc:
        return DriftReading(True, error=str(exc), lost=str(exc.path), data=data)
    except ProvisionError as exc:
        return DriftReading(True, error=str(exc), seconds=time.monotonic() - t0, data=data)
    return DriftReading(True, report.tasks, dict(report.changed), list(report.changed_tasks),
                        round(time.monotonic() - t0, 1), data=data)  # fmt: skip


def judge_drift(reading: DriftReading) -> list[Finding]:
    """Not asked for: OK saying so and how to. Another command holding the cluster: WARN.
    A secret of the cluster's missing here: FAIL (lost-token-or-key, the secret its FILE;
    check mode did not run). The playbooks failing in check mode: FAIL (provisioning-failed:
    a provision would fail the same way). Tasks that would change: WARN
    (provisioning-failed, naming them). OK when nothing would."""
    if not reading.checked:
        return [ok("drift", "not checked (the playbooks in check mode take a minute or more): "
                            "`clusterkit doctor --drift` checks it")]  # fmt: skip
    if reading.busy:
        return [warn("drift", f"not checked: {reading.error}")]
    if reading.lost is not None:
        return [fail("drift", f"not checked: {reading.error}", "lost-token-or-key",
                     "the runbook says how to make a new one and give it to the nodes",
                     {**reading.data, "FILE": reading.lost})]  # fmt: skip
    if reading.error is not None:
        return [fail("drift", f"the playbooks failed in check mode: {reading.error}",
                     "provisioning-failed", "the runbook: what failed, then `clusterkit "
                     "provision`", reading.data)]  # fmt: skip
    total = sum(reading.changed.values())
    if total:
        shown = "; ".join(reading.changed_tasks[:5])
        more = (
            f" and {len(reading.changed_tasks) - 5} more" if len(reading.changed_tasks) > 5 else ""
        )
        tasks = f"{total} task{'' if total == 1 else 's'}"
        return [warn("drift", f"{tasks} would change ({shown}{more}): the nodes are not "
                              "as the playbooks leave them", "provisioning-failed",
                     "`clusterkit provision` puts them back", reading.data)]  # fmt: skip
    return [ok("drift", f"the playbooks in check mode change nothing ({reading.tasks} tasks, "
                        f"{reading.seconds:.0f} s)")]  # fmt: skip
