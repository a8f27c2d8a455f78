"""`stop` and `start` as the state sees them (clusterkit.power), on a local cluster whose
state is written by hand and that runs no process: what is recorded, what `status`, `up`,
`run` and `runs` then say, and the refusals. Starting processes is the cluster tier's
(tests/integration/test_stop_start.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clusterkit import cli, lifecycle, power
from clusterkit.cluster import open_cluster, run_store
from clusterkit.core import power_log
from clusterkit.core.errors import ClusterkitError, NoCluster
from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts, Endpoints, paths_for
from clusterkit.runs.store import FolderRunStore
from clusterkit.watch import LiveSource


@pytest.fixture
def quiet_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClusterPaths:
    """A local cluster's state (current, in a home of its own) with no process started."""
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    spec = Spec(name="quiet")
    paths = paths_for(spec)
    node = Node("local", "127.0.0.1", ("master", "worker"))
    ClusterState(
        name="quiet", provider="local", spec=spec, started_at="2026-12-02T10:00:00.000+00:00",
        state_dir=str(paths.root), storage_root=str(paths.data),
        inventory=Inventory("quiet", "local", (node,)), endpoints=Endpoints.for_spec(spec),
        node_python=sys.executable, runs_dir=str(paths.runs), java_home="/nonexistent/jdk",
    ).save(paths)  # fmt: skip
    paths.data.mkdir()
    (paths.data / "kept.txt").write_text("data\n")
    Contexts().add("quiet", paths.root)
    return paths


def _run(paths: ClusterPaths, status: str) -> str:
    record = FolderRunStore(paths.runs).create(job="etl", params={}, cluster="quiet",
                                               provider="local", status=status)  # fmt: skip
    return record.id


def test_a_state_file_of_before_stop_and_start_loads_as_running(quiet_cluster):
    data = json.loads(quiet_cluster.state_file.read_text())
    del data["power"], data["stopped_at"]
    quiet_cluster.state_file.write_text(json.dumps(data))
    state = ClusterState.load(quiet_cluster)
    assert state is not None and (state.power, state.stopped_at) == ("running", None)


def test_stop_records_it_and_everything_else_says_stopped(quiet_cluster):
    done = _run(quiet_cluster, "succeeded")
    said: list[str] = []
    report = lifecycle.stop(say=said.append)
    assert report.changed and report.power == "stopped" and report.action == "stop"
    assert report.message.startswith("cluster 'quiet' is stopped: its data, run history")
    state = ClusterState.load(quiet_cluster)
    assert state is not None and state.power == "stopped" and state.stopped_at
    assert [e.event for e in power_log.read(quiet_cluster.root)[0]] == ["stop"]
    assert (quiet_cluster.data / "kept.txt").read_text() == "data\n"

    status = lifecycle.status()
    assert status["state"] == "stopped" and status["stopped_at"] == state.stopped_at
    assert status["services"] == [] and "still_billed" not in status  # nothing bills here
    with pytest.raises(NoCluster, match=r"'quiet' is stopped .*`clusterkit start`"):
        open_cluster()
    target, store = run_store()
    assert target is None and [r.id for r in store.all()] == [done]  # the history, as kept
    with pytest.raises(ClusterkitError, match=r"'quiet' is stopped .*`clusterkit start` starts"):
        lifecycle.up(Spec(name="quiet"))

    console = LiveSource()  # what the console shows: stopped, the fix, the history kept
    try:
        info = console.info()
        assert info.state == "stopped" and "`clusterkit start`" in info.message
        assert console.services() == [] and console.nodes() == []
        kept = console.store()
        assert kept is not None and [r.id for r in kept.all()] == [done]
    finally:
        console.close()

    again = lifecycle.stop()
    assert not again.changed and "already stopped" in again.message
    assert [e.event for e in power_log.read(quiet_cluster.root)[0]] == ["stop"]


def test_stop_is_refused_while_a_run_goes_on(quiet_cluster):
    going = _run(quiet_cluster, "running")
    with pytest.raises(power.RunsActive) as refused:
        lifecycle.stop()
    assert f"{going} (etl)" in str(refused.value) and "`clusterkit stop --force`" in str(
        refused.value
    )
    state = ClusterState.load(quiet_cluster)
    assert state is not None and state.power == "running"
    assert power_log.read(quiet_cluster.root)[0] == []


def test_start_on_a_running_cluster_says_so_and_changes_nothing(quiet_cluster):
    report = lifecycle.start()
    assert not report.changed and report.power == "running"
    assert "'quiet' is already running" in report.message and "`clusterkit up`" in report.message
    assert power_log.read(quiet_cluster.root)[0] == []


def test_down_takes_a_stopped_cluster_down(quiet_cluster):
    lifecycle.stop()
    report = lifecycle.down()
    assert report.changed and not quiet_cluster.state_file.exists()
    with pytest.raises(NoCluster, match=r"'quiet' is down .*nothing to start; `clusterkit up`"):
        lifecycle.start()


def test_the_cli_says_it_in_one_line_and_is_idempotent(quiet_cluster, capsys):
    assert cli.main(["stop"]) == 0
    assert capsys.readouterr().out.startswith("cluster 'quiet' is stopped:")
    assert cli.main(["stop"]) == 0
    assert "already stopped" in capsys.readouterr().out
    assert cli.main(["status"]) == 0
    shown = capsys.readouterr().out
    assert "stopped since" in shown and "`clusterkit start`" in shown
    assert cli.main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"
    assert cli.main(["start", "--cluster", "nope"]) == 1
    assert "no cluster named 'nope'" in capsys.readouterr().err
