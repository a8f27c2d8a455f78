"""Faults on the local cluster, as a user meets them: a foreground run ended by a signal, a
run's supervisor killed, a spark-submit without the cluster's secret. Each test checks that
nothing is left running, that the record is true, and that the next run succeeds."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from clusterkit.core.records import Daemon
from clusterkit.exec.processes import is_alive, process_of, wait_until
from clusterkit.metrics.sampling import RunProcessFinder, is_ray_worker
from clusterkit.runs.launcher import ORPHANED
from clusterkit.runs.stall import CHECK_EVERY_S
from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _runs_dir(cluster: LocalCluster) -> Path:
    runs = Path(cluster.up["state_dir"]) / "runs"
    runs.mkdir(exist_ok=True)  # made by the first run; this may be the session's first test
    return runs


def _started_run(cluster: LocalCluster, before: set[str], marker: str) -> Path:
    """The folder of the run started after ``before`` whose stdout shows ``marker``."""

    def found() -> Path | None:
        for run_dir in _runs_dir(cluster).iterdir():
            log = run_dir / "stdout.log"
            if run_dir.name not in before and log.exists() and marker in log.read_text():
                return run_dir
        return None

    assert wait_until(lambda: found() is not None, timeout_s=120), f"no run showed {marker!r}"
    run_dir = found()
    assert run_dir is not None
    return run_dir


def _new_runs(cluster: LocalCluster, before: set[str]) -> list[Path]:
    return [p for p in _runs_dir(cluster).iterdir() if p.name not in before]


def _run_with_fault(cluster: LocalCluster, args: list[str],
                    fault: Callable[[Path], None]) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """`clusterkit run ARGS --json` in the foreground; ``fault`` is done to its run (given its
    folder) while it runs; its folder and the record it printed at its end."""
    before = {p.name for p in _runs_dir(cluster).iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "run", *args, "--json"],
                            env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert wait_until(lambda: bool(_new_runs(cluster, before)), timeout_s=60)
        run_dir = _new_runs(cluster, before)[0]
        fault(run_dir)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stdout, stderr[-2000:]
    record: dict[str, Any] = json.loads(stdout)
    assert record["id"] == run_dir.name
    return run_dir, record


def _next_run_succeeds(cluster: LocalCluster) -> None:
    code, record = cluster.run("busy", "--engine", "ray", "--seconds", "0.1")
    assert code == 0 and record["status"] == "succeeded", record


SLEEPER = textwrap.dedent("""
    import time
    import ray
    ray.init()
    print("sleeper started", flush=True)
    ray.get(ray.remote(lambda: time.sleep(600)).remote())
""")


def test_sigterm_cancels_a_foreground_run(local_cluster: LocalCluster):
    """`timeout 600 clusterkit run ...` ending: the run is cancelled, not left behind."""
    before = {p.name for p in _runs_dir(local_cluster).iterdir()}
    proc = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "run", "busy", "--engine",
                             "ray", "--json"], env=local_cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        run_dir = _started_run(local_cluster, before, "busy:")
        assert RunProcessFinder(run_dir.name).find(), "the run's processes should be running"
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    record = json.loads(stdout)
    assert record["id"] == run_dir.name
    assert (record["status"], record["error"]) == ("cancelled", "interrupted (SIGTERM)")
    assert RunProcessFinder(record["id"]).find() == []
    _next_run_succeeds(local_cluster)


def test_a_closed_terminal_cancels_a_foreground_submit(local_cluster: LocalCluster,
                                                       tmp_path: Path):  # fmt: skip
    """The terminal `clusterkit submit` runs in is closed (SIGHUP, and every later write to
    it fails): the run is cancelled all the same, its record says so."""
    script = tmp_path / "sleeper.py"
    script.write_text(SLEEPER)
    before = {p.name for p in _runs_dir(local_cluster).iterdir()}
    terminal, tty = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterkit.cli", "submit", str(script)], env=local_cluster.env,
        stdin=tty, stdout=tty, stderr=tty, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # its controlling terminal
    )  # fmt: skip
    os.close(tty)
    shown: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(terminal, shown), daemon=True)
    reader.start()
    try:
        run_dir = _started_run(local_cluster, before, "sleeper started")
        assert RunProcessFinder(run_dir.name).find(), "the run's processes should be running"
        os.close(terminal)  # the window is closed: the kernel hangs the session up
        assert proc.wait(timeout=120) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
    record = json.loads((run_dir / "record.json").read_text())
    assert (record["status"], record["error"]) == ("cancelled", "interrupted (SIGHUP)")
    assert RunProcessFinder(record["id"]).find() == []
    _next_run_succeeds(local_cluster)


def _drain(fd: int, into: list[bytes]) -> None:
    """Read a terminal's output until it is closed (a full terminal would block the writer)."""
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 4096):
            into.append(chunk)


