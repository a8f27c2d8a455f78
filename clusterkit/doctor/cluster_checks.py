"""The cluster's checks: which cluster and in what state (``cluster``), its processes alive
and still what was started (``processes``), its services healthy as ``status`` reads them
(``services``).

Each check is a reading (``read_*``, from the :class:`~clusterkit.doctor.target.Target`) and a
judgement (``judge_*``, pure).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import psutil

from clusterkit.core.records import Daemon
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Health, Target
from clusterkit.exec import processes
from clusterkit.services.keeper_events import read_events
from clusterkit.services.local import KEEPER, keeper_daemon

# -- cluster ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterReading:
    """The cluster's name and kind, its status (none, unreadable, down, stopped, crashed,
    up), why there is none or its state cannot be read (``problem``: damaged, permissions or
    version) and the file that cannot, since when it runs or is stopped, and, crashed, the
    processes it records, none of which runs."""

    status: str
    name: str | None = None
    kind: str = "none"
    why: str = ""
    since: str | None = None
    file: str | None = None
    problem: str = "damaged"
    gone: list[str] = field(default_factory=list)


def read_cluster(target: Target) -> ClusterReading:
    state = target.state
    since = None
    if state is not None:
        since = state.stopped_at if state.power == "stopped" else state.started_at
    broken = str(target.broken) if target.broken is not None else None
    if target.status == "crashed" and target.paths is not None:
        broken = str(target.paths.state_file)  # what the runbook's steps take down and up
    return ClusterReading(target.status, target.name, target.kind, target.why, since, broken,
                          target.problem or "damaged", list(target.gone))  # fmt: skip


#: Another version of the kit's state: only that kit can take the cluster down.
OTHER_KIT_FIX = ("take the cluster down with the kit that brought it up (`clusterkit down` in "
                 "its environment), then `clusterkit up` with this one")  # fmt: skip


def judge_cluster(reading: ClusterReading) -> list[Finding]:
    """OK when up, or stopped on purpose (``clusterkit start``); WARN when the kit knows no
    cluster, or it is down (``clusterkit up``); FAIL when its state cannot be read: the file
    is the runbook's FILE, the runbook restore-after-crash when it is damaged,
    state-permissions when it cannot be opened, none when another version of the kit wrote it
    (only that kit takes the cluster down). FAIL (restore-after-crash, ``cluster.json`` its
    FILE) when it says up but none of its processes runs (this machine crashed)."""
    named = f"cluster {reading.name!r} ({reading.kind})"
    if reading.status == "up":
        return [ok("cluster", f"{named} is up since {reading.since}")]
    if reading.status == "stopped":
        return [ok("cluster", f"{named} is stopped since {reading.since}, disks kept; "
                              "`clusterkit start` starts it")]  # fmt: skip
    data = {"FILE": reading.file} if reading.file else None
    if reading.status == "crashed":
        gone = f"none of its {len(reading.gone)} processes runs ({', '.join(reading.gone)})"
        return [fail("cluster", f"{named} says it is up since {reading.since}, but {gone}: this "
                                "machine restarted or crashed, or they were killed",
                     "restore-after-crash", "`clusterkit down`, then `clusterkit up` again: "
                     "the runbook says how", data)]  # fmt: skip
    if reading.status == "unreadable" and reading.problem == "permissions":
        return [fail("cluster", reading.why, "state-permissions", data=data)]
    if reading.status == "unreadable" and reading.problem == "version":
        return [fail("cluster", reading.why, fix=OTHER_KIT_FIX, data=data)]
    if reading.status == "unreadable":
        return [fail("cluster", reading.why, "restore-after-crash", data=data)]
    if reading.status == "down":
        return [warn("cluster", f"{named} is down; only this machine is checked",
                     fix="`clusterkit up` starts it")]  # fmt: skip
    why = reading.why or "no cluster is known: start one with `clusterkit up`"
    return [warn("cluster", f"{why} (only this machine is checked)")]


# -- processes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonReading:
    """One process the services started: alive (by pid *and* start time, so a reused pid is
    not it), its command line still holding the word it was started with, and its log."""

    name: str
    pid: int
    alive: bool
    command_matches: bool = True
    log: str = ""


@dataclass(frozen=True)
class ProcessesReading:
    """The daemons ``cluster.json`` records, the keeper (None: it has no pid file), the
    daemons the keeper gave up on (ended 5 times within a minute) and the cluster's state
    folder (the runbook's STATE_DIR: ``up --spec STATE_DIR/spec.yaml`` repairs the cluster)."""

    daemons: list[DaemonReading]
    keeper: DaemonReading | None = None
    given_up: list[str] = field(default_factory=list)
    state_dir: str = ""


def main_word(argv: list[str]) -> str:
    """What a recorded command line is recognised by: the module after ``-m``, else the word
    after the program (Spark's class, ``ray``'s subcommand). ``spark-class`` becomes ``java``,
    so the program itself is not it."""
    rest = argv[1:]
    if rest[:1] == ["-m"] and len(rest) > 1:
        return rest[1]
    return rest[0] if rest else (argv[0] if argv else "")


def read_daemon(daemon: Daemon) -> DaemonReading:
    proc = processes.process_of(daemon)
    if proc is None:
        return DaemonReading(daemon.name, daemon.pid, False, log=daemon.log)
    matches = True
    with contextlib.suppress(psutil.Error):  # cannot be read: not judged
        matches = main_word(daemon.argv) in " ".join(proc.cmdline())
    return DaemonReading(daemon.name, daemon.pid, True, matches, daemon.log)


def read_processes(target: Target) -> ProcessesReading:
    assert target.state is not None and target.paths is not None  # a check of an up cluster
    daemons = [read_daemon(d) for d in target.state.daemons if d.name != KEEPER]
    keeper = keeper_daemon(target.paths)
    given_up = list(read_events(target.paths).get("given_up", []))
    return ProcessesReading(daemons, read_daemon(keeper) if keeper else None, given_up,
                            str(target.paths.root))  # fmt: skip


def judge_processes(reading: ProcessesReading) -> list[Finding]:
    """Per daemon: ended, and the keeper is not starting it again (it is not running, or gave
    up on it): FAIL (service-dead); ended while the keeper runs: WARN (it starts it again
    within about 2 s); alive but running another command: WARN. The keeper not running:
    WARN (nothing starts a daemon again when it ends). One OK line otherwise. The runbook's
    variables: SERVICE (the daemon), LOG (its log) and STATE_DIR."""
    found = []
    keeper_runs = reading.keeper is not None and reading.keeper.alive
    for d in reading.daemons:
        data = {"SERVICE": d.name, "LOG": d.log, "STATE_DIR": reading.state_dir}
        if not d.alive and keeper_runs and d.name not in reading.given_up:
            found.append(warn("processes", f"{d.name} (pid {d.pid}) ended; the keeper is "
                                           "starting it again", "service-dead",
                              "`clusterkit doctor` again in a few seconds", data))  # fmt: skip
        elif not d.alive:
            why = "the keeper gave up on it" if d.name in reading.given_up else "no keeper runs"
            found.append(fail("processes", f"{d.name} (pid {d.pid}) is not running ({why}); its "
                                           f"log: {d.log}", "service-dead",
                              "`clusterkit up` starts it again", data))  # fmt: skip
        elif not d.command_matches:
            found.append(warn("processes", f"{d.name} (pid {d.pid}) runs another command than "
                                           "the one recorded", "service-dead",
                              "`clusterkit up` repairs the cluster", data))  # fmt: skip
    if not keeper_runs:
        keeper = {"SERVICE": KEEPER, "STATE_DIR": reading.state_dir}
        if reading.keeper is not None:
            keeper["LOG"] = reading.keeper.log
        found.append(warn("processes", "the keeper is not running: nothing starts a daemon "
                                       "again when it ends", "service-dead",
                          "`clusterkit up` starts it", keeper))  # fmt: skip
    if found:
        return found
    named = [f"{d.name} (pid {d.pid})" for d in reading.daemons]
    if reading.keeper is not None:
        named.append(f"keeper (pid {reading.keeper.pid})")
    return [ok("processes", f"{len(named)} running: {', '.join(named)}")]


# -- services ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServicesReading:
    """The services as ``status`` reads them, and the cluster's state folder (the runbook's
    STATE_DIR)."""

    health: Health
    state_dir: str = ""


def read_services(target: Target) -> ServicesReading:
    found = target.health()
    assert found is not None and target.paths is not None  # a check of an up cluster
    return ServicesReading(found, str(target.paths.root))


def judge_services(reading: ServicesReading) -> list[Finding]:
    """WARN when they could not be read at all (a lost token: the state check names it; a
    master that does not answer); FAIL (service-dead) for each service its API says is down
    (the runbook's SERVICE), or, when none is, for each problem ``status`` names (a node
    missing from Spark or Ray); one OK line otherwise."""
    rows, where = reading.health.rows, {"STATE_DIR": reading.state_dir}
    if reading.health.unread is not None:  # what keeps them unread is another check's FAIL
        return [warn("services", f"could not be read: {reading.health.unread}")]
    down = [r for r in rows if r.state != "up"]
    fix = "`clusterkit up` starts again what is down; `clusterkit status` shows it"
    if down:
        return [fail("services", f"{r.name} {r.address} is down: {r.detail}", "service-dead",
                     fix, {"SERVICE": r.name, **where}) for r in down]  # fmt: skip
    if reading.health.problems:
        return [fail("services", problem, "service-dead", fix, where)
                for problem in reading.health.problems]  # fmt: skip
    names = ", ".join(dict.fromkeys(r.name for r in rows))
    return [ok("services", f"{len(rows)} up: {names}")]
