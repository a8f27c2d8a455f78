"""``clusterkit doctor``'s core: each check judged from readings the test gives (its OK, WARN
and FAIL paths), the readers against real files, sockets and processes of this machine, and
``run_doctor`` over a kit home with no cluster, a damaged one, one that is down and one whose
state says it is up (no Spark or Ray is started)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.records import Daemon, RunRecord
from clusterkit.core.spec import Ports, Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts, Endpoints
from clusterkit.doctor import (
    CHECKS,
    Check,
    Finding,
    Report,
    machine,
    ports,
    render_lines,
    run_doctor,
    state_files,
    stuck_runs,
)
from clusterkit.doctor import cluster_checks as cc
from clusterkit.doctor.report import RUNBOOKS, UNSET, fail, ok, shell_vars, warn
from clusterkit.doctor.target import KINDS, Health, Target, find_target
from clusterkit.exec.processes import wait_until
from clusterkit.services.health import ServiceHealth

GIB = 1024**3
T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_chosen_cluster(monkeypatch):
    monkeypatch.delenv("CLUSTERKIT_CLUSTER", raising=False)


def _statuses(findings: list[Finding]) -> list[str]:
    return [f.status for f in findings]


def _one(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


# -- the report -------------------------------------------------------------------------------


def test_a_finding_takes_only_known_statuses_and_runbooks():
    with pytest.raises(ValueError, match="status"):
        Finding("x", "bad", "saw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="runbook"):
        fail("x", "saw", "no-such-runbook")
    assert fail("x", "saw", "port-in-use").runbook == "port-in-use"
    for name in ("port", "1PORT", "PORT-NO", "PATH=x"):  # a capitalised shell name only
        with pytest.raises(ValueError, match="data"):
            fail("x", "saw", "port-in-use", data={name: "1"})
    assert fail("x", "saw", data={"PORT": "1"}).data == {"PORT": "1"}


def test_shell_vars_are_the_first_finding_naming_the_runbook_quoted_for_eval():
    report = Report([ok("ports", "free"),
                     fail("ports", "held", "port-in-use",
                          data={"PORT": "8080", "PID": "7", "PROCESS": "it's; rm -rf $HOME"}),
                     fail("ports", "held too", "port-in-use", data={"PORT": "9090"}),
                     warn("disk", "low", "disk-full")], 0.1)  # fmt: skip
    text = shell_vars(report, "port-in-use")
    assert text == f"{UNSET}\nPORT=8080\nPID=7\nPROCESS='it'\"'\"'s; rm -rf $HOME'"
    assert text is not None
    stale = 'RUN=old FILE=/stale; eval "$1"; printf "%s|" "$PORT" "$PID" "$PROCESS" "${RUN-unset}"'
    out = subprocess.run(["bash", "-c", stale, "_", text], capture_output=True, text=True,
                         check=True)  # fmt: skip
    assert out.stdout == "8080|7|it's; rm -rf $HOME|unset|"  # an earlier runbook's RUN is gone
    assert shell_vars(report, "disk-full") == UNSET  # named, no variables
    assert shell_vars(report, "run-stuck") is None  # named by no finding
    with pytest.raises(ValueError, match="runbook"):
        shell_vars(report, "no-such-runbook")


def test_the_report_fails_on_any_fail_and_its_json_keeps_the_schema():
    report = Report([ok("java", "17"), warn("disk", "low", "disk-full", "free some")], 0.5, "c")
    assert not report.failed and report.exit_code == 0
    assert report.to_json() == {
        "schema": 1, "cluster": "c", "ok": True, "elapsed_s": 0.5,
        "checks": [
            {"check": "java", "status": "ok", "saw": "17", "runbook": None, "fix": None,
             "data": {}},
            {"check": "disk", "status": "warn", "saw": "low", "runbook": "disk-full",
             "fix": "free some", "data": {}},
        ],
    }  # fmt: skip
    failed = Report([*report.findings, fail("ports", "held", "port-in-use")], 0.5, None)
    assert failed.failed and failed.exit_code == 1 and failed.to_json()["ok"] is False
    json.dumps(failed.to_json())  # plain JSON


def test_render_lines_names_status_check_runbook_and_fix():
    report = Report([ok("java", "openjdk 17.0.13 (needs 17+)"),
                     fail("ports", "8265 (ports.ray_dashboard) held by nginx (pid 123)",
                          "port-in-use", "stop it")], 0.31, "local")  # fmt: skip
    lines = render_lines(report)
    assert lines[0] == "OK   java        openjdk 17.0.13 (needs 17+)"
    assert lines[1] == ("FAIL ports       8265 (ports.ray_dashboard) held by nginx (pid 123)  "
                        "-> runbook port-in-use: docs/runbooks/port-in-use.md")  # fmt: skip
    assert lines[2].strip() == "fix: stop it" and lines[2].startswith(" " * 17)
    assert lines[3] == "doctor: 1 ok, 0 warn, 1 fail (cluster 'local', 0.31 s)"


# -- java -------------------------------------------------------------------------------------


def test_java_ok_and_its_version_read_as_preflight_reads_it():
    out = 'openjdk version "17.0.13" 2024-10-15\nOpenJDK Runtime Environment'
    found = _one(machine.judge_java(machine.JavaReading(17, "/usr/bin/java", out)))
    assert found.status == "ok" and found.saw == "openjdk 17.0.13 at /usr/bin/java (needs 17+)"
    assert machine.java_version('java version "1.8.0_392"') == ("java", "1.8.0_392", 8)


@pytest.mark.parametrize(
    ("reading", "said"),
    [
        (machine.JavaReading(17, None, None, "no java on PATH (JAVA_HOME unset)"), "no java"),
        (machine.JavaReading(17, "/j/bin/java", "Picked up JAVA_TOOL_OPTIONS"), "no version"),
        (machine.JavaReading(17, "/j/bin/java", 'openjdk version "11.0.21"'), "Java 11"),
        (machine.JavaReading(17, "/j/bin/java", 'java version "1.8.0_392"'), "Java 8"),
    ],
)
def test_java_missing_unreadable_or_too_old_fails(reading, said):
    found = _one(machine.judge_java(reading))
    assert found.status == "fail" and found.runbook == "java-missing"
    assert said in found.saw and "needs 17+" in found.saw and "openjdk-17" in (found.fix or "")


def test_java_is_read_from_java_home(tmp_path, monkeypatch):
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\necho 'openjdk version \"21.0.2\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    reading = machine.read_java(17)
    assert reading.executable == str(java) and '"21.0.2"' in (reading.output or "")
    assert _one(machine.judge_java(reading)).status == "ok"
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nothing"))
    reading = machine.read_java(17)
    assert reading.output is None and "has no bin/java" in (reading.error or "")


# -- python -----------------------------------------------------------------------------------


def test_python_inside_the_range_and_as_pinned_is_ok():
    reading = machine.PythonReading((3, 11, 7), "/v/bin/python", ">=3.11,<3.13", "3.11")
    found = _one(machine.judge_python(reading))
    assert found.status == "ok" and "3.11.7" in found.saw


def test_python_other_than_the_clusters_warns():
    reading = machine.PythonReading((3, 12, 1), "/v/bin/python", ">=3.11,<3.13", "3.11")
    found = _one(machine.judge_python(reading))
    assert found.status == "warn" and "brought up with 3.11" in found.saw


@pytest.mark.parametrize("version", [(3, 10, 12), (3, 13, 0)])
def test_python_outside_requires_python_fails(version):
    reading = machine.PythonReading(version, "/usr/bin/python3", ">=3.11,<3.13", None)
    found = _one(machine.judge_python(reading))
    assert found.status == "fail" and "requires-python >=3.11,<3.13" in found.saw


def test_the_running_python_is_read_with_the_kits_requirement():
    reading = machine.read_python("3.11")
    assert reading.version[:2] == sys.version_info[:2] and reading.pinned == "3.11"
    assert reading.requires is not None and ">=3.11" in reading.requires
    assert machine.broken_clause((3, 11, 0), "~=3.11, >=3.11") is None  # unknown forms pass


# -- disk -------------------------------------------------------------------------------------


def _disk(free: int, total: int = 100 * GIB) -> machine.DiskReading:
    return machine.DiskReading("state folder", "/s", free, total)


def test_disk_with_room_is_one_ok_line():
    found = _one(machine.judge_disk([_disk(50 * GIB), _disk(60 * GIB)]))
    assert found.status == "ok" and found.saw.count("free") == 2
    big_and_full = _one(machine.judge_disk([_disk(100 * GIB, 2000 * GIB)]))  # 5%, 100 GiB free
    assert big_and_full.status == "ok"


@pytest.mark.parametrize(("free", "total"), [(1 * GIB, 100 * GIB), (5 * GIB, 100 * GIB)])
def test_disk_under_2_gib_or_10_percent_warns(free, total):
    found = _one(machine.judge_disk([_disk(free, total)]))
    assert found.status == "warn" and found.runbook == "disk-full"


def test_disk_under_500_mib_fails_and_one_that_cannot_be_read_warns():
    found = machine.judge_disk([_disk(400 * 1024**2), _disk(50 * GIB),
                                machine.DiskReading("x", "/x", None, None, "EIO")])  # fmt: skip
    assert _statuses(found) == ["fail", "warn"]
    assert found[0].runbook == "disk-full" and "400.0 MiB free" in found[0].saw
    assert found[0].data == {"FOLDER": "/s"} and found[1].data == {}


def test_disks_are_read_once_per_file_system_from_the_nearest_folder(tmp_path):
    readings = machine.read_disks([("home", tmp_path), ("state folder", tmp_path / "a" / "b")])
    reading = _one(readings)
    assert (reading.path, reading.what) == (str(tmp_path), "home, state folder")
    assert reading.free is not None and reading.total is not None


# -- ports ------------------------------------------------------------------------------------


def test_ports_free_or_held_by_the_cluster_while_up_are_ok():
    free = ports.PortsReading([ports.PortReading("spark_master", 7077)], cluster_up=False)
    assert _one(ports.judge_ports(free)).saw == "1 ports free"
    held = ports.PortsReading(
        [ports.PortReading("spark_master", 7077, [ports.Holder(10, "java", ours=True)]),
         ports.PortReading("ray_gcs", 6379)], cluster_up=True, cluster="local")  # fmt: skip
    found = _one(ports.judge_ports(held))
    assert found.status == "ok" and "1 held by cluster 'local', 1 free" in found.saw


def test_a_port_held_by_another_process_fails_naming_port_pid_and_name():
    reading = ports.PortsReading(
        [ports.PortReading("ray_dashboard", 8265, [ports.Holder(123, "nginx")])],
        cluster_up=True, cluster="local")  # fmt: skip
    found = _one(ports.judge_ports(reading))
    assert found.status == "fail" and found.runbook == "port-in-use"
    assert found.saw == "8265 (ports.ray_dashboard) held by nginx (pid 123)"
    assert "ports.ray_dashboard" in (found.fix or "")
    assert found.data == {"PORT": "8265", "PID": "123", "PROCESS": "nginx"}
    unseen = ports.PortsReading(
        [ports.PortReading("ray_dashboard", 8265, [ports.Holder(None, "a process of another "
                                                                     "user")])],
        cluster_up=False)  # fmt: skip
    assert _one(ports.judge_ports(unseen)).data == {"PORT": "8265"}  # no pid, no name


def test_a_port_held_by_the_clusters_process_while_it_is_down_fails():
    reading = ports.PortsReading(
        [ports.PortReading("spark_master", 7077, [ports.Holder(9, "java", ours=True)])],
        cluster_up=False, cluster="local")  # fmt: skip
    found = _one(ports.judge_ports(reading))
    assert found.status == "fail" and "left by cluster 'local'" in found.saw
    assert "`clusterkit down`" in (found.fix or "")


def test_ports_that_cannot_be_listed_warn():
    found = _one(ports.judge_ports(ports.PortsReading([], False, None, "AccessDenied")))
    assert found.status == "warn" and "AccessDenied" in found.saw


def _spec_holding(port: int) -> Spec:
    """A spec whose spark_master is ``port``, its other ports a set of their own."""
    fields = Ports.numbered_from(port + 1 if port < 60000 else port - 300).model_dump()
    return Spec(ports=Ports(**{**fields, "spark_master": port}))


def test_the_reader_finds_a_listener_and_whether_the_cluster_recorded_it(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        target = Target(tmp_path, _spec_holding(port), "c", ClusterPaths(tmp_path / "c"),
                        "local")  # fmt: skip
        reading = ports.read_ports(target)
        held = next(r for r in reading.ports if r.port == port)
        assert [(h.pid, h.ours) for h in held.holders] == [(os.getpid(), False)]
        me = psutil.Process()  # now recorded in the cluster's pid files, as up writes them
        daemon = Daemon("spark-master", me.pid, me.create_time(), [sys.executable], "/log")
        (tmp_path / "c" / "pids").mkdir(parents=True)
        (tmp_path / "c" / "pids" / "spark-master.json").write_text(json.dumps(daemon.to_dict()))
        reading = ports.read_ports(target)
    held = next(r for r in reading.ports if r.port == port)
    assert [(h.pid, h.ours) for h in held.holders] == [(os.getpid(), True)]
    found = [f for f in ports.judge_ports(reading) if str(port) in f.saw]
    assert "left by cluster 'c' that is not up" in _one(found).saw  # the cluster is down


# -- state files ------------------------------------------------------------------------------


def _info(path: str, *, mode: int = 0o700, uid: int | None = None, is_dir: bool = True,
          size: int = 64, exists: bool = True) -> state_files.FileInfo:  # fmt: skip
    return state_files.FileInfo(path, exists, is_dir, False, mode,
                                os.geteuid() if uid is None else uid, size)  # fmt: skip


def _state(**changes) -> state_files.StateReading:
    values = {
        "uid": os.geteuid(), "home": _info("/h", mode=0o755), "folder": _info("/h/c"),
        "secrets": [_info("/h/c/ray-token", mode=0o600, is_dir=False)],
        "needed": ["/h/c/ray-token"], "parsed": 3,
    }  # fmt: skip
    return state_files.StateReading(**{**values, **changes})


def test_private_state_and_secrets_are_ok():
    found = _one(state_files.judge_state(_state()))
    assert found.status == "ok" and "1 secrets" in found.saw and "3 state files" in found.saw
    no_cluster = state_files.StateReading(os.geteuid(), _info("/h", exists=False))
    assert _one(state_files.judge_state(no_cluster)).status == "ok"


def test_a_home_made_with_a_umask_of_002_warns_and_one_through_a_symlink_is_read_through(
    tmp_path: Path,
):
    found = _one(state_files.judge_state(_state(home=_info("/h", mode=0o775))))
    assert found.status == "warn" and "writable by its group" in found.saw
    disk = tmp_path / "bigger-disk"
    disk.mkdir(mode=0o700)
    (tmp_path / "home").symlink_to(disk)
    seen = state_files.file_info(tmp_path / "home", follow=True)
    assert seen.is_dir and not seen.is_link
    assert state_files.file_info(tmp_path / "home").is_link  # the state folder's own rule


def test_a_state_folder_open_to_reading_by_others_warns():
    found = _one(state_files.judge_state(_state(folder=_info("/h/c", mode=0o755))))
    assert found.status == "warn" and found.runbook == "state-permissions"
    assert "chmod 700 /h/c" in (found.fix or "")


@pytest.mark.parametrize(
    ("change", "runbook", "said"),
    [
        ({"home": _info("/h", mode=0o777)}, "state-permissions", "writable by others"),
        ({"folder": _info("/h/c", uid=os.geteuid() + 1)}, "state-permissions", "belongs to uid"),
        ({"folder": _info("/h/c", is_dir=False)}, "state-permissions", "not a folder"),
        ({"secrets": [_info("/h/c/ray-token", exists=False)]}, "lost-token-or-key", "missing"),
        ({"secrets": [_info("/h/c/ray-token", mode=0o644, is_dir=False)]}, "lost-token-or-key",
         "readable by others"),
        ({"secrets": [_info("/h/c/ray-token", mode=0o600, is_dir=False, size=0)]},
         "lost-token-or-key", "is empty"),
        ({"secrets": [_info("/h/c/ray-token", mode=0o600, is_dir=False,
                            uid=os.geteuid() + 1)]}, "state-permissions", "owned by uid"),
        ({"unreadable": [("/h/c/keeper.json", "Expecting value")]}, "restore-after-crash",
         "does not parse"),
    ],
)  # fmt: skip
def test_state_that_others_can_change_lost_secrets_and_broken_files_fail(change, runbook, said):
    found = _one(state_files.judge_state(_state(**change)))
    assert found.status == "fail" and found.runbook == runbook and said in found.saw


def test_state_findings_name_the_file_and_a_secrets_state_folder():
    folder = _one(state_files.judge_state(_state(folder=_info("/h/c", mode=0o777))))
    assert folder.data == {"FILE": "/h/c"}
    leaked = _state(secrets=[_info("/h/c/ray-token", mode=0o644, is_dir=False)])
    assert _one(state_files.judge_state(leaked)).data == {"FILE": "/h/c/ray-token",
                                                          "STATE_DIR": "/h/c"}  # fmt: skip
    broken = _state(unreadable=[("/h/c/keeper.json", "Expecting value")])
    assert _one(state_files.judge_state(broken)).data == {"FILE": "/h/c/keeper.json"}


def test_a_missing_secret_is_fine_while_the_cluster_is_down():
    reading = _state(secrets=[_info("/h/c/ray-token", exists=False)], needed=[])
    assert _one(state_files.judge_state(reading)).status == "ok"


def test_the_state_reader_sees_modes_owners_secrets_and_broken_json(tmp_path):
    home, folder = tmp_path / "home", tmp_path / "home" / "clusters" / "c"
    (folder / "pids").mkdir(parents=True, mode=0o700)
    folder.chmod(0o700)
    paths = ClusterPaths(folder)
    for secret in (paths.ray_token, paths.spark_connect_token, paths.spark_secret):
        secret.write_text("s3cret")
        secret.chmod(0o600)
    paths.spark_secret.chmod(0o644)
    (folder / "keeper.json").write_text("{")
    (folder / "pids" / "ray-head.json").write_text("{}")
    reading = state_files.read_state(Target(home, Spec(), "c", paths, "local"))
    assert reading.folder is not None and reading.folder.mode == 0o700
    assert len(reading.secrets) == 3 and reading.needed == []  # not up: none required
    assert reading.parsed == 1 and [p for p, _ in reading.unreadable] == [
        str(folder / "keeper.json")]  # fmt: skip
    found = state_files.judge_state(reading)
    assert {(f.status, f.runbook) for f in found} == {
        ("fail", "lost-token-or-key"), ("fail", "restore-after-crash")}  # fmt: skip


# -- the cluster ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reading", "status"),
    [
        (cc.ClusterReading("up", "local", "local", since="2026-12-01T10:00"), "ok"),
        (cc.ClusterReading("stopped", "aws", "aws", since="2026-12-01T10:00"), "ok"),
        (cc.ClusterReading("down", "local", "local", "cluster 'local' is down"), "warn"),
        (cc.ClusterReading("none", why="no cluster is up: start one with `clusterkit up`"),
         "warn"),
        (cc.ClusterReading("unreadable", "local", "local", "cluster.json is not valid JSON"),
         "fail"),
    ],
)  # fmt: skip
def test_the_cluster_up_stopped_down_none_or_unreadable(reading, status):
    found = _one(cc.judge_cluster(reading))
    assert found.status == status
    if reading.status in ("none", "down"):
        assert "`clusterkit up`" in found.saw + (found.fix or "")
    if status == "fail":
        assert found.runbook == "restore-after-crash" and "not valid JSON" in found.saw


def _home_with(tmp_path: Path, cluster_json: str | None = None,
               spec_yaml: str | None = None) -> tuple[Path, ClusterPaths]:  # fmt: skip
    home = tmp_path / "home"
    paths = ClusterPaths(home / "clusters" / "c")
    paths.root.mkdir(parents=True, mode=0o700)
    Contexts(home).add("c", paths.root)
    if cluster_json is not None:
        paths.state_file.write_text(cluster_json)
    if spec_yaml is not None:
        paths.spec_file.write_text(spec_yaml)
    return home, paths


def test_the_target_is_none_down_or_unreadable_as_the_kits_home_says(tmp_path):
    none = find_target(None, home=tmp_path / "empty")
    assert (none.status, none.kind, none.name) == ("none", "none", None)
    home, _ = _home_with(tmp_path, spec_yaml="name: c\nprovider: local\n")
    down = find_target(None, home=home)
    assert (down.status, down.kind, down.name, down.up) == ("down", "local", "c", False)
    (tmp_path / "home" / "clusters" / "c" / "cluster.json").write_text("{")
    broken = find_target(None, home=home)
    assert broken.status == "unreadable" and "not valid JSON" in broken.why
    state_file = str(tmp_path / "home" / "clusters" / "c" / "cluster.json")
    assert _one(cc.judge_cluster(cc.read_cluster(broken))).data == {"FILE": state_file}
    (home / "contexts.json").write_text("[")
    contexts = find_target(None, home=home)
    assert contexts.status == "unreadable" and contexts.broken == home / "contexts.json"


# -- processes --------------------------------------------------------------------------------


def _daemon(name: str, alive: bool = True, matches: bool = True) -> cc.DaemonReading:
    return cc.DaemonReading(name, 100 + len(name), alive, matches, f"/logs/{name}.out")


def test_every_daemon_alive_with_the_keeper_is_ok():
    reading = cc.ProcessesReading([_daemon("spark-master"), _daemon("ray-head")],
                                  _daemon("keeper"))  # fmt: skip
    found = _one(cc.judge_processes(reading))
    assert found.status == "ok" and found.saw.startswith("3 running: spark-master (pid 112)")


def test_a_daemon_the_keeper_is_restarting_or_running_another_command_warns():
    restarting = cc.ProcessesReading([_daemon("spark-worker", alive=False)], _daemon("keeper"))
    found = _one(cc.judge_processes(restarting))
    assert found.status == "warn" and "keeper is starting it again" in found.saw
    odd = cc.ProcessesReading([_daemon("ray-head", matches=False)], _daemon("keeper"))
    assert _one(cc.judge_processes(odd)).status == "warn"


def test_a_dead_daemon_nothing_restarts_fails_and_a_dead_keeper_warns():
    given_up = cc.ProcessesReading([_daemon("spark-worker", alive=False)], _daemon("keeper"),
                                   ["spark-worker"])  # fmt: skip
    found = _one(cc.judge_processes(given_up))
    assert found.status == "fail" and found.runbook == "service-dead"
    assert "gave up" in found.saw and "/logs/spark-worker.out" in found.saw
    assert found.data == {"SERVICE": "spark-worker", "LOG": "/logs/spark-worker.out",
                          "STATE_DIR": ""}  # fmt: skip
    no_keeper = cc.ProcessesReading([_daemon("ray-head", alive=False)],
                                    _daemon("keeper", alive=False))  # fmt: skip
    both = cc.judge_processes(no_keeper)
    assert _statuses(both) == ["fail", "warn"] and "keeper is not running" in both[1].saw


def test_a_daemon_is_read_by_pid_start_time_and_command():
    assert cc.main_word(["/x/spark-class", "org.apache.spark.deploy.master.Master", "--host"]) == (
        "org.apache.spark.deploy.master.Master")  # fmt: skip
    assert cc.main_word([sys.executable, "-m", "clusterkit.services.keeper"]) == (
        "clusterkit.services.keeper")  # fmt: skip
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    proc = subprocess.Popen(argv)
    try:
        started = psutil.Process(proc.pid).create_time()
        # until it has exec'd, its command line is still this test's
        assert wait_until(lambda: psutil.Process(proc.pid).cmdline() == argv, timeout_s=10)
        alive = cc.read_daemon(Daemon("x", proc.pid, started, argv, "/log"))
        assert alive.alive and alive.command_matches
        other = cc.read_daemon(Daemon("x", proc.pid, started, [sys.executable, "ray"], "/l"))
        assert other.alive and not other.command_matches
        reused = cc.read_daemon(Daemon("x", proc.pid, started - 100, argv, "/log"))
        assert not reused.alive  # same pid, another start time: not it
    finally:
        proc.kill()
        proc.wait()


# -- services ---------------------------------------------------------------------------------


def _row(name: str, state: str = "up", detail: str = "") -> ServiceHealth:
    return ServiceHealth(name, state, "127.0.0.1:1", None, detail)


def _services(rows: list[ServiceHealth], problems: list[str]) -> cc.ServicesReading:
    return cc.ServicesReading(Health(rows, problems), "/h/c")


def test_services_all_up_are_ok():
    found = _one(cc.judge_services(_services([_row("spark-master"), _row("ray-head")], [])))
    assert found.status == "ok" and found.saw == "2 up: spark-master, ray-head"


def test_a_service_down_or_a_node_missing_fails():
    rows = [_row("spark-master"), _row("spark-connect", "down", "no application")]
    found = _one(cc.judge_services(_services(rows, ["the Spark Connect server is not running"])))
    assert found.status == "fail" and found.runbook == "service-dead"
    assert found.saw == "spark-connect 127.0.0.1:1 is down: no application"
    assert found.data == {"SERVICE": "spark-connect", "STATE_DIR": "/h/c"}
    missing = _services([_row("ray-head")], ["Ray lists ALIVE nodes [], not ['127.0.0.1']"])
    found = _one(cc.judge_services(missing))
    assert found.saw.startswith("Ray lists ALIVE nodes") and found.data == {"STATE_DIR": "/h/c"}


def test_services_that_could_not_be_read_warn_without_sending_to_service_dead():
    unread = cc.ServicesReading(Health([], [], unread="the Ray token /h/c/ray-token is missing"),
                                "/h/c")  # fmt: skip
    found = _one(cc.judge_services(unread))
    assert found.status == "warn" and found.runbook is None
    assert found.saw == "could not be read: the Ray token /h/c/ray-token is missing"


# -- runs -------------------------------------------------------------------------------------


def _run(**changes) -> stuck_runs.RunReading:
    values = {"id": "20261201-100000-abcd", "job": "etl", "status": "running", "age_s": 30.0,
              "supervisor_pid": 42, "supervisor_alive": True}  # fmt: skip
    return stuck_runs.RunReading(**{**values, **changes})


def test_runs_with_their_supervisors_and_engines_are_ok():
    idle = stuck_runs.RunsReading([], 7, True, 1, 1)
    assert _one(stuck_runs.judge_runs(idle)).saw == "none going (7 in the store)"
    going = stuck_runs.RunsReading([_run(), _run(status="queued", supervisor_pid=None)], 9,
                                   True, 1, 1)  # fmt: skip
    assert _one(stuck_runs.judge_runs(going)).status == "ok"


def test_a_run_whose_supervisor_is_gone_fails():
    reading = stuck_runs.RunsReading([_run(supervisor_alive=False)], 1, True, 1, 1)
    found = _one(stuck_runs.judge_runs(reading))
    assert found.status == "fail" and found.runbook == "run-stuck"
    assert "supervisor (pid 42) is gone" in found.saw and "`clusterkit runs`" in (found.fix or "")
    assert found.data == {"RUN": "20261201-100000-abcd"}


def test_a_run_stalled_without_a_worker_or_queued_without_a_supervisor_warns():
    stalled = stuck_runs.RunsReading([_run()], 1, True, spark_workers=0, ray_nodes=1,
                                     stall_timeout_s=120)  # fmt: skip
    found = _one(stuck_runs.judge_runs(stalled))
    assert found.status == "warn" and found.runbook == "run-stuck"
    assert "no Spark worker is ALIVE" in found.saw and "after 120 s" in found.saw
    queued = stuck_runs.RunsReading([_run(status="queued", supervisor_pid=None, age_s=300)], 1,
                                    True, 1, 1)  # fmt: skip
    assert "no supervisor took it" in _one(stuck_runs.judge_runs(queued)).saw


def test_the_runs_reader_finds_a_running_record_whose_supervisor_is_gone(tmp_path):
    paths = ClusterPaths(tmp_path / "c")
    for status in ("running", "succeeded"):
        record = RunRecord(
            id=f"20261201-10000{len(status)}-ab12",
            job="etl",
            params={},
            cluster="c",
            provider="local",
            status=status,
            supervisor={"pid": os.getpid(), "create_time": 0, "node": "here"},
        )
        (paths.runs / record.id).mkdir(parents=True)
        (paths.runs / record.id / "record.json").write_text(json.dumps(record.to_dict()))
    (paths.runs / "broken").mkdir()
    (paths.runs / "broken" / "record.json").write_text("{")  # the state check's to say
    reading = stuck_runs.read_runs(Target(tmp_path, Spec(), "c", paths, "local"))
    assert reading.total == 3 and reading.spark_workers is None  # down: engines not read
    run = _one(reading.active)
    assert run.supervisor_pid == os.getpid() and not run.supervisor_alive  # no run marker
    assert "`clusterkit up`, then" in (_one(stuck_runs.judge_runs(reading)).fix or "")


# -- run_doctor -------------------------------------------------------------------------------


def test_the_registry_names_each_check_once_with_known_kinds_and_runbooks():
    names = [c.name for c in CHECKS]
    assert names == ["cluster", "java", "python", "disk", "state", "ports", "processes",
                     "services", "runs", "ssh", "clock", "pythons", "nat", "hdfs", "idle",
                     "drift", "aws", "keypair", "sshrule", "orphans"]  # fmt: skip
    assert all(c.kinds <= set(KINDS) for c in CHECKS)
    assert len(RUNBOOKS) == len(set(RUNBOOKS))


def test_run_doctor_runs_the_checks_that_apply_and_a_check_that_raises_warns(tmp_path):
    def boom(_: Target) -> None:
        raise OSError("no such thing")

    checks: list[Check[Any]] = [
        Check("first", frozenset(KINDS), lambda t: t.status, lambda s: [ok("first", s)]),
        Check("aws-only", frozenset({"aws"}), lambda t: 1, lambda _: [fail("aws-only", "x")]),
        Check("up-only", frozenset(KINDS), lambda t: 1, lambda _: [fail("up-only", "x")],
              needs_up=True),
        Check("broken", frozenset(KINDS), boom, lambda _: []),
    ]  # fmt: skip
    report = run_doctor(None, home=tmp_path, checks=checks)
    assert [(f.check, f.status) for f in report.findings] == [("first", "ok"), ("broken", "warn")]
    assert report.findings[0].saw == "none" and "no such thing" in report.findings[1].saw
    assert report.cluster is None and not report.failed


def test_with_no_cluster_the_machine_is_checked_and_a_warning_names_up(tmp_path):
    t0 = time.monotonic()
    report = run_doctor(None, home=tmp_path / "home")
    assert time.monotonic() - t0 < 5
    assert [f.check for f in report.findings] == ["cluster", "java", "python", "disk", "state",
                                                  "ports"]  # fmt: skip
    assert report.findings[0].status == "warn" and "`clusterkit up`" in report.findings[0].saw


def test_a_cluster_whose_state_says_up_gets_every_local_check(tmp_path):
    """No Spark or Ray: the recorded daemon is a sleeping process, the spec's ports are a set
    nothing listens on, so the services' APIs do not answer and the keeper is missing."""
    home, paths = _home_with(tmp_path)
    spec = Spec(name="c", ports=Ports.numbered_from(47000))
    argv = [sys.executable, "-c", "import time; time.sleep(30)"]
    proc = subprocess.Popen(argv)
    try:
        daemon = Daemon("spark-master", proc.pid, psutil.Process(proc.pid).create_time(), argv,
                        str(paths.logs / "spark-master.out"))  # fmt: skip
        here = Node("local", "127.0.0.1", ("master", "worker"))
        ClusterState(name="c", provider="local", spec=spec, started_at="2026-12-01T10:00:00",
                     state_dir=str(paths.root), storage_root=str(paths.data),
                     inventory=Inventory("c", "local", (here,)),
                     endpoints=Endpoints.for_spec(spec), node_python=sys.executable,
                     runs_dir=str(paths.runs), daemons=[daemon]).save(paths)  # fmt: skip
        for secret in (paths.ray_token, paths.spark_connect_token, paths.spark_secret):
            secret.write_text("s3cret")
            secret.chmod(0o600)
        paths.data.mkdir()
        t0 = time.monotonic()
        report = run_doctor(None, home=home)
        assert time.monotonic() - t0 < 5
    finally:
        proc.kill()
        proc.wait()
    by_check = {f.check: f for f in report.findings}
    assert list(by_check) == [c.name for c in CHECKS if "local" in c.kinds]
    assert report.cluster == "c"
    assert by_check["cluster"].status == "ok" and by_check["ports"].status == "ok"
    assert by_check["processes"].saw.startswith("the keeper is not running")
    assert by_check["services"].status == "fail" and by_check["services"].runbook == (
        "service-dead")  # fmt: skip
    assert report.failed and report.to_json()["cluster"] == "c"