def test_a_killed_supervisor_is_found_and_its_run_recorded_failed(local_cluster: LocalCluster):
    started = local_cluster.cli("run", "busy", "--engine", "ray", "--detach")
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    run_dir = _runs_dir(local_cluster) / run_id
    assert wait_until(lambda: "busy:" in (run_dir / "stdout.log").read_text()
                      if (run_dir / "stdout.log").exists() else False, timeout_s=120)  # fmt: skip
    record = json.loads((run_dir / "record.json").read_text())
    supervisor = psutil.Process(int(record["supervisor"]["pid"]))
    supervisor.kill()
    supervisor.wait(30)
    assert RunProcessFinder(run_id).find(), "its job goes on without the supervisor"
    # what a job was writing when its supervisor died: a half-written output, and the old
    # copy of an output it was replacing, set aside before the new one was in place
    half = local_cluster.storage / "datasets" / f"half.tmp-{run_id}"
    half.mkdir(parents=True)
    (half / "part-0.parquet").write_bytes(b"half")
    set_aside = local_cluster.storage / "datasets" / f".kept.old-{run_id}"
    set_aside.mkdir()
    (set_aside / "part-0.parquet").write_bytes(b"old")
    listed = {r["id"]: r for r in local_cluster.cli("runs", "--json").json()}
    assert listed[run_id]["status"] == "failed"
    assert listed[run_id]["error"] == ORPHANED.format(node=record["supervisor"]["node"])
    assert RunProcessFinder(run_id).find() == []
    assert not half.exists() and not set_aside.exists()
    assert (set_aside.parent / "kept" / "part-0.parquet").read_bytes() == b"old"
    # its Ray CPUs were given back at once (the driver stopped before its workers: a worker
    # killed while it starts would hold them until Ray's registration timeout, ~60 s)
    t0 = time.monotonic()
    _next_run_succeeds(local_cluster)
    assert time.monotonic() - t0 < 30, "the next Ray run waited for the reaped run's CPUs"


PI = "from pyspark.sql import SparkSession\n" \
     "spark = SparkSession.builder.getOrCreate()\n" \
     "print('COUNT', spark.sparkContext.parallelize(range(1000), 2).count())\n"  # fmt: skip


def test_spark_submit_needs_the_cluster_secret(local_cluster: LocalCluster, tmp_path: Path):
    """Another user with no access to the 0600 secret cannot run code through the master;
    the operator, with `clusterkit env --shell`, can."""
    app = tmp_path / "pi.py"
    app.write_text(PI)
    env = local_cluster.cli("env", "--json").json()["variables"]
    spark_home = env["SPARK_HOME"]
    master = local_cluster.up["endpoints"]["spark_master_url"]
    conf = Path(env["SPARK_CONF_DIR"]) / "spark-defaults.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600"
    settings = dict(line.split(None, 1) for line in conf.read_text().splitlines()
                    if line and not line.startswith("#"))  # fmt: skip
    assert settings["spark.authenticate"] == "true" and settings["spark.ui.killEnabled"] == "false"
    empty_conf = tmp_path / "conf"
    empty_conf.mkdir()
    stranger = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK"))}
    stranger |= {"SPARK_CONF_DIR": str(empty_conf), "JAVA_HOME": env["JAVA_HOME"],
                 "PYSPARK_PYTHON": sys.executable}  # fmt: skip
    apps_before = _apps(local_cluster)
    master_log = Path(local_cluster.up["state_dir"]) / "logs" / "spark-master.out"
    refusals = master_log.read_text().count("Expected SaslMessage")
    intruder = subprocess.Popen([f"{spark_home}/bin/spark-submit", "--master", master, str(app)],
                                env=stranger, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)  # fmt: skip
    try:
        # the master refuses its first message (a driver without the secret would otherwise
        # register within seconds); it never lists the app
        refused = wait_until(lambda: master_log.read_text().count("Expected SaslMessage")
                             > refusals, timeout_s=60)  # fmt: skip
        time.sleep(2)
        assert _apps(local_cluster) == apps_before, "the master took an app without the secret"
    finally:
        os.killpg(intruder.pid, signal.SIGKILL)
        out, err = intruder.communicate(timeout=30)
    assert refused, err[-2000:]
    assert "COUNT 1000" not in out

    shell = local_cluster.cli("env", "--shell", "--spark-session", "classic")
    assert shell.code == 0, shell.stderr
    submit = f"{shlex.quote(spark_home)}/bin/spark-submit {shlex.quote(str(app))}"
    script = f"{shell.stdout}\nexec {submit}"
    by_hand = subprocess.run(["sh", "-c", script], env={**stranger, "SPARK_CONF_DIR": ""},
                             capture_output=True, text=True, timeout=180)  # fmt: skip
    assert by_hand.returncode == 0, by_hand.stderr[-3000:]
    assert "COUNT 1000" in by_hand.stdout


