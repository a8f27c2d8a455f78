"""The real local cluster: health, security defaults, idempotence, and jobs through `run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from clusterkit.exec import processes as daemons
from clusterkit.exec.processes import Daemon, wait_until
from clusterkit.metrics.sampling import RunProcessFinder
from tests.conftest import BASE_PORT, LocalCluster

pytestmark = pytest.mark.cluster

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1"}


def _cluster_state(cluster: LocalCluster) -> dict:
    path = Path(cluster.up["state_dir"]) / "cluster.json"
    return json.loads(path.read_text())


def _cluster_processes(cluster: LocalCluster) -> list[psutil.Process]:
    procs = []
    for d in _cluster_state(cluster)["daemons"]:
        root = daemons.process_of(Daemon.from_dict(d))
        assert root is not None, f"{d['name']} is not running"
        procs += [root, *root.children(recursive=True)]
    return procs


def test_status_lists_every_service_up_with_addresses(local_cluster: LocalCluster):
    status = local_cluster.status()
    assert status["provider"] == "local" and status["state"] == "up"
    by_name: dict[str, list[dict]] = {}
    for s in status["services"]:
        by_name.setdefault(s["name"], []).append(s)
    master = by_name["spark-master"][0]
    assert master["state"] == "up"
    assert master["address"] == f"spark://127.0.0.1:{BASE_PORT}"
    assert master["url"] == f"http://127.0.0.1:{BASE_PORT + 1}"
    assert [w["state"] for w in by_name["spark-worker"]] == ["up"]
    assert by_name["ray-head"][0]["state"] == "up"
    assert [n["state"] for n in by_name["ray-node"]] == ["up"]
    assert by_name["storage"][0]["state"] == "up"
    node = status["nodes"][0]
    assert node["mem_total_bytes"] == psutil.virtual_memory().total
    assert 0 <= node["cpu_percent"] <= 100 and node["cpu_count"] == os.cpu_count()
    human = local_cluster.cli("status")
    assert human.code == 0 and f"spark://127.0.0.1:{BASE_PORT}" in human.stdout
    assert "endpoints (loopback only" in human.stdout  # sc://localhost is loopback too


def _listeners(cluster: LocalCluster) -> list[tuple[str, int]]:
    """(address, port) of every listening socket of the cluster's process trees."""
    pids = {p.pid for p in _cluster_processes(cluster)}
    found = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids and conn.laddr:
            found.append((conn.laddr[0], conn.laddr[1]))
    return found


def test_every_listener_of_the_cluster_is_on_loopback(local_cluster: LocalCluster):
    listening = _listeners(local_cluster)
    ports = {port for _, port in listening}
    # the spec's ports are all there: Spark master/UIs, Ray GCS, raylet, dashboard, client...
    expected = set(range(BASE_PORT, BASE_PORT + 13))
    assert expected <= ports, f"missing listeners: {sorted(expected - ports)}"
    exposed = [(ip, port) for ip, port in listening if ip not in LOOPBACK]
    assert exposed == [], f"listening beyond loopback: {exposed}"


def test_spark_rest_submission_is_off(local_cluster: LocalCluster):
    assert 6066 not in {port for _, port in _listeners(local_cluster)}
    conf = Path(local_cluster.up["state_dir"]) / "spark" / "conf" / "spark-defaults.conf"
    assert "spark.master.rest.enabled  false" in conf.read_text()