# -- the command ------------------------------------------------------------------------------


def test_the_command_prints_a_runbooks_variables_and_checks_the_named_spec(tmp_path, monkeypatch,
                                                                            capsys):  # fmt: skip
    """With no cluster known, the spec $CLUSTERKIT_SPEC names gives the ports: one held here
    is a FAIL whose variables ``--vars port-in-use`` prints; a runbook nothing names exits 1
    saying so; one that does not exist is bad input."""
    from clusterkit import cli

    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        spec_file = tmp_path / "clusterkit.yaml"
        spec_file.write_text(f"ports:\n  spark_master_ui: {port}\n")
        monkeypatch.setenv("CLUSTERKIT_SPEC", str(spec_file))
        assert cli.main(["doctor", "--json"]) == 1
        [held] = [c for c in json.loads(capsys.readouterr().out)["checks"] if c["check"] == "ports"]
        assert held["data"] == {"PORT": str(port), "PID": str(os.getpid()),
                                "PROCESS": psutil.Process().name()}  # fmt: skip
        assert cli.main(["doctor", "--vars", "port-in-use"]) == 0
        printed = capsys.readouterr().out.splitlines()
    assert printed[:3] == [UNSET, f"PORT={port}", f"PID={os.getpid()}"]
    assert cli.main(["doctor", "--vars", "port-in-use"]) == 1  # the port is free again
    nothing = capsys.readouterr()
    assert "no finding names runbook port-in-use" in nothing.err
    assert nothing.out == f"{UNSET}\nfalse\n"
    failed = subprocess.run(["bash", "-euo", "pipefail", "-c", 'PID=1; eval "$1"; echo ran',
                             "_", nothing.out], capture_output=True, text=True)  # fmt: skip
    assert failed.returncode == 1 and "ran" not in failed.stdout  # the steps stop there
    assert cli.main(["doctor", "--vars", "no-such"]) == 2
    assert cli.main(["doctor", "--vars", "port-in-use", "--json"]) == 2
