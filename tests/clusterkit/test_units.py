"""The kit's units stopped and started in order on remote nodes (clusterkit.services.units),
on runners that play systemctl: the workers' first on stop, the master's first on start, the
Spark Connect server and the idle guard once every node's services run, and a guard turned
off left off."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from clusterkit.core.errors import ServiceError
from clusterkit.core.inventory import Node
from clusterkit.exec.runner import CommandResult
from clusterkit.services.units import start_units, stop_units


class Systemctl:
    """A node's runner that answers the unit listing and ``systemctl stop|start`` from a
    table of units (name -> [enabled, active]), recording each call in ``calls``."""

    def __init__(self, name: str, units: dict[str, list[str]], calls: list[str],
                 *, stuck: str = "") -> None:  # fmt: skip
        self.node = Node(name, f"10.0.0.{len(calls)}", ("master",) if name == "master" else ())
        self.units, self.calls, self.stuck = units, calls, stuck

    def run(self, argv: Sequence[str] | str, *, timeout: float | None = 60) -> CommandResult:
        if isinstance(argv, str):  # the listing
            lines = [f"{name} {enabled} {active}\n"
                     for name, (enabled, active) in self.units.items()]  # fmt: skip
            return CommandResult(0, "".join(lines), "")
        _, verb, unit = argv
        self.calls.append(f"{self.node.name} {verb} {unit}")
        if unit != self.stuck:
            self.units[unit][1] = "inactive" if verb == "stop" else "active"
        return CommandResult(0, "", "")


def _nodes(calls: list[str], *, state: str, guard: str = "enabled") -> dict[str, Any]:
    master = {
        "clusterkit-idle.service": [guard, state],
        "clusterkit-ray.service": ["enabled", state],
        "clusterkit-spark-connect.service": ["enabled", state],
        "clusterkit-spark-master.service": ["enabled", state],
    }
    worker = {"clusterkit-ray.service": ["enabled", state],
              "clusterkit-spark-worker.service": ["enabled", state]}  # fmt: skip
    return {"master": Systemctl("master", master, calls),
            "worker": Systemctl("worker", worker, calls)}  # fmt: skip


def test_stop_goes_worker_first_and_the_connect_server_before_spark(capsys):
    calls: list[str] = []
    nodes = _nodes(calls, state="active")
    said: list[str] = []
    stopped = stop_units([nodes["worker"], nodes["master"]], say=said.append)
    assert calls == [
        "worker stop clusterkit-ray.service",
        "worker stop clusterkit-spark-worker.service",
        "master stop clusterkit-idle.service",
        "master stop clusterkit-spark-connect.service",
        "master stop clusterkit-ray.service",
        "master stop clusterkit-spark-master.service",
    ]
    assert list(stopped) == ["worker", "master"] and len(stopped["master"]) == 4
    assert said[0] == ("node worker: stopped clusterkit-ray.service, "
                       "clusterkit-spark-worker.service")  # fmt: skip
    again: list[str] = []
    stop_units([nodes["worker"], nodes["master"]], say=again.append)
    assert len(calls) == 6 and again[0] == "node worker: stopped nothing (none was running)"


def test_start_goes_master_first_and_leaves_a_guard_turned_off_off():
    calls: list[str] = []
    nodes = _nodes(calls, state="inactive", guard="disabled")
    nodes["master"].units["clusterkit-spark-connect.service"][0] = "disabled"  # a kit unit: on
    started = start_units([nodes["master"], nodes["worker"]], say=lambda _: None)
    assert calls == [
        "master start clusterkit-spark-master.service",
        "master start clusterkit-ray.service",
        "worker start clusterkit-spark-worker.service",
        "worker start clusterkit-ray.service",
        "master start clusterkit-spark-connect.service",
    ]
    assert "clusterkit-idle.service" not in started["master"]
    assert nodes["master"].units["clusterkit-idle.service"][1] == "inactive"


def test_a_unit_still_running_after_stop_is_named_with_the_fix(monkeypatch):
    from clusterkit.services import units as kit_units

    monkeypatch.setattr(kit_units, "STOP_WAIT_S", 1.5)  # it is waited for, then named
    calls: list[str] = []
    nodes = _nodes(calls, state="active")
    nodes["worker"].stuck = "clusterkit-ray.service"
    with pytest.raises(ServiceError) as raised:
        stop_units([nodes["worker"], nodes["master"]], say=lambda _: None)
    assert str(raised.value).startswith("node worker: clusterkit-ray.service still running")
    assert "`clusterkit stop` again" in str(raised.value)
    assert not any(call.startswith("master") for call in calls)  # the master was left as it was
