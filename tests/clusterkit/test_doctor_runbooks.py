"""Doctor sends each incident to its own runbook (readings injected, no Spark or Ray): a state
file that cannot be opened to state-permissions, one another version of the kit wrote to no
runbook with its own message, a local cluster whose processes are all gone to
restore-after-crash, a port of another cluster the kit knows named as that cluster's, and a
job whose latest run failed out of memory (Spark's, Ray's, Python's or the kernel's words for
it) to job-out-of-memory."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from clusterkit.core.errors import StateError
from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.records import Daemon, RunRecord
from clusterkit.core.spec import Ports, Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts, Endpoints
from clusterkit.doctor import cluster_checks as cc
from clusterkit.doctor import ports, run_doctor, state_files, stuck_runs
from clusterkit.doctor.target import Target, find_target, gone_processes, state_problem

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_chosen_cluster(monkeypatch):
    monkeypatch.delenv("CLUSTERKIT_CLUSTER", raising=False)


def _one(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def _state(paths: ClusterPaths, daemons: list[Daemon], *, name: str = "c") -> ClusterState:
    spec = Spec(name=name, ports=Ports.numbered_from(47400))
    here = Node("local", "127.0.0.1", ("master", "worker"))
    return ClusterState(name=name, provider="local", spec=spec,
                        started_at="2026-12-01T10:00:00.000+00:00", state_dir=str(paths.root),
                        storage_root=str(paths.data), inventory=Inventory(name, "local", (here,)),
                        endpoints=Endpoints.for_spec(spec), node_python=sys.executable,
                        runs_dir=str(paths.runs), daemons=daemons)  # fmt: skip


def _home(tmp_path: Path, name: str = "c") -> tuple[Path, ClusterPaths]:
    home = tmp_path / "home"
    paths = ClusterPaths(home / "clusters" / name)
    paths.root.mkdir(parents=True, mode=0o700)
    Contexts(home).add(name, paths.root)
    return home, paths


def _me(name: str, *, alive: bool = True) -> Daemon:
    """This process as a recorded daemon: alive, or (its start time another) a pid reused
    since by another process, as after a restart of the machine."""
    started = psutil.Process().create_time() - (0 if alive else 100)
    return Daemon(name, os.getpid(), started, [sys.executable, "-m", "pytest"], f"/logs/{name}")


# -- a state file that cannot be opened, or another kit's ------------------------------------


def _raised(error: StateError, cause: BaseException) -> StateError:
    try:
        raise error from cause
    except StateError as exc:
        return exc


def test_a_state_file_that_cannot_be_opened_is_a_permissions_problem(tmp_path):
    path = tmp_path / "cluster.json"
    denied = _raised(StateError(f"{path}: cannot be read (Permission denied); check its owner "
                                "and mode"), PermissionError(13, "Permission denied"))  # fmt: skip
    assert state_problem(denied, path) == ("permissions", str(denied))
    damaged = _raised(StateError(f"{path} is not valid JSON"), ValueError("Expecting value"))
    assert state_problem(damaged, path)[0] == "damaged"


def test_doctor_sends_an_unopenable_cluster_json_to_state_permissions(tmp_path, monkeypatch):
    home, paths = _home(tmp_path)
    paths.state_file.write_text("{}")

    def refused(_: ClusterPaths) -> None:  # as ClusterState.load raises it (root reads all)
        raise _raised(StateError(f"{paths.state_file}: cannot be read (Permission denied); "
                                 "check its owner and mode"),
                      PermissionError(13, "Permission denied"))  # fmt: skip

    monkeypatch.setattr("clusterkit.doctor.target.Cluster.load", refused)
    target = find_target(None, home=home)
    assert (target.status, target.problem) == ("unreadable", "permissions")
    found = _one(cc.judge_cluster(cc.read_cluster(target)))
    assert found.status == "fail" and found.runbook == "state-permissions"
    assert "Permission denied" in found.saw and found.data == {"FILE": str(paths.state_file)}


def test_a_contexts_json_that_cannot_be_opened_goes_to_state_permissions(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    (home / "contexts.json").write_text("{}")

    def refused(self: Contexts, name: str | None) -> None:
        raise _raised(StateError(f"{self.file} cannot be read (Permission denied): see "
                                 "docs/runbooks/state-permissions.md"),
                      PermissionError(13, "Permission denied"))  # fmt: skip

    monkeypatch.setattr(Contexts, "resolve", refused)
    found = _one(cc.judge_cluster(cc.read_cluster(find_target(None, home=home))))
    assert found.runbook == "state-permissions"
    assert found.data == {"FILE": str(home / "contexts.json")}


def test_a_state_file_of_the_state_folder_that_cannot_be_opened_fails_as_permissions(
    tmp_path, monkeypatch
):
    home, paths = _home(tmp_path)
    (paths.root / "keeper.json").write_text("{}")
    (paths.pids).mkdir()
    (paths.pids / "ray-head.json").write_text("{")
    real = Path.read_text

    def read_text(self: Path, *args, **kwargs) -> str:
        if self.name == "keeper.json":  # root reads every file: the refusal is injected
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    reading = state_files.read_state(Target(home, Spec(), "c", paths, "local"))
    assert reading.denied == [(str(paths.root / "keeper.json"), "Permission denied")]
    assert [p for p, _ in reading.unreadable] == [str(paths.pids / "ray-head.json")]
    found = state_files.judge_state(reading)
    assert {(f.runbook, f.data["FILE"]) for f in found if f.runbook != "lost-token-or-key"} == {
        ("state-permissions", str(paths.root / "keeper.json")),
        ("restore-after-crash", str(paths.pids / "ray-head.json")),
    }
    denied = next(f for f in found if f.runbook == "state-permissions")
    assert denied.status == "fail" and "cannot be read (Permission denied)" in denied.saw


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"spec.versions.spark": "3.5.1"}, "it records spark 3.5.1; this kit has spark "),
        ({"spec.versions.python": "3.9", "spec.versions.ray": "2.9.0"},
         "it records ray 2.9.0, python 3.9; this kit has ray "),
        ({"schema": 99}, "was written by a newer clusterkit (layout 99"),
        ({"schema": 2}, "was written by an older clusterkit (layout 2"),
    ],
)  # fmt: skip
def test_a_state_another_version_of_the_kit_wrote_is_said_so_with_no_runbook(tmp_path, change,
                                                                             said):  # fmt: skip
    home, paths = _home(tmp_path)
    data = _state(paths, []).to_dict()
    for key, value in change.items():
        *outer, last = key.split(".")
        inner = data
        for part in outer:
            inner = inner[part]
        inner[last] = value
    paths.state_file.write_text(json.dumps(data))
    target = find_target(None, home=home)
    assert (target.status, target.problem) == ("unreadable", "version")
    found = _one(cc.judge_cluster(cc.read_cluster(target)))
    assert found.status == "fail" and found.runbook is None and said in found.saw
    assert found.fix == cc.OTHER_KIT_FIX and found.data == {"FILE": str(paths.state_file)}


def test_a_damaged_state_still_goes_to_restore_after_crash(tmp_path):
    home, paths = _home(tmp_path)
    data = _state(paths, []).to_dict()
    del data["inventory"]
    paths.state_file.write_text(json.dumps(data))
    target = find_target(None, home=home)
    assert target.problem == "damaged"
    found = _one(cc.judge_cluster(cc.read_cluster(target)))
    assert found.runbook == "restore-after-crash" and "malformed field" in found.saw


# -- a crash of this machine ------------------------------------------------------------------


def test_processes_gone_are_named_only_when_none_runs(tmp_path):
    paths = ClusterPaths(tmp_path / "c")
    gone = [_me("spark-master", alive=False), _me("ray-head", alive=False)]
    assert gone_processes(_state(paths, gone), paths) == [
        f"spark-master (pid {os.getpid()})", f"ray-head (pid {os.getpid()})"]  # fmt: skip
    assert gone_processes(_state(paths, [*gone, _me("spark-worker")]), paths) == []
    assert gone_processes(_state(paths, []), paths) == []  # a remote cluster records none
    paths.pids.mkdir(parents=True)
    (paths.pids / "keeper.json").write_text(json.dumps(_me("keeper").to_dict()))
    assert gone_processes(_state(paths, gone), paths) == []  # the keeper still runs


def test_a_local_cluster_whose_processes_are_all_gone_fails_as_a_crash(tmp_path):
    """Its state says up, none of its daemons nor its keeper runs: the cluster check sends
    to restore-after-crash with cluster.json as FILE, and the checks of a cluster that is up
    (processes, services) are left out."""
    home, paths = _home(tmp_path)
    _state(paths, [_me("spark-master", alive=False), _me("ray-head", alive=False)]).save(paths)
    paths.pids.mkdir()
    (paths.pids / "keeper.json").write_text(json.dumps(_me("keeper", alive=False).to_dict()))
    target = find_target(None, home=home)
    assert (target.status, target.up, target.cluster) == ("crashed", False, None)
    found = _one(cc.judge_cluster(cc.read_cluster(target)))
    assert found.status == "fail" and found.runbook == "restore-after-crash"
    assert found.saw.startswith("cluster 'c' (local) says it is up since 2026-12-01T10:00:00")
    assert "none of its 3 processes runs (spark-master (pid" in found.saw
    assert "keeper (pid" in found.saw and found.data == {"FILE": str(paths.state_file)}
    checks = [f.check for f in run_doctor(None, home=home).findings]
    assert "processes" not in checks and "services" not in checks and "runs" in checks


def test_a_stopped_cluster_is_not_a_crash(tmp_path):
    home, paths = _home(tmp_path)
    stopped = _state(paths, [_me("spark-master", alive=False)])
    stopped.power, stopped.stopped_at = "stopped", "2026-12-01T11:00:00"
    stopped.save(paths)
    assert find_target(None, home=home).status == "stopped"


# -- a port of another cluster the kit knows --------------------------------------------------


def test_a_port_held_by_another_known_cluster_names_it_and_gives_no_pid():
    reading = ports.PortsReading(
        [ports.PortReading("spark_master", 7077, [ports.Holder(42, "java", cluster="other")])],
        cluster_up=False, cluster="c")  # fmt: skip
    found = _one(ports.judge_ports(reading))
    assert found.status == "fail" and found.runbook == "port-in-use"
    assert found.saw == "7077 (ports.spark_master) held by java (pid 42) of cluster 'other'"
    assert found.fix == ("`clusterkit down --cluster other`, or set ports.spark_master to a free "
                         "port in clusterkit.yaml")  # fmt: skip
    assert found.data == {"PORT": "7077", "PROCESS": "java"}  # the steps stop before a kill


def test_the_reader_finds_which_known_cluster_holds_a_port(tmp_path):
    import socket

    home, paths = _home(tmp_path)
    other = ClusterPaths(home / "clusters" / "other")
    other.pids.mkdir(parents=True)
    Contexts(home).add("other", other.root, make_current=False)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        fields = Ports.numbered_from(port + 1 if port < 60000 else port - 300).model_dump()
        spec = Spec(ports=Ports(**{**fields, "spark_master": port}))
        target = Target(home, spec, "c", paths, "local")
        seen = next(r for r in ports.read_ports(target).ports if r.port == port)
        assert [(h.pid, h.cluster) for h in seen.holders] == [(os.getpid(), None)]
        (other.pids / "ray-head.json").write_text(json.dumps(_me("ray-head").to_dict()))
        seen = next(r for r in ports.read_ports(target).ports if r.port == port)
        assert [(h.pid, h.ours, h.cluster) for h in seen.holders] == [(os.getpid(), False,
                                                                       "other")]  # fmt: skip
        as_other = Target(home, spec, "other", other, "local")  # its own, not another's
        seen = next(r for r in ports.read_ports(as_other).ports if r.port == port)
        assert [(h.ours, h.cluster) for h in seen.holders] == [(True, None)]


# -- a job out of memory ----------------------------------------------------------------------


def _ended(ago_s: float) -> str:
    return (datetime.now(UTC) - timedelta(seconds=ago_s)).isoformat(timespec="milliseconds")


def _record(error: str | None, *, status: str = "failed", job: str = "etl", ago_s: float = 60,
            run: str = "20261201-100000-ab12", **params: str) -> RunRecord:  # fmt: skip
    return RunRecord(id=run, job=job, params=params, cluster="c", provider="local",
                     status=status, ended=_ended(ago_s), error=error)  # fmt: skip


SPARK_HEAP = ("SparkException: Job aborted due to stage failure: Task 0 in stage 1.0 failed 4 "
              "times, most recent failure: Lost task 0.3 in stage 1.0 (TID 3) (127.0.0.1 "
              "executor 3): java.lang.OutOfMemoryError: Java heap space")  # fmt: skip
SPARK_EXIT_52 = ("SparkException: Job aborted due to stage failure: Task 2 in stage 0.0 failed "
                 "4 times, most recent failure: Lost task 2.3 in stage 0.0 (TID 11) (127.0.0.1 "
                 "executor 4): ExecutorLostFailure (executor 4 exited caused by one of the "
                 "running tasks) Reason: Command exited with code 52")  # fmt: skip


@pytest.mark.parametrize(
    ("error", "killed"),
    [
        (SPARK_HEAP, False),
        (SPARK_EXIT_52, False),
        ("SparkException: ... java.lang.OutOfMemoryError: GC overhead limit exceeded", False),
        ("OutOfMemoryError: Task was killed due to the node running low on memory.", False),
        ("ray.exceptions.ObjectStoreFullError: Failed to put object ...", False),
        ("MemoryError", False),
        ("MemoryError: ", False),
        ("OSError: [Errno 12] Cannot allocate memory", False),
        ("the job was killed by signal SIGKILL", True),
        ("the script exited with code 137", True),
    ],
)
def test_errors_that_read_as_out_of_memory(error, killed):
    found = stuck_runs.out_of_memory(_record(error), time.time())
    assert found is not None and found.killed is killed and found.error == error


@pytest.mark.parametrize(
    "record",
    [
        _record("ValueError: no column named salary"),
        _record("stalled: no Spark worker has been ALIVE for 120 s"),
        _record("the run's supervisor on local is gone; its processes were stopped"),
        _record("the job was killed by signal SIGTERM"),
        _record("the script exited with code 1: MemoryErrorHandler missing"),
        _record(None),
        _record("MemoryError", status="cancelled"),
        _record("MemoryError", ago_s=2 * 24 * 3600),  # long ago
    ],
)
def test_other_errors_and_old_runs_are_not_read_as_out_of_memory(record):
    assert stuck_runs.out_of_memory(record, time.time()) is None


def test_a_run_out_of_memory_warns_naming_the_run_and_the_state_folder():
    reading = stuck_runs.RunsReading(
        [], 5, True, 1, 1,
        out_of_memory=[stuck_runs.MemoryReading("20261201-100000-ab12", "submit hungry.py",
                                                "MemoryError", 180.0),
                       stuck_runs.MemoryReading("20261201-090000-cd34", "etl",
                                                "the job was killed by signal SIGKILL", 7300.0,
                                                killed=True)],
        state_dir="/h/c")  # fmt: skip
    first, second = stuck_runs.judge_runs(reading)
    assert first.status == "warn" and first.runbook == "job-out-of-memory"
    assert first.saw == ("run 20261201-100000-ab12 (submit hungry.py) failed out of memory 3 min "
                         "ago: MemoryError")  # fmt: skip
    assert first.data == {"RUN": "20261201-100000-ab12", "STATE_DIR": "/h/c"}
    assert "smaller" in (first.fix or "") and "more memory" in (first.fix or "")
    assert second.saw.startswith("run 20261201-090000-cd34 (etl) was killed as the kernel's OOM "
                                 "killer kills (most likely out of memory) 2 h ago")  # fmt: skip


def test_a_long_error_is_quoted_on_one_line_cut_short():
    long = SPARK_HEAP + "\n" + "x" * 1000
    reading = stuck_runs.RunsReading(
        [], 1, True, out_of_memory=[stuck_runs.MemoryReading("r", "etl", long, 1.0)]
    )
    found = _one(stuck_runs.judge_runs(reading))
    assert "\n" not in found.saw and found.saw.endswith("...")
    assert len(found.saw) < stuck_runs.ERROR_CHARS + 100


def test_the_reader_says_a_jobs_latest_run_only(tmp_path):
    """Per job (per script, for submit), the latest run counts: a script that ran out of
    memory and then ran again with less is fine; another script's and another job's are
    said; a run going is left to the other rules."""
    paths = ClusterPaths(tmp_path / "c")
    runs = [
        _record("MemoryError", job="submit", run="20261201-100000-aaaa", script="hungry.py"),
        _record(None, job="submit", status="succeeded", run="20261201-100100-bbbb",
                script="hungry.py"),
        _record("MemoryError", job="submit", run="20261201-100200-cccc", script="other.py"),
        _record(SPARK_HEAP, run="20261201-100300-dddd"),
        _record(None, job="datagen", status="running", run="20261201-100400-eeee"),
    ]  # fmt: skip
    for record in runs:
        (paths.runs / record.id).mkdir(parents=True)
        (paths.runs / record.id / "record.json").write_text(json.dumps(record.to_dict()))
    reading = stuck_runs.read_runs(Target(tmp_path, Spec(), "c", paths, "local"))
    assert [(m.id, m.what) for m in reading.out_of_memory] == [
        ("20261201-100200-cccc", "submit other.py"), ("20261201-100300-dddd", "etl")]  # fmt: skip
    assert reading.state_dir == str(paths.root) and reading.total == 5
    named = [f for f in stuck_runs.judge_runs(reading) if f.runbook == "job-out-of-memory"]
    assert [f.data["RUN"] for f in named] == ["20261201-100200-cccc", "20261201-100300-dddd"]
