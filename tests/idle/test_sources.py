"""The idle guard's readers: a real HTTP server on loopback answering as the Spark master,
an application UI and Ray's Jobs API do; run folders as the run store writes them; TCP
connections shaped as psutil gives them. Whatever they cannot read is an error, not a crash."""

import http.server
import json
import subprocess
import threading
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest

from clusterkit.core.records import RunRecord
from clusterkit.idle import sources

Addr = namedtuple("Addr", "ip port")
Conn = namedtuple("Conn", "laddr raddr status pid")
TOKEN = "s3cret"


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers each path with the body the test set; the Jobs API only with the token."""

    bodies: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.bodies.get(self.path)
        status = 200 if body is not None else 404
        if self.path.startswith("/api/jobs/") and (
                self.headers.get("Authorization") != f"Bearer {TOKEN}"):  # fmt: skip
            status, body = 401, b"Unauthorized"
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, dict[str, bytes]]]:
    handler: type[_Canned] = type("Handler", (_Canned,), {"bodies": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.bodies
    finally:
        server.shutdown()
        server.server_close()


def _record(root: Path, run_id: str, status: str,
            supervisor: dict[str, Any] | None = None) -> None:  # fmt: skip
    (root / run_id).mkdir(parents=True)
    record = RunRecord(id=run_id, job="etl", params={}, cluster="c", provider="aws",
                       status=status, supervisor=supervisor)  # fmt: skip
    (root / run_id / "record.json").write_text(json.dumps(record.to_dict()))


def test_a_run_whose_supervisor_is_gone_keeps_nothing_up(tmp_path):
    me = psutil.Process()
    _record(tmp_path, "alive", "running", {"pid": me.pid, "create_time": me.create_time(),
                                           "node": "master"})  # fmt: skip
    ended = subprocess.Popen(["true"])
    ended.wait()
    _record(tmp_path, "gone", "running", {"pid": ended.pid, "create_time": 1.0,
                                          "node": "master"})  # fmt: skip
    _record(
        tmp_path, "reused", "running", {"pid": me.pid, "create_time": 1.0, "node": "master"}
    )  # a pid used again since
    assert sources.runs(tmp_path).lines() == ["run alive (etl) running"]


def test_runs_not_final_are_active_and_final_ones_are_not(tmp_path):
    _record(tmp_path, "r1", "running")
    _record(tmp_path, "r2", "queued")
    for n, status in enumerate(("succeeded", "failed", "cancelled")):
        _record(tmp_path, f"r{n + 3}", status)
    (tmp_path / "r9").mkdir()  # made, its record not written yet
    reading = sources.runs(tmp_path)
    assert reading.error is None
    assert reading.lines() == ["run r1 (etl) running", "run r2 (etl) queued"]
    assert sources.runs(tmp_path / "not-made-yet").lines() == []


def test_a_run_record_that_cannot_be_read_counts_as_active(tmp_path):
    _record(tmp_path, "r1", "succeeded")
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "record.json").write_text('{"id": "r2", "job"')  # cut short
    (tmp_path / "r3").mkdir()
    (tmp_path / "r3" / "record.json").write_text('{"id": "r3"}')  # not a run record
    reading = sources.runs(tmp_path)
    assert reading.activities == []
    assert reading.error is not None
    assert "r2/record.json: JSONDecodeError" in reading.error
    assert "r3/record.json: TypeError" in reading.error
    assert reading.lines()[0].startswith("could not read runs (r2/record.json")


def test_spark_applications_with_executors_are_active(canned):
    url, bodies = canned
    bodies["/json/"] = json.dumps({"workers": [], "activeapps": [
        {"id": "app-1", "name": "clusterkit-spark-connect", "cores": 0, "state": "WAITING"},
        {"id": "app-2", "name": "etl", "cores": 2, "state": "RUNNING"},
        "not an application"]}).encode()  # fmt: skip
    assert sources.spark(url).lines() == ["Spark application etl (app-2) holds 2 cores"]
    bodies["/json/"] = json.dumps({"activeapps": []}).encode()
    assert sources.spark(url).lines() == []


def test_running_jobs_on_an_application_ui_are_active(canned):
    url, bodies = canned
    bodies["/json/"] = json.dumps({"activeapps": [
        {"id": "app-1", "name": "clusterkit-spark-connect", "cores": 0}]}).encode()  # fmt: skip
    bodies["/api/v1/applications"] = json.dumps([
        {"id": "app-1", "name": "clusterkit-spark-connect"}]).encode()  # fmt: skip
    bodies["/api/v1/applications/app-1/jobs?status=running"] = b'[{"jobId": 3}]'
    assert sources.spark(url, connect_ui=url).lines() == [
        "1 Spark job(s) running in clusterkit-spark-connect (app-1)"]  # fmt: skip
    bodies["/api/v1/applications/app-1/jobs?status=running"] = b"[]"
    assert sources.spark(url, connect_ui=url).lines() == []
    assert sources.spark(url).lines() == []  # no UI asked


@pytest.mark.parametrize(("body", "said"), [
    (None, "HTTPError: 404"),
    (b"<html>", "JSONDecodeError"),
    (b'{"workers": []}', "has no list of activeapps"),
    (b"[1, 2]", "has no list of activeapps"),
])  # fmt: skip
def test_a_spark_master_answering_oddly_counts_as_active(canned, body, said):
    url, bodies = canned
    if body is not None:
        bodies["/json/"] = body
    reading = sources.spark(url)
    assert reading.activities == [] and reading.error is not None and said in reading.error


def test_a_spark_master_that_does_not_answer_counts_as_active():
    reading = sources.spark("http://127.0.0.1:1")
    assert reading.error is not None and reading.error.startswith("ConnectionError")


def test_ray_jobs_running_or_pending_are_active_asked_with_the_token(canned, tmp_path):
    url, bodies = canned
    token = tmp_path / "ray-token"
    token.write_text(f"{TOKEN}\n")
    bodies["/api/jobs/"] = json.dumps([
        {"submission_id": "raysubmit_1", "job_id": "01", "status": "RUNNING"},
        {"submission_id": None, "job_id": "02", "status": "PENDING"},
        {"submission_id": "raysubmit_3", "job_id": "03", "status": "SUCCEEDED"},
        {"submission_id": "raysubmit_4", "job_id": "04", "status": "FAILED"}]).encode()  # fmt: skip
    reading = sources.ray_jobs(url, token)
    assert reading.lines() == ["Ray job raysubmit_1 RUNNING", "Ray job 02 PENDING"]
    bodies["/api/jobs/"] = b"[]"
    assert sources.ray_jobs(url, str(token)).lines() == []


def test_ray_jobs_that_cannot_be_read_count_as_active(canned, tmp_path):
    url, bodies = canned
    bodies["/api/jobs/"] = b"[]"
    wrong = tmp_path / "wrong"
    wrong.write_text("guess")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert "401" in (sources.ray_jobs(url, wrong).error or "")  # refused: a wrong token
    assert "401" in (sources.ray_jobs(url, None).error or "")
    assert "is empty" in (sources.ray_jobs(url, empty).error or "")
    assert "FileNotFoundError" in (sources.ray_jobs(url, tmp_path / "none").error or "")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    bodies["/api/jobs/"] = b'{"jobs": []}'
    assert "not a list of jobs" in (sources.ray_jobs(url, token).error or "")


def _conn(local: tuple[str, int], remote: tuple[str, int] | tuple[()], status="ESTABLISHED",
          pid: int | None = 1) -> Conn:  # fmt: skip
    return Conn(Addr(*local), Addr(*remote) if remote else (), status, pid)


def test_ssh_sessions_from_outside_the_private_network_are_active():
    connections = [
        _conn(("10.0.1.5", 22), ("203.0.113.9", 50122)),  # a laptop
        _conn(("::ffff:10.0.1.5", 22), ("::ffff:198.51.100.7", 40000)),  # the same, IPv6
        _conn(("10.0.1.5", 22), ("10.0.2.8", 41000)),  # a worker of the cluster
        _conn(("127.0.0.1", 22), ("127.0.0.1", 42000)),  # this machine
        _conn(("10.0.1.5", 22), ("203.0.113.10", 43000), status="TIME_WAIT"),  # gone
        _conn(("0.0.0.0", 22), (), status="LISTEN"),
        _conn(("10.0.1.5", 44000), ("203.0.113.11", 22)),  # the master's own SSH out
    ]
    reading = sources.ssh_sessions("10.0.0.0/16", connections=connections)
    assert reading.lines() == ["SSH session from 203.0.113.9 (port 50122)",
                               "SSH session from 198.51.100.7 (port 40000)"]  # fmt: skip
    assert sources.ssh_sessions("10.0.0.0/16", 2222, connections).lines() == []


def test_ssh_sessions_that_cannot_be_read_count_as_active():
    assert "does not appear to be" in (sources.ssh_sessions("ten", connections=[]).error or "")
    odd = [Conn(Addr("10.0.1.5", 22), Addr("not an address", 1), "ESTABLISHED", 1)]
    assert "ValueError" in (sources.ssh_sessions("10.0.0.0/16", connections=odd).error or "")


def test_ssh_tunnels_to_the_dashboards_are_active_the_clusters_own_clients_are_not():
    names = {10: "sshd", 11: "sshd-session", 20: "python3"}
    connections = [
        # ssh -L 8265:127.0.0.1:8265: sshd (pid 10) connects to the Ray dashboard
        _conn(("127.0.0.1", 8265), ("127.0.0.1", 50001), pid=30),
        _conn(("127.0.0.1", 50001), ("127.0.0.1", 8265), pid=10),
        # OpenSSH 9.8+'s sshd-session, to Spark Connect over IPv6 loopback
        _conn(("::1", 15002), ("::1", 50002), pid=31),
        _conn(("::1", 50002), ("::1", 15002), pid=11),
        # a run's driver (python3) on the master, a client of Spark Connect
        _conn(("127.0.0.1", 15002), ("127.0.0.1", 50003), pid=31),
        _conn(("127.0.0.1", 50003), ("127.0.0.1", 15002), pid=20),
        # sshd to a port that is not watched
        _conn(("127.0.0.1", 9999), ("127.0.0.1", 50004), pid=32),
        _conn(("127.0.0.1", 50004), ("127.0.0.1", 9999), pid=10),
        # an other end that ended meanwhile
        _conn(("127.0.0.1", 8080), ("127.0.0.1", 50005), pid=30),
    ]
    reading = sources.tunnels([8080, 8265, 15002], connections, names.get)
    assert reading.error is None
    assert reading.lines() == ["SSH tunnel to port 8265 (sshd, pid 10)",
                               "SSH tunnel to port 15002 (sshd-session, pid 11)"]  # fmt: skip


def test_a_tunnel_whose_other_end_cannot_be_told_counts_as_active():
    connections = [_conn(("127.0.0.1", 8080), ("127.0.0.1", 50001), pid=None),
                   _conn(("127.0.0.1", 50001), ("127.0.0.1", 8080), pid=None)]  # fmt: skip
    reading = sources.tunnels([8080], connections, lambda pid: "sshd")
    assert reading.error == ("the process at the other end of a connection to port 8080 is "
                             "unknown: run the guard as root")  # fmt: skip

    def denied(pid: int) -> str:
        raise PermissionError("denied")

    connections[1] = connections[1]._replace(pid=10)
    assert "PermissionError" in (sources.tunnels([8080], connections, denied).error or "")


def test_this_machines_own_connections_are_read_without_error():
    """psutil for real (as the guard reads them): a reading, whatever this machine holds."""
    assert sources.ssh_sessions("10.0.0.0/16").error is None
    error = sources.tunnels([8080, 8265, 15002]).error
    assert error is None or error.endswith("is unknown: run the guard as root")
