"""The runbooks rehearsed: each incident provoked on this machine, doctor naming its runbook,
the page's ``bash steps`` run as written, and doctor no longer naming it
(:func:`tests.runbooks.rehearse.rehearse`).

- port-in-use: a foreign ``python -m http.server`` on a port of the spec (a home with no
  cluster, its spec named by CLUSTERKIT_SPEC, its ports a free set of their own).
- run-stuck: a ``busy`` run on the shared local cluster, its supervisor killed (SIGKILL).
- state-permissions: a cluster's state folder made writable by others (0777).
- java-missing: JAVA_HOME at a folder with no ``bin/java`` (a JDK removed under it); the steps
  pick the system's JDK and export it, and doctor runs in the environment they leave.

Not yet rehearsed: service-dead, disk-full, lost-token-or-key, restore-after-crash.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from clusterkit.core.spec import Ports, Spec
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.exec.processes import wait_until
from clusterkit.metrics.sampling import RunProcessFinder
from clusterkit.runs.launcher import ORPHANED
from tests.conftest import BASE_PORT, LocalCluster, cli_env
from tests.runbooks.rehearse import rehearse

pytestmark = pytest.mark.cluster


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_ports() -> Ports:
    """A set of spec ports nothing here listens on, away from the defaults and from the
    shared local cluster's (``BASE_PORT``)."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(30000, 55000, 200)
        if abs(base - BASE_PORT) < 1000:
            continue
        ports = Ports.numbered_from(base)
        if all(_free(port) for port in ports.fixed().values()):
            return ports
    raise AssertionError("no free set of ports found")


def _spec_file(folder: Path, ports: Ports) -> Path:
    path = folder / "clusterkit.yaml"
    path.write_text(yaml.safe_dump({"name": "rehearsed", "ports": ports.model_dump()}))
    return path


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def test_port_in_use_a_foreign_server_on_a_spec_port(tmp_path: Path):
    ports = free_ports()
    env = cli_env(tmp_path / "home", CLUSTERKIT_SPEC=str(_spec_file(tmp_path, ports)))
    port = ports.spark_master_ui
    holder = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    # reaped as soon as it ends: the steps wait for its pid to be gone
    threading.Thread(target=holder.wait, daemon=True).start()
    try:
        assert wait_until(lambda: _listening(port), timeout_s=30), "http.server never listened"
        done = rehearse("port-in-use", "ports", env=env, cwd=tmp_path)
        assert done.finding["data"]["PORT"] == str(port)
        assert done.finding["data"]["PID"] == str(holder.pid) and done.finding["data"]["PROCESS"]
        assert holder.wait(timeout=10) == -signal.SIGTERM  # the steps' kill ended it
    finally:
        if holder.poll() is None:
            holder.kill()


def test_doctor_on_the_healthy_local_cluster_is_ok_everywhere_within_5_s(
    local_cluster: LocalCluster,
):
    started = time.monotonic()
    result = local_cluster.cli("doctor", "--json")
    took = time.monotonic() - started
    assert result.code == 0, result.stdout + result.stderr
    report = result.json()
    assert report["cluster"] == "itest" and report["ok"] is True
    assert {c["check"] for c in report["checks"]} == {
        "cluster", "java", "python", "disk", "state", "ports", "processes", "services", "runs"
    }  # fmt: skip
    assert [c for c in report["checks"] if c["status"] != "ok"] == [], report["checks"]
    assert took <= 5.0, f"doctor took {took:.1f} s (the process, start to end)"


def test_run_stuck_a_killed_supervisor(local_cluster: LocalCluster, tmp_path: Path):
    started = local_cluster.cli("run", "busy", "--engine", "ray", "--detach")
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    run_dir = Path(local_cluster.up["state_dir"]) / "runs" / run_id
    stdout = run_dir / "stdout.log"
    assert wait_until(lambda: stdout.exists() and "busy:" in stdout.read_text(),
                      timeout_s=120), "the busy run never started"  # fmt: skip
    record = json.loads((run_dir / "record.json").read_text())
    supervisor = psutil.Process(int(record["supervisor"]["pid"]))
    supervisor.kill()
    supervisor.wait(30)
    try:
        done = rehearse("run-stuck", "runs", env=local_cluster.env, cwd=tmp_path, clean=False)
        # the first one is the steps' (an earlier test's orphan would be reaped all the same)
        assert {"RUN": run_id} in [f["data"] for f in done.findings]
        listed = {r["id"]: r for r in local_cluster.cli("runs", "--json").json()}
        assert listed[run_id]["status"] == "failed"
        assert listed[run_id]["error"] == ORPHANED.format(node=record["supervisor"]["node"])
        assert RunProcessFinder(run_id).find() == []
    finally:
        if RunProcessFinder(run_id).find():  # the steps failed: do not leave it to the others
            local_cluster.cli("runs")


def test_state_permissions_a_state_folder_writable_by_others(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    home.chmod(0o700)
    paths = ClusterPaths(home / "clusters" / "rehearsed")
    paths.root.mkdir(parents=True)
    spec = Spec(name="rehearsed", ports=free_ports())
    paths.spec_file.write_text(yaml.safe_dump(spec.model_dump(), sort_keys=False))
    for secret in (paths.ray_token, paths.spark_connect_token, paths.spark_secret):
        secret.write_text("s3cret-" * 8)
        secret.chmod(0o600)
    Contexts(home).add("rehearsed", paths.root)
    paths.root.chmod(0o777)  # what doctor is to find
    done = rehearse("state-permissions", "state", env=cli_env(home), cwd=tmp_path)
    assert Path(done.finding["data"]["FILE"]).resolve() == paths.root.resolve()
    assert "writable by others" in done.finding["saw"]
    assert paths.root.stat().st_mode & 0o777 == 0o700


def _registered_java() -> bool:
    if shutil.which("update-alternatives") is None:
        return False
    listed = subprocess.run(["update-alternatives", "--list", "java"], capture_output=True)
    return listed.returncode == 0


def test_java_missing_a_stale_java_home(tmp_path: Path):
    if not _registered_java():
        pytest.skip("no JDK registered with update-alternatives: the page's steps pick one")
    removed = tmp_path / "jdk-removed"  # a JAVA_HOME whose JDK was removed or upgraded
    removed.mkdir()
    env = cli_env(tmp_path / "home", CLUSTERKIT_SPEC=str(_spec_file(tmp_path, free_ports())),
                  JAVA_HOME=str(removed))  # fmt: skip
    done = rehearse("java-missing", "java", env=env, cwd=tmp_path)
    assert "has no bin/java" in done.finding["saw"]
    assert Path(done.env["JAVA_HOME"], "bin", "java").exists()
    assert done.env["PATH"].startswith(f"{done.env['JAVA_HOME']}/bin")
