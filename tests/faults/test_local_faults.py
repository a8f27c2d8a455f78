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
from pathlib import Path

import psutil
import pytest

from clusterkit.exec.processes import wait_until
from clusterkit.metrics.sampling import RunProcessFinder
from clusterkit.runs.launcher import ORPHANED
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
    listed = {r["id"]: r for r in local_cluster.cli("runs", "--json").json()}
    assert listed[run_id]["status"] == "failed"
    assert listed[run_id]["error"] == ORPHANED.format(node=record["supervisor"]["node"])
    assert RunProcessFinder(run_id).find() == []
    _next_run_succeeds(local_cluster)


PI = "from pyspark.sql import SparkSession\n" \
     "spark = SparkSession.builder.getOrCreate()\n" \
     "print('COUNT', spark.sparkContext.parallelize(range(1000), 2).count())\n"  # fmt: skip


def test_spark_submit_needs_the_cluster_secret(local_cluster: LocalCluster, tmp_path: Path):
    """Another user with no access to the 0600 secret cannot run code through the master;
    the operator, with `clusterkit env --shell`, can."""
    app = tmp_path / "pi.py"
    app.write_text(PI)
    env = local_cluster.cli("env", "--json").json()
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
