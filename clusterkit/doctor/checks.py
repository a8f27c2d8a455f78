"""The checks doctor runs, in order, and :func:`run_doctor`.

A :class:`Check` is a name, the cluster kinds it applies to (:data:`KINDS`; remote checks
add their own), whether the cluster must be up, and two halves: ``read`` gathers facts from
the machine into a readings dataclass, ``judge`` turns readings into findings without
touching anything (tests give it readings directly).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from clusterkit.cluster import Cluster
from clusterkit.core import state
from clusterkit.core.spec import Spec
from clusterkit.doctor import (
    aws_checks,
    cluster_checks,
    machine,
    node_services,
    nodes,
    ports,
    state_files,
    stuck_runs,
)
from clusterkit.doctor.report import Finding, Report, warn
from clusterkit.doctor.target import KINDS, Target, find_target, recorded_python

R = TypeVar("R")

EVERY = frozenset(KINDS)
#: This machine's own services: no cluster yet (what ``up`` will need) or the local one.
HERE = frozenset({"none", "local"})
LOCAL = frozenset({"local"})
#: Clusters of nodes reached over SSH: the rehearsal and AWS.
REMOTE = frozenset({"netns", "aws"})
#: An AWS cluster known here, or none yet (then only when the spec's provider is aws).
AWS = frozenset({"none", "aws"})


@dataclass(frozen=True)
class Check(Generic[R]):
    """One check: ``read`` (the machine -> readings) then ``judge`` (readings -> findings,
    pure), where the cluster's kind is in ``kinds`` (and, with ``needs_up``, it is up; with
    ``when``, it says so of the target)."""

    name: str
    kinds: frozenset[str]
    read: Callable[[Target], R]
    judge: Callable[[R], list[Finding]]
    needs_up: bool = False
    when: Callable[[Target], bool] | None = None

    def applies(self, target: Target) -> bool:
        return (target.kind in self.kinds and (target.up or not self.needs_up)
                and (self.when is None or self.when(target)))  # fmt: skip

    def run(self, target: Target) -> list[Finding]:
        """Its findings; a reading or judgement that raised is a WARN saying so (doctor
        never fails on what it could not look at)."""
        try:
            return self.judge(self.read(target))
        except Exception as exc:
            return [warn(self.name, f"could not be checked: {type(exc).__name__}: {exc}")]


def _java(target: Target) -> machine.JavaReading:
    return machine.read_java(target.spec.versions.java_min)


def _python(target: Target) -> machine.PythonReading:
    pinned = recorded_python(target.paths) if target.paths is not None else None
    return machine.read_python(pinned)


def _disk(target: Target) -> list[machine.DiskReading]:
    """The kit's home and, of a known cluster, its state folder, its storage root when that
    is a folder of this machine (local, netns) and Ray's temp folder (local)."""
    places = [("home", target.home)]
    if target.paths is not None:
        places.append(("state folder", target.paths.root))
    st = target.state
    if st is not None and target.kind in ("local", "netns") and "://" not in st.storage_root:
        places.append(("storage root", Path(st.storage_root)))
    if st is not None and st.ray_temp_dir:
        places.append(("ray temp", Path(st.ray_temp_dir)))
    return machine.read_disks(places)


#: Every check, in the order they run and print.
CHECKS: list[Check[Any]] = [
    Check("cluster", EVERY, cluster_checks.read_cluster, cluster_checks.judge_cluster),
    Check("java", HERE, _java, machine.judge_java),
    Check("python", EVERY, _python, machine.judge_python),
    Check("disk", EVERY, _disk, machine.judge_disk),
    Check("state", EVERY, state_files.read_state, state_files.judge_state),
    Check("ports", HERE, ports.read_ports, ports.judge_ports),
    Check("processes", LOCAL, cluster_checks.read_processes, cluster_checks.judge_processes,
          needs_up=True),
    Check("services", LOCAL, cluster_checks.read_services, cluster_checks.judge_services,
          needs_up=True),
    Check("runs", LOCAL, stuck_runs.read_runs, stuck_runs.judge_runs),
    # the remote nodes (the SSH probe first: the others act on the nodes it reached)
    Check("ssh", REMOTE, nodes.probe, nodes.judge_ssh, needs_up=True),
    Check("clock", REMOTE, nodes.read_clock, nodes.judge_clock, needs_up=True),
    Check("pythons", REMOTE, nodes.read_pythons, nodes.judge_pythons, needs_up=True),
    Check("nat", REMOTE, node_services.read_nat, node_services.judge_nat, needs_up=True),
    Check("hdfs", REMOTE, node_services.read_hdfs, node_services.judge_hdfs, needs_up=True),
    Check("idle", REMOTE, node_services.read_idle, node_services.judge_idle, needs_up=True),
    Check("drift", REMOTE, node_services.skip_drift, node_services.judge_drift, needs_up=True),
    # AWS (aws_checks.py): its account, key pair, SSH rule, and what no state here knows
    Check("aws", AWS, aws_checks.read_aws, aws_checks.judge_aws, when=aws_checks.applies),
    Check("keypair", AWS, aws_checks.read_keypair, aws_checks.judge_keypair,
          when=aws_checks.applies),
    Check("sshrule", AWS, aws_checks.read_sshrule, aws_checks.judge_sshrule,
          when=aws_checks.applies),
    Check("orphans", AWS, aws_checks.read_orphans, aws_checks.judge_orphans,
          when=aws_checks.applies),
]  # fmt: skip


def with_drift(checks: Sequence[Check[Any]]) -> list[Check[Any]]:
    """``checks`` with the drift check running the playbooks in check mode (``doctor
    --drift``: a minute or more) instead of saying it was not asked for."""
    return [replace(c, read=node_services.read_drift) if c.read is node_services.skip_drift
            else c for c in checks]  # fmt: skip


def run_doctor(
    cluster: Cluster | None,
    *,
    home: Path | None = None,
    name: str | None = None,
    spec: Spec | None = None,
    checks: Sequence[Check[Any]] | None = None,
) -> Report:
    """Every check of ``checks`` (default :data:`CHECKS`) that applies to ``cluster``, or,
    when None, to the named (or current) cluster of the kit's ``home`` (default
    ``$CLUSTERKIT_HOME``) in whichever state it is; with no cluster known, this machine's
    checks (``spec``'s ports and Java: the defaults when None). Never raises for what it
    finds, starts nothing; the runners it opens it closes (``cluster``'s are the caller's)."""
    t0 = time.monotonic()
    target = find_target(cluster, home=home or state.home(), name=name, spec=spec)
    try:
        findings = [finding for check in (CHECKS if checks is None else checks)
                    if check.applies(target) for finding in check.run(target)]  # fmt: skip
    finally:
        if cluster is None and target.cluster is not None:
            target.cluster.close()
    return Report(findings, round(time.monotonic() - t0, 2), target.name)
