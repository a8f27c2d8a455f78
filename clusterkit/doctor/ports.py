"""The cluster's ports: each one the spec gives either free, or held by the cluster's own
processes while it is up. Anything else holding one is what makes ``up`` fail (or what a
crash left behind): another program, or another cluster the kit's home knows (named).

:func:`read_ports` lists this machine's listening sockets once (psutil); :func:`judge_ports`
is pure.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field

import psutil

from clusterkit.core.errors import StateError
from clusterkit.core.records import Daemon
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.exec import processes
from clusterkit.services import preflight
from clusterkit.services.local import pid_file_daemons


@dataclass(frozen=True)
class Holder:
    """A process listening on a port: its pid and name (pid None: another user's process,
    whose pid cannot be seen), whether it is one the cluster recorded (a daemon, or a process
    under one) and, when another cluster of the kit's home recorded it, that cluster's name."""

    pid: int | None
    name: str
    ours: bool = False
    cluster: str | None = None


@dataclass(frozen=True)
class PortReading:
    """One of the spec's ports: its field (``ports.NAME``), number and who listens on it."""

    name: str
    port: int
    holders: list[Holder] = field(default_factory=list)  # empty: free


@dataclass(frozen=True)
class PortsReading:
    """The spec's ports as found now, whether the cluster is up (its own processes may hold
    them then) and its name; ``error`` when the listening sockets could not be listed."""

    ports: list[PortReading]
    cluster_up: bool
    cluster: str | None = None
    error: str | None = None


def _tree(daemon: Daemon) -> set[int]:
    """The pids of a live daemon (by pid and start time) and every process under it."""
    proc = processes.process_of(daemon)
    if proc is None:
        return set()
    with contextlib.suppress(psutil.Error):
        return {proc.pid} | {child.pid for child in proc.children(recursive=True)}
    return {proc.pid}


def recorded_daemons(target: Target) -> list[Daemon]:
    """What the cluster started: ``cluster.json``'s daemons and the pid files in ``pids/``
    (written as each starts, so a crash before ``cluster.json`` leaves them findable)."""
    found = list(target.state.daemons) if target.state is not None else []
    if target.paths is not None:
        found += [d for d in pid_file_daemons(target.paths) if all(d.pid != f.pid for f in found)]
    return found


def _daemons_of(paths: ClusterPaths) -> list[Daemon]:
    """What another cluster recorded: its ``cluster.json``'s daemons (read as they are, not
    validated: it may be another kit's) and its pid files; nothing when neither reads."""
    found: list[Daemon] = []
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError, AttributeError):
        found += [Daemon.from_dict(d) for d in json.loads(paths.state_file.read_text())["daemons"]]
    return found + [d for d in pid_file_daemons(paths) if all(d.pid != f.pid for f in found)]


def other_clusters(target: Target) -> dict[int, str]:
    """The pids of the other clusters the kit's home knows (every process under a daemon or
    keeper each recorded), by cluster name; empty when ``contexts.json`` cannot be read."""
    try:
        known = Contexts(target.home).clusters()
    except StateError:
        return {}
    mine = target.paths.root if target.paths is not None else None
    found: dict[int, str] = {}
    for name, root in sorted(known.items()):
        if name == target.name or root == mine:
            continue
        for daemon in _daemons_of(ClusterPaths(root)):
            for pid in _tree(daemon):
                found.setdefault(pid, name)
    return found


def read_ports(target: Target) -> PortsReading:
    wanted = {port: name for name, port in target.spec.ports.fixed().items()}
    ours: set[int] = set()
    for daemon in recorded_daemons(target):
        ours |= _tree(daemon)
    others = other_clusters(target)
    try:
        listening = preflight.port_listeners(wanted)
    except (psutil.AccessDenied, OSError) as exc:
        return PortsReading([], target.up, target.name, f"{type(exc).__name__}: {exc}")
    readings = []
    for port, name in sorted(wanted.items()):
        holders = []
        for pid in listening.get(port, []):
            if pid is None:
                holders.append(Holder(None, "a process of another user"))
                continue
            try:
                holders.append(Holder(pid, psutil.Process(pid).name(), pid in ours,
                                      None if pid in ours else others.get(pid)))  # fmt: skip
            except psutil.NoSuchProcess:
                continue  # gone since
        readings.append(PortReading(name, port, holders))
    return PortsReading(readings, target.up, target.name)


def _who(holder: Holder) -> str:
    return holder.name if holder.pid is None else f"{holder.name} (pid {holder.pid})"


def _holder_data(port: int, holder: Holder) -> dict[str, str]:
    """The runbook's variables: the port, and the holder's pid and name when they are known
    (another user's process shows neither)."""
    if holder.pid is None:
        return {"PORT": str(port)}
    return {"PORT": str(port), "PID": str(holder.pid), "PROCESS": holder.name}


def judge_ports(reading: PortsReading) -> list[Finding]:
    """FAIL (port-in-use: PORT, and PID and PROCESS when known) for each port held by a
    process not the cluster's, or by one of the cluster's while it is not up (left by a
    crash); held by another cluster of the kit's, that cluster named and no PID given (the
    runbook's steps stop before stopping it: ``clusterkit down --cluster NAME`` does); WARN
    when the sockets cannot be listed; one OK line otherwise."""
    if reading.error is not None:
        return [warn("ports", f"the listening sockets cannot be listed ({reading.error})",
                     fix="`clusterkit up --dry-run` checks the ports by binding them")]  # fmt: skip
    found, held = [], 0
    for r in reading.ports:
        theirs = [h for h in r.holders if not (h.ours and reading.cluster_up)]
        if r.holders and not theirs:
            held += 1
        for holder in theirs:
            where = f"{r.port} (ports.{r.name}) held by {_who(holder)}"
            data = _holder_data(r.port, holder)
            if holder.ours:
                found.append(fail("ports", f"{where}, left by cluster {reading.cluster!r} that "
                                           "is not up", "port-in-use",
                                  "`clusterkit down` stops what its pid files name",
                                  data))  # fmt: skip
            elif holder.cluster is not None:
                found.append(fail("ports", f"{where} of cluster {holder.cluster!r}",
                                  "port-in-use", f"`clusterkit down --cluster {holder.cluster}`"
                                  f", or set ports.{r.name} to a free port in clusterkit.yaml",
                                  {"PORT": str(r.port), "PROCESS": holder.name}))  # fmt: skip
            else:
                found.append(fail("ports", where, "port-in-use",
                                  f"stop it, or set ports.{r.name} to a free port in "
                                  "clusterkit.yaml", data))  # fmt: skip
    if found:
        return found
    total = len(reading.ports)
    if held:
        return [ok("ports", f"{total} ports: {held} held by cluster {reading.cluster!r}, "
                            f"{total - held} free")]  # fmt: skip
    return [ok("ports", f"{total} ports free")]
