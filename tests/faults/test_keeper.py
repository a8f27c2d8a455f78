"""The local keeper's rules, on real processes (``sleep`` standing in for the daemons) and a
real state file: what it starts again, in which order, when it gives up, and that `up` lets
it try again. The cluster tests kill the real daemons."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.records import Daemon
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Endpoints, JobSizing
from clusterkit.exec import processes
from clusterkit.services.keeper import LIMIT_BURST, Keeper
from clusterkit.services.keeper_events import forgive_given_up, read_events

NAMES = ("spark-master", "ray-head", "spark-worker", "spark-connect")


class Sleepers:
    """Starts ``sleep`` processes as the daemons; remembers each, to end them all after."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, name: str) -> Daemon:
        proc = subprocess.Popen(["sleep", "300"])
        self.started.append(proc)
        created = psutil.Process(proc.pid).create_time()
        return Daemon(name, proc.pid, created, ["sleep", "300"], str(self.tmp_path / name))

    def starter(self, name: str) -> Callable[[], Daemon]:
        return lambda: self.start(name)

    def end(self, daemon: Daemon) -> None:
        proc = next(p for p in self.started if p.pid == daemon.pid)
        proc.kill()
        proc.wait()


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[Sleepers]:
    made = Sleepers(tmp_path)
    yield made
    for proc in made.started:
        proc.kill()
        proc.wait()


class TestKeeper(Keeper):
    """The keeper with the master's readiness given (no Spark master UI in a unit test)."""

    __test__ = False
    master_ready = True

    def _master_ready(self, state: ClusterState, by_name: dict[str, Daemon]) -> bool:
        return self.master_ready


def _cluster(tmp_path: Path, sleepers: Sleepers) -> tuple[ClusterPaths, ClusterState]:
    spec = Spec(name="kept")
    node = Node("local", "127.0.0.1", ("master", "worker"), ssh_host="127.0.0.1")
    state = ClusterState(
        name=spec.name, provider="local", spec=spec, started_at="2026-12-02T10:00:00.000+00:00",
        state_dir=str(tmp_path), storage_root=str(tmp_path / "data"),
        inventory=Inventory(spec.name, "local", (node,)),
        endpoints=Endpoints.for_spec(spec, host="127.0.0.1"), node_python=sys.executable,
        runs_dir=str(tmp_path / "runs"), ssh=SshSettings("root", tmp_path / "k", tmp_path / "kh"),
        sizing=JobSizing(2, 3072, 1024), daemons=[sleepers.start(n) for n in NAMES],
    )  # fmt: skip
    paths = ClusterPaths(tmp_path)
    state.save(paths)
    return paths, state


def _keeper(paths: ClusterPaths, sleepers: Sleepers, said: list[str]) -> TestKeeper:
    return TestKeeper(paths, {n: sleepers.starter(n) for n in NAMES}, say=said.append)


def _daemon(paths: ClusterPaths, name: str) -> Daemon:
    state = ClusterState.load(paths)
    assert state is not None
    return next(d for d in state.daemons if d.name == name)


def test_what_ended_is_started_again_recorded_and_counted(tmp_path, sleepers):
    paths, _ = _cluster(tmp_path, sleepers)
    said: list[str] = []
    keeper = _keeper(paths, sleepers, said)
    assert keeper.check() == []  # all alive: nothing to do
    old = _daemon(paths, "ray-head")
    sleepers.end(old)
    assert keeper.check() == ["ray-head"]
    new = _daemon(paths, "ray-head")
    assert new.pid != old.pid and processes.is_alive(new)
    assert said == [f"ray-head (pid {old.pid}) had ended; started again as pid {new.pid}"]
    assert read_events(paths)["restarts"] == {"ray-head": 1}


def test_those_that_need_the_master_wait_for_it_without_spending_their_restarts(
        tmp_path, sleepers):  # fmt: skip
    paths, _ = _cluster(tmp_path, sleepers)
    keeper = _keeper(paths, sleepers, [])
    master, worker = _daemon(paths, "spark-master"), _daemon(paths, "spark-worker")
    sleepers.end(master)
    sleepers.end(worker)
    keeper.master_ready = False  # a master JVM slow to come up
    assert keeper.check() == ["spark-master"]
    for _ in range(3 * LIMIT_BURST):
        assert keeper.check() == []  # the worker waits
    keeper.master_ready = True
    assert keeper.check() == ["spark-worker", "spark-connect"]  # connect: the master's new
    assert read_events(paths)["given_up"] == []
    assert read_events(paths)["restarts"] == {"spark-master": 1, "spark-worker": 1,
                                              "spark-connect": 1}  # fmt: skip


def test_a_master_started_again_means_a_connect_server_started_again(tmp_path, sleepers):
    paths, _ = _cluster(tmp_path, sleepers)
    said: list[str] = []
    keeper = _keeper(paths, sleepers, said)
    connect = _daemon(paths, "spark-connect")
    sleepers.end(_daemon(paths, "spark-master"))
    assert keeper.check() == ["spark-master", "spark-connect"]
    assert not processes.is_alive(connect)  # the old one was stopped, not left beside it
    assert processes.is_alive(_daemon(paths, "spark-connect"))
    assert "lost its application when the Spark master ended" in said[-1]
    assert keeper.check() == []  # once only


def test_one_that_keeps_ending_is_given_up_and_up_lets_it_be_tried_again(tmp_path, sleepers):
    paths, _ = _cluster(tmp_path, sleepers)
    said: list[str] = []
    keeper = _keeper(paths, sleepers, said)
    for _ in range(LIMIT_BURST):
        sleepers.end(_daemon(paths, "spark-worker"))
        assert keeper.check() == ["spark-worker"]
    sleepers.end(_daemon(paths, "spark-worker"))
    assert keeper.check() == []
    assert read_events(paths)["given_up"] == ["spark-worker"]
    assert said[-1].startswith(f"spark-worker ended {LIMIT_BURST} times within 60 s: left down")
    assert keeper.check() == [] and len(said) == LIMIT_BURST + 1  # said once
    forgive_given_up(paths)  # what `up` does before it starts a fresh keeper
    assert read_events(paths)["given_up"] == []
    assert read_events(paths)["restarts"] == {"spark-worker": LIMIT_BURST}  # counts stay
    assert _keeper(paths, sleepers, []).check() == ["spark-worker"]
