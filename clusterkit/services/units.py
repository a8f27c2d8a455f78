"""The kit's systemd units on a remote cluster's nodes, stopped and started in order through
the nodes' runners: what ``clusterkit stop`` and ``start`` do where the nodes themselves stay
(the rehearsal; a real systemd or the rehearsal's stand-in alike).

The units are the playbooks' (``playbooks/roles/*/tasks``): ``clusterkit-spark-master``,
``-spark-worker``, ``-spark-connect``, ``-ray``, ``-hdfs`` (AWS only), and any other
``clusterkit-*`` unit (the idle guard's), found on each node by its unit file. Stop: the
others and the Spark Connect server first, Spark, Ray, HDFS last; start: the other way, the
Spark Connect server and the others once every node's services run (as the playbooks do).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clusterkit.core.errors import ServiceError
from clusterkit.exec.runner import CommandRunner

UNIT_DIR = "/etc/systemd/system"
#: The services' units, in the order they start (HDFS and Spark's master before what joins them).
BASE_UNITS = ("clusterkit-hdfs", "clusterkit-spark-master", "clusterkit-spark-worker",
              "clusterkit-ray")  # fmt: skip
#: Started once every node's base units run: the Connect server asks the workers for executors.
LATE_UNITS = ("clusterkit-spark-connect",)
KIT_UNITS = BASE_UNITS + LATE_UNITS
#: What ``systemctl is-active`` says of a unit that still runs, or is on its way.
RUNNING = ("active", "activating", "deactivating", "reloading")
#: Seconds a node's units may take to end after ``systemctl stop`` returned.
STOP_WAIT_S = 30.0

_LIST = (
    f"cd {UNIT_DIR} 2>/dev/null || exit 0; "
    'for f in clusterkit-*.service clusterkit-*.timer; do [ -e "$f" ] || continue; '
    'printf \'%s %s %s\\n\' "$f" "$(systemctl is-enabled "$f" 2>/dev/null || true)" '
    '"$(systemctl is-active "$f" 2>/dev/null || true)"; done'
)


@dataclass(frozen=True)
class Unit:
    name: str  # with its suffix: clusterkit-ray.service
    enabled: bool
    active: str  # systemctl is-active's word

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]

    @property
    def running(self) -> bool:
        return self.active in RUNNING


def units(runner: CommandRunner) -> list[Unit]:
    """The kit's units on the node of ``runner``, as systemctl sees them now."""
    found = []
    for line in runner.run(_LIST, timeout=60).stdout.splitlines():
        name, _, rest = line.partition(" ")
        enabled, _, active = rest.partition(" ")
        if name:
            found.append(Unit(name, enabled.strip() == "enabled", active.strip() or "unknown"))
    return found


def start_order(found: list[Unit]) -> list[Unit]:
    """HDFS, Spark's master, its worker, Ray, the Connect server, then the others (the idle
    guard's, timers after their services)."""
    order = KIT_UNITS
    return sorted(found, key=lambda u: (u.stem not in order,
                                        order.index(u.stem) if u.stem in order else 0,
                                        u.name.endswith(".timer"), u.name))  # fmt: skip


def stop_order(found: list[Unit]) -> list[Unit]:
    """:func:`start_order` reversed: the others (the idle guard's) first, HDFS last."""
    return start_order(found)[::-1]


def _systemctl(runner: CommandRunner, verb: str, unit: Unit) -> None:
    runner.run(["systemctl", verb, unit.name], timeout=180)


def _still_running(runner: CommandRunner, *, timeout_s: float) -> list[str]:
    """The kit's units still running on the node after up to ``timeout_s`` (a unit's main
    process may outlive its ExecStop by a few seconds: Ray's does)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [u.name for u in units(runner) if u.running]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def stop_units(runners: Sequence[CommandRunner], *, say: Callable[[str], None]
               ) -> dict[str, list[str]]:  # fmt: skip
    """Stop the kit's running units on each node in the order of ``runners`` (the workers
    first), each node's in :func:`stop_order`; the units stopped, by node. ServiceError names
    a unit still running afterwards, its node and the fix."""
    stopped: dict[str, list[str]] = {}
    for runner in runners:
        node = runner.node.name
        todo = [u for u in stop_order(units(runner)) if u.running]
        for unit in todo:
            _systemctl(runner, "stop", unit)
        stopped[node] = [u.name for u in todo]
        left = _still_running(runner, timeout_s=STOP_WAIT_S)
        if left:
            raise ServiceError(
                f"node {node}: {', '.join(left)} still running after `systemctl stop`; stop "
                f"them by hand (`clusterkit ssh {node} -- systemctl stop UNIT`), then run "
                f"`clusterkit stop` again"
            )
        say(f"node {node}: stopped {', '.join(stopped[node]) or 'nothing (none was running)'}")
    return stopped


def start_units(runners: Sequence[CommandRunner], *, say: Callable[[str], None]
                ) -> dict[str, list[str]]:  # fmt: skip
    """Start the kit's units that are not running (the services' always, the others when
    enabled: a guard turned off stays off): the base units on each node in the
    order of ``runners`` (the master first), then on each the Connect server and the others
    (the idle guard's). The units started, by node; a unit that fails to start raises the
    runner's error naming it. Health is the caller's to wait for."""
    found = {runner.node.name: units(runner) for runner in runners}
    started: dict[str, list[str]] = {name: [] for name in found}
    for late in (False, True):
        for runner in runners:
            node = runner.node.name
            todo = [u for u in found[node] if (u.enabled or u.stem in KIT_UNITS)
                    and not u.running and (u.stem in BASE_UNITS) != late]  # fmt: skip
            for unit in start_order(todo):
                _systemctl(runner, "start", unit)
                started[node].append(unit.name)
    for node, names in started.items():
        say(f"node {node}: started {', '.join(names) or 'nothing (all were running)'}")
    return started
