"""The Spark Connect server on the real local cluster: its health and token, loopback only,
executors given back to `spark-submit`, warm runs that agree with classic ones and charge the
shared processes, and a cancel that interrupts the server's work."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pyspark
import pytest

from tests.conftest import BASE_PORT, LocalCluster, test_ports

pytestmark = pytest.mark.cluster

PI = Path(pyspark.__file__).parent / "examples" / "src" / "main" / "python" / "pi.py"

#: A Spark Connect client with the given token (or none): prints the count or the error.
CLIENT = """
import os, sys
from pyspark.sql import SparkSession
os.environ.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
url, token = sys.argv[1], sys.argv[2]
if token != "-":
    os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
try:
    print("count", SparkSession.builder.remote(url).getOrCreate().range(7).count())
except Exception as exc:
    print("refused", type(exc).__name__, str(exc).replace(chr(10), " ")[:400])
"""


def _connect(cluster: LocalCluster) -> dict:
    return next(s for s in cluster.status()["services"] if s["name"] == "spark-connect")


def _token_file(cluster: LocalCluster) -> Path:
    return Path(cluster.up["state_dir"]) / "spark-connect-token"


def _client(url: str, token: str) -> str:
    out = subprocess.run([sys.executable, "-c", CLIENT, url, token], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    return out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]


def test_the_connect_server_is_a_service_with_its_url_and_health(local_cluster: LocalCluster):
    status = local_cluster.status()
    url = status["endpoints"]["spark_connect_url"]
    assert url == f"sc://localhost:{test_ports(BASE_PORT)['spark_connect']}"
    connect = _connect(local_cluster)
    assert connect["state"] == "up" and connect["address"] == url, connect
    token = _token_file(local_cluster)
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text().strip()) >= 32
    text = local_cluster.cli("status").stdout
    assert "spark-connect" in text and url in text


def test_a_missing_or_wrong_token_is_refused_and_the_right_one_served(local_cluster):
    url = _connect(local_cluster)["address"]
    assert "UNAUTHENTICATED" in _client(url, "-")
    assert "UNAUTHENTICATED" in _client(url, "0" * 64)
    assert _client(url, _token_file(local_cluster).read_text().strip()) == "count 7"


def test_the_token_is_in_no_process_command_line(local_cluster: LocalCluster):
    token = _token_file(local_cluster).read_text().strip()
    for proc in psutil.process_iter(["cmdline"]):
        assert token not in " ".join(proc.info["cmdline"] or []), proc.pid


def test_nothing_listens_on_the_connect_port_beyond_loopback(local_cluster: LocalCluster):
    port = test_ports(BASE_PORT)["spark_connect"]
    listeners = [c.laddr[0] for c in psutil.net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == port]  # fmt: skip
    assert listeners and set(listeners) <= {"127.0.0.1", "::ffff:127.0.0.1"}, listeners


@pytest.fixture(scope="module")
def raw(local_cluster: LocalCluster) -> str:
    code, gen = local_cluster.run("datagen", "--rows", "50k", "--name", "warm-raw",
                                  "--overwrite")  # fmt: skip
    assert code == 0, gen["error"]
    return str(gen["result"]["path"])


@pytest.fixture(scope="module")
def processed(local_cluster: LocalCluster, raw: str) -> str:
    code, etl = local_cluster.run("etl", "--engine", "spark", "--input", raw, "--output",
                                  f"{raw}-processed")  # fmt: skip
    assert code == 0, etl["error"]
    return str(etl["result"]["output"])


def test_warm_and_classic_spark_runs_give_the_same_results(local_cluster: LocalCluster, raw):
    outputs = {}
    for session in ("warm", "classic"):
        code, etl = local_cluster.run("etl", "--engine", "spark", "--input", raw, "--output",
                                      f"{raw}-{session}", "--spark-session", session)  # fmt: skip
        assert code == 0, etl["error"]
        assert etl["spark_session"] == session
        outputs[session] = pq.ParquetDataset(etl["result"]["output"]).read().sort_by("id")
        for job in ("top-earners", "age-extremes"):
            code, query = local_cluster.run(job, "--engine", "spark", "--input",
                                            f"{raw}-{session}", "--spark-session", session,
                                            "--overwrite")  # fmt: skip
            assert code == 0, query["error"]
            outputs[f"{session} {job}"] = query["result"]["rows_out"]
    assert outputs["warm"].equals(outputs["classic"])
    for job in ("top-earners", "age-extremes"):
        assert outputs[f"warm {job}"] == outputs[f"classic {job}"], job


def test_a_warm_run_charges_the_shared_processes_and_names_them(local_cluster, processed):
    code, record = local_cluster.run("top-earners", "--engine", "spark", "--input", processed,
                                     "--overwrite")  # fmt: skip
    assert code == 0, record["error"]
    assert record["spark_session"] == "warm"
    shared = record["shared_processes"]
    assert "spark-connect-server" in next(iter(shared.values())), shared
    roles = record["result"]["peak_rss_by_role"]
    assert roles.get("shared spark-connect-server", 0) > 100 * 1024**2, roles
    assert record["peak_rss_bytes"] >= roles["shared spark-connect-server"]


def test_stock_pi_through_spark_submit_after_a_connect_job(local_cluster, processed):
    """The server gives its idle executors back: Apache's pi.py gets cores and finishes."""
    code, record = local_cluster.run("top-earners", "--engine", "spark", "--input", processed,
                                     "--overwrite")  # fmt: skip
    assert code == 0 and record["spark_session"] == "warm", record["error"]
    master = next(s["address"] for s in local_cluster.status()["services"]
                  if s["name"] == "spark-master")  # fmt: skip
    spark_home = Path(pyspark.__file__).parent
    given = local_cluster.cli("env", "--json", "--spark-session", "classic").json()["variables"]
    env = {**os.environ, **given, "SPARK_HOME": str(spark_home)}  # the cluster's secret
    started = time.monotonic()
    out = subprocess.run([str(spark_home / "bin" / "spark-submit"), "--master", master,
                          "--conf", "spark.ui.enabled=false", str(PI), "4"],
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Pi is roughly 3.1" in out.stdout
    assert time.monotonic() - started < 180


def _wait_line(path: Path, text: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.3)


def test_cancelling_a_warm_run_interrupts_its_work_and_the_server_goes_on(local_cluster, processed):
    started = local_cluster.cli("run", "busy", "--seconds", "3600", "--detach")
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    run_dir = Path(local_cluster.up["state_dir"]) / "runs" / run_id
    _wait_line(run_dir / "stdout.log", "busy: spark tasks started")
    time.sleep(3)  # its tasks now hold the server's executors
    cancelled = local_cluster.cli("cancel", run_id, "--json")
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json()["status"] == "cancelled"
    # the hour-long tasks were interrupted: the next run gets the executors at once
    t0 = time.monotonic()
    code, record = local_cluster.run("top-earners", "--engine", "spark", "--input", processed,
                                     "--overwrite", timeout=180)  # fmt: skip
    assert code == 0, record["error"]
    assert time.monotonic() - t0 < 90
    assert _connect(local_cluster)["state"] == "up"


def test_the_record_of_a_warm_run_is_readable_as_json(local_cluster: LocalCluster):
    listed = local_cluster.cli("runs", "--json")
    assert listed.code == 0
    warm = [r for r in json.loads(listed.stdout) if r.get("spark_session") == "warm"]
    assert warm, "no warm run listed"