def _apps(cluster: LocalCluster) -> list[str]:
    import urllib.request

    ui = cluster.up["endpoints"]["spark_master_ui"]
    with urllib.request.urlopen(f"{ui}/json/", timeout=10) as response:
        data = json.load(response)
    return sorted(a["id"] for a in data.get("activeapps", []) + data.get("completedapps", []))


def _daemon(cluster: LocalCluster, name: str) -> Daemon:
    state = json.loads((Path(cluster.up["state_dir"]) / "cluster.json").read_text())
    return Daemon.from_dict(next(d for d in state["daemons"] if d["name"] == name))


def _keeper(cluster: LocalCluster) -> Daemon:
    pid_file = Path(cluster.up["state_dir"]) / "pids" / "keeper.json"
    return Daemon.from_dict(json.loads(pid_file.read_text()))


def _kill(daemon: Daemon) -> float:
    """SIGKILL a daemon (no chance to clean up, as the OOM killer does); when it was."""
    process = process_of(daemon)
    assert process is not None, f"{daemon.name} should be running"
    process.kill()
    process.wait(30)
    return time.monotonic()


def _restarted_within(cluster: LocalCluster, name: str, old: Daemon, killed: float,
                      limit_s: float = 10.0) -> Daemon:  # fmt: skip
    """The daemon the keeper started in place of ``old``, within ``limit_s`` of the kill."""
    assert wait_until(lambda: _daemon(cluster, name).pid != old.pid
                      and is_alive(_daemon(cluster, name)), timeout_s=limit_s), (
        f"{name} was not started again within {limit_s:.0f} s")  # fmt: skip
    assert time.monotonic() - killed <= limit_s + 1
    return _daemon(cluster, name)


def _healthy(cluster: LocalCluster) -> dict[str, Any]:
    assert wait_until(lambda: cluster.status()["state"] == "up", timeout_s=90), cluster.status()
    return cluster.status()


def test_killed_daemons_are_started_again_and_a_run_on_one_fails_saying_why(
        local_cluster: LocalCluster):  # fmt: skip
    """The Connect server killed under a warm run: it is started again within 10 s, and the
    run (its session gone with the server) is failed at once saying so. Then, idle, the Ray
    head and the Spark master: each started again within 10 s; after the master, the worker
    registers again and the Connect server (whose application the new master does not know)
    is started again too. The next Spark and Ray runs succeed."""
    before = local_cluster.status()["keeper"]["restarts"]
    runs_before = {p.name for p in _runs_dir(local_cluster).iterdir()}
    busy = local_cluster.cli("run", "busy", "--detach")  # warm Spark tasks of 600 s
    assert busy.code == 0, busy.stderr
    run_dir = _started_run(local_cluster, runs_before, "busy: spark tasks started")
    assert wait_until(lambda: (run_dir / "shared.json").exists(), timeout_s=60)
    assert wait_until(lambda: _executors(local_cluster) > 0, timeout_s=60)
    time.sleep(CHECK_EVERY_S + 1)  # the supervisor has looked at the server it works on
    old = _daemon(local_cluster, "spark-connect")
    _restarted_within(local_cluster, "spark-connect", old, _kill(old))

    def final() -> dict[str, Any] | None:
        listed = {r["id"]: r for r in local_cluster.cli("runs", "--json").json()}
        return listed[run_dir.name] if listed[run_dir.name]["status"] != "running" else None

    assert wait_until(lambda: final() is not None, timeout_s=60, interval_s=1.0)
    record = final()
    assert record is not None and record["status"] == "failed", record
    assert record["error"].startswith(
        f"the Spark Connect server this run worked on (pid {old.pid}) ended at"
    ), record["error"]
    assert RunProcessFinder(run_dir.name).find() == []
    for name in ("ray-head", "spark-master"):
        old = _daemon(local_cluster, name)
        _restarted_within(local_cluster, name, old, _kill(old))
    connect = _daemon(local_cluster, "spark-connect")
    assert wait_until(
        lambda: _daemon(local_cluster, "spark-connect").pid != connect.pid, timeout_s=30
    ), "the Connect server was not started again after the master"
    status = _healthy(local_cluster)
    restarts = status["keeper"]["restarts"]
    assert restarts.get("ray-head", 0) >= before.get("ray-head", 0) + 1
    assert restarts.get("spark-master", 0) >= before.get("spark-master", 0) + 1
    assert restarts.get("spark-connect", 0) >= before.get("spark-connect", 0) + 2
    log = (Path(local_cluster.up["state_dir"]) / "logs" / "keeper.out").read_text()
    assert "spark-connect" in log and "had ended; started again" in log
    assert "lost its application when the Spark master ended" in log
    code, record = local_cluster.run("busy", "--seconds", "0.1")  # a Spark run, warm
    assert code == 0 and record["spark_session"] == "warm", record
    _next_run_succeeds(local_cluster)  # and a Ray one