def test_ray_jobs_api_refuses_requests_without_the_token(local_cluster: LocalCluster):
    dashboard = local_cluster.up["endpoints"]["ray_dashboard"]
    token = (Path(local_cluster.up["state_dir"]) / "ray-token").read_text().strip()
    assert requests.get(f"{dashboard}/api/jobs/", timeout=10).status_code == 401
    authed = requests.get(
        f"{dashboard}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert authed.status_code == 200
    assert oct((Path(local_cluster.up["state_dir"]) / "ray-token").stat().st_mode)[-3:] == "600"


def test_second_up_changes_nothing(local_cluster: LocalCluster):
    before = {d["name"]: d["pid"] for d in _cluster_state(local_cluster)["daemons"]}
    result = local_cluster.cli("up", "--spec", str(local_cluster.spec_file), "--json")
    assert result.code == 0, result.stderr
    report = result.json()
    assert report["changed"] is False
    assert "already up and healthy; nothing changed" in report["message"]
    after = {d["name"]: d["pid"] for d in _cluster_state(local_cluster)["daemons"]}
    assert after == before


def test_worker_is_sized_from_the_spec_or_the_machine(local_cluster: LocalCluster):
    sizing = local_cluster.up["sizing"]
    assert sizing["worker_memory_mb"] == 2048  # the spec says 2g
    assert sizing["worker_cores"] == os.cpu_count()  # auto: every core
    workers = [s for s in local_cluster.status()["services"] if s["name"] == "spark-worker"]
    assert workers[0]["info"]["memory_mb"] == 2048
    assert workers[0]["info"]["cores"] == os.cpu_count()


def test_spark_job_runs_and_its_record_has_the_measurements(local_cluster: LocalCluster):
    data = str(local_cluster.storage / "datasets")
    made = local_cluster.cli("run", "datagen", "--rows", "300k", "--name", "spark-in", "--json")
    assert made.code == 0, made.stderr
    result = local_cluster.cli(
        "run", "etl", "--input", f"{data}/spark-in", "--output", f"{data}/spark-out", "--json"
    )
    assert result.code == 0, result.stderr
    record = result.json()  # stdout holds only the record
    assert record["status"] == "succeeded" and record["job"] == "etl"
    assert record["params"] == {"input": f"{data}/spark-in", "output": f"{data}/spark-out"}
    assert record["provider"] == "local" and record["error"] is None
    assert record["wall_s"] > 0 and record["started"] and record["ended"]
    assert record["result"]["rows"] == 300_000
    assert "etl (spark): 300000 rows" in result.stderr  # the job's output went to stderr
    # memory was sampled while the job ran, the Connect server's executors it used included
    assert record["spark_session"] == "warm"
    roles = record["result"]["peak_rss_by_role"]
    assert roles.get("shared spark-executor", 0) > 0 and roles.get("driver", 0) > 0
    assert record["peak_rss_bytes"] >= roles["shared spark-executor"]
    samples = Path(record["artifacts"], "metrics.jsonl").read_text().splitlines()
    assert len(samples) >= 2
    assert max(json.loads(s)["run_rss_bytes"] for s in samples) == record["peak_rss_bytes"]
    assert record["nodes"][next(iter(record["nodes"]))]["samples"] == len(samples)
    assert (Path(record["artifacts"]) / "stdout.log").exists()


def test_ray_job_runs_in_ray_workers(local_cluster: LocalCluster):
    # 300M samples keep the tasks busy for seconds: the sampler (1 per second) sees them
    result = local_cluster.cli("run", "ray-pi", "--samples", "300M", "--tasks", "4", "--json")
    assert result.code == 0, result.stderr
    record = result.json()
    assert record["status"] == "succeeded"
    assert abs(record["result"]["estimate"] - 3.14159) < 0.01
    assert record["result"]["peak_rss_by_role"].get("ray-worker", 0) > 0


def test_spark_submit_of_a_program_nobody_here_wrote(local_cluster: LocalCluster):
    """Apache's own pi.py example, to the master URL that `status --json` reports, with what
    `clusterkit env` gives for spark-submit by hand (the cluster's secret, by SPARK_CONF_DIR)."""
    import pyspark

    master = next(
        s["address"] for s in local_cluster.status()["services"] if s["name"] == "spark-master"
    )
    spark_home = Path(pyspark.__file__).parent
    example = spark_home / "examples" / "src" / "main" / "python" / "pi.py"
    given = local_cluster.cli("env", "--json", "--spark-session", "classic").json()["variables"]
    env = {**os.environ, **given, "SPARK_HOME": str(spark_home)}
    out = subprocess.run(
        [str(spark_home / "bin" / "spark-submit"), "--master", master, str(example), "4"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Pi is roughly 3.1" in out.stdout


def test_a_crashing_job_is_recorded_failed_and_the_cluster_stays_healthy(local_cluster):
    result = local_cluster.cli("run", "crash", "--json")
    assert result.code == 1
    record = result.json()
    assert record["status"] == "failed"
    assert record["error"] == "RuntimeError: deliberate crash for the test"
    assert (
        "RuntimeError: deliberate crash for the test"
        in Path(record["artifacts"], "stderr.log").read_text()
    )
    assert RunProcessFinder(record["id"]).find() == []
    assert local_cluster.status()["state"] == "up"


def _wait_for_role(run_dir: Path, role: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        metrics = run_dir / "metrics.jsonl"
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                if json.loads(line)["run_rss_by_role"].get(role):
                    return
        time.sleep(0.5)
    raise AssertionError(f"no {role} process appeared in {run_dir}")


def _exposed_listeners(procs: list[psutil.Process]) -> list[tuple[str, int]]:
    pids = {p.pid for p in procs}
    return [
        (c.laddr[0], c.laddr[1]) for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in pids and c.laddr
        and c.laddr[0] not in LOOPBACK
    ]  # fmt: skip


def _runs_dir(cluster: LocalCluster) -> Path:
    return Path(cluster.up["state_dir"]) / "runs"


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_ctrl_c_during_run_cancels_it_and_leaves_no_process(local_cluster: LocalCluster):
    before = {p.name for p in _runs_dir(local_cluster).iterdir()}  # earlier busy runs too

    def started() -> list[Path]:
        return [p for p in _runs_dir(local_cluster).iterdir() if p.name not in before
                and "busy: spark tasks started" in _text(p / "stdout.log")]  # fmt: skip

    proc = subprocess.Popen(
        [sys.executable, "-m", "clusterkit.cli", "run", "busy", "--json"],
        env=local_cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell's background jobs start with SIGINT ignored, and Python keeps it so
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert wait_until(lambda: bool(started()), timeout_s=60), "the busy job never started"
        [run_dir] = started()
        _wait_for_role(run_dir, "shared spark-executor")
        # the job's own driver, executors and Python workers listen on loopback only
        assert _exposed_listeners(RunProcessFinder(run_dir.name).find()) == []
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    record = json.loads(stdout)
    assert record["status"] == "cancelled"
    assert record["error"] == "interrupted (Ctrl-C)"
    assert RunProcessFinder(record["id"]).find() == []
    assert local_cluster.status()["state"] == "up"


def test_detach_logs_runs_and_cancel(local_cluster: LocalCluster):
    started = local_cluster.cli("run", "busy", "--engine", "ray", "--detach")
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    _wait_for_role(_runs_dir(local_cluster) / run_id, "ray-worker")
    assert _exposed_listeners(RunProcessFinder(run_id).find()) == []
    listed = local_cluster.cli("runs", "--json").json()
    assert {r["id"]: r["status"] for r in listed}[run_id] == "running"
    logs = local_cluster.cli("logs", run_id)
    assert logs.code == 0 and "busy: ray tasks started" in logs.stdout
    cancelled = local_cluster.cli("cancel", run_id, "--json")
    assert cancelled.code == 0, cancelled.stderr
    record = cancelled.json()
    assert record["status"] == "cancelled" and record["error"] == "cancelled by the user"
    assert RunProcessFinder(run_id).find() == []
    again = local_cluster.cli("cancel", run_id)
    assert again.code == 2 and "already cancelled" in again.stderr
    assert local_cluster.status()["state"] == "up"


def test_logs_of_an_unknown_run(local_cluster: LocalCluster):
    result = local_cluster.cli("logs", "nope")
    assert result.code == 2 and "no run matching 'nope'" in result.stderr


def test_exec_copy_ssh_and_tunnel_work_on_the_local_provider(local_cluster: LocalCluster):
    """The local provider's one node is this machine, reached through the same verbs."""
    host = socket.gethostname()
    shown = local_cluster.cli("exec", "--", "hostname")
    assert shown.code == 0 and shown.stdout == f"[{host}] {host}\n", shown.stdout + shown.stderr
    note = Path(f"/tmp/ck-copy-{os.getpid()}")
    source = _runs_dir(local_cluster).parent / "note.txt"
    source.write_text("copied by clusterkit\n")
    try:
        copied = local_cluster.cli("copy", str(source), str(note))
        assert copied.code == 0, copied.stderr
        read = local_cluster.cli("exec", "--", "cat", str(note))
        assert read.stdout == f"[{host}] copied by clusterkit\n", read.stdout + read.stderr
    finally:
        note.unlink(missing_ok=True)
    nowhere = local_cluster.cli("copy", str(source), "/nonexistent-ck/sub/x")
    assert nowhere.code == 2 and nowhere.stderr.count("\n") == 1, nowhere.stderr
    assert nowhere.stderr.startswith(f"error: /nonexistent-ck/sub/x on node {host}: its folder")
    ssh = local_cluster.cli("ssh", "master", "--", "sh", "-c", "echo from-ssh; exit 5")
    assert ssh.code == 5 and ssh.stdout == "from-ssh\n", ssh.stdout + ssh.stderr
    unknown = local_cluster.cli("exec", "--node", "nosuch", "hostname")
    assert unknown.code == 2 and f"has no node 'nosuch'; its nodes: {host}" in unknown.stderr
    tunnel = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "tunnel"],
                              env=local_cluster.env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    lines: list[str] = []
    try:
        assert tunnel.stdout is not None
        for line in tunnel.stdout:
            if line.startswith("forwarding"):
                break
            lines.append(line)
    finally:
        tunnel.send_signal(signal.SIGINT)
        tunnel.wait(timeout=20)
    ui = local_cluster.up["endpoints"]["spark_master_ui"]
    assert any(line.split()[:2] == ["spark_master_ui", ui] for line in lines), lines


def test_scale_is_refused_on_the_local_cluster_and_for_counts_out_of_bounds(local_cluster):
    """The local provider has one worker (this machine); nothing of the cluster changes."""
    local = local_cluster.cli("scale", "--workers", "2")
    assert local.code == 2, local.stdout + local.stderr
    assert local.stderr.startswith("error: cluster 'itest' is local: this machine is its one "
                                   "worker, so it cannot be scaled"), local.stderr  # fmt: skip
    for count in ("0", "9"):
        out_of_bounds = local_cluster.cli("scale", "--workers", count)
        assert out_of_bounds.code == 2, out_of_bounds.stderr
        assert out_of_bounds.stderr == (f"error: --workers {count}: a cluster has 1 to 8 workers "
                                        "(nodes.workers); `clusterkit down` removes a whole "
                                        "cluster\n")  # fmt: skip
    assert local_cluster.status()["state"] == "up"