def test_a_spark_worker_killed_during_etl_is_started_again_and_the_run_says_so(
        local_cluster: LocalCluster):  # fmt: skip
    made = local_cluster.cli("run", "datagen", "--rows", "3M", "--overwrite", timeout=600)
    assert made.code == 0, made.stderr

    def kill_the_worker(run_dir: Path) -> None:
        # as soon as it works on the cluster's Spark Connect server (its executors busy)
        assert wait_until(lambda: (run_dir / "shared.json").exists(), timeout_s=60)
        assert wait_until(lambda: _executors(local_cluster) > 0, timeout_s=60)
        old = _daemon(local_cluster, "spark-worker")
        _restarted_within(local_cluster, "spark-worker", old, _kill(old))

    _, record = _run_with_fault(local_cluster, ["etl", "--overwrite"], kill_the_worker)
    # Spark retried the lost tasks on the worker started again: every row is there
    assert record["status"] == "succeeded", record.get("error")
    assert record["result"]["rows"] == 3_000_000
    assert any(n.startswith("Spark worker") and "was lost" in n for n in record["notes"])
    assert any(n.startswith("Spark worker") and "joined" in n for n in record["notes"])
    assert RunProcessFinder(record["id"]).find() == []
    _healthy(local_cluster)
    _next_run_succeeds(local_cluster)


def test_a_run_with_no_spark_worker_fails_as_stalled_instead_of_hanging(
        local_cluster: LocalCluster):  # fmt: skip
    """The keeper stopped and the worker killed: nothing brings it back, so the run fails
    after the spec's runs.stall_timeout (20 s here) naming what it lacks; `up` mends it."""
    _kill(_keeper(local_cluster))
    _kill(_daemon(local_cluster, "spark-worker"))
    t0 = time.monotonic()
    code, record = local_cluster.run("busy", "--seconds", "1", timeout=300)
    assert code == 1 and record["status"] == "failed", record
    assert record["error"].startswith("stalled: no Spark worker has been ALIVE for"), record
    assert "`clusterkit up`" in record["error"]
    assert 20 <= time.monotonic() - t0 < 120
    assert RunProcessFinder(record["id"]).find() == []
    mended = local_cluster.cli("up", "--spec", str(local_cluster.spec_file), "--json")
    assert mended.code == 0, mended.stderr
    assert _healthy(local_cluster)["keeper"]["alive"] is True
    code, record = local_cluster.run("busy", "--seconds", "0.1")
    assert code == 0, record
    _next_run_succeeds(local_cluster)


def test_a_ray_worker_killed_during_train_is_retried_or_said(local_cluster: LocalCluster):
    made = local_cluster.cli("run", "datagen", "--rows", "200k", "--overwrite", timeout=600)
    assert made.code == 0, made.stderr

    def kill_a_ray_worker(run_dir: Path) -> None:
        def ray_workers() -> list[psutil.Process]:
            return [p for p in RunProcessFinder(run_dir.name).find() if is_ray_worker(p)]

        assert wait_until(lambda: bool(ray_workers()), timeout_s=120), "no Ray worker started"
        ray_workers()[0].kill()

    _, record = _run_with_fault(local_cluster, ["train", "--sample", "200k"], kill_a_ray_worker)
    assert record["status"] in ("succeeded", "failed"), record
    if record["status"] == "failed":  # then why, in one line, not a hang
        assert record["error"] and "Traceback" not in record["error"]
    assert RunProcessFinder(record["id"]).find() == []
    _next_run_succeeds(local_cluster)


def _executors(cluster: LocalCluster) -> int:
    """Executors the Spark master lists as running, over every application."""
    import urllib.request

    ui = cluster.up["endpoints"]["spark_master_ui"]
    with urllib.request.urlopen(f"{ui}/json/", timeout=10) as response:
        data = json.load(response)
    return sum(int(w.get("coresused", 0)) for w in data.get("workers", []))
