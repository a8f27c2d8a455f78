"""The stall rule's arithmetic, with its readings given, and its readers against a real HTTP
server answering as the Spark master and the Ray dashboard do (the cluster tests kill real
daemons)."""

import http.server
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import psutil
import pytest

from clusterkit.runs.stall import StallWatch, ray_nodes, spark_workers
from clusterkit.runs.supervisor import _look
from clusterkit.services.health import spark_health


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(tmp_path: Path, clock: Clock, readings: dict[str, set[str]]) -> StallWatch:
    watch = StallWatch("r1", tmp_path, timeout_s=120, spark_master_ui="http://x",
                       ray_dashboard="http://y", clock=clock)  # fmt: skip

    def reader(engine: str) -> Callable[[], set[str]]:
        return lambda: readings[engine]

    watch.readers = {engine: reader(engine) for engine in readings}
    watch.uses = lambda: set(readings)  # type: ignore[method-assign]
    return watch


def test_a_worker_gone_longer_than_the_timeout_fails_the_run_naming_it(tmp_path):
    clock, readings = Clock(), {"spark": {"127.0.0.1:7078"}}
    watch = _watch(tmp_path, clock, readings)
    assert watch.tick() is None
    readings["spark"] = set()
    for clock.now in (2.0, 60.0, 121.0):
        assert watch.tick() is None  # 119 s without one: not yet
    clock.now = 122.5
    error = watch.tick()
    assert error is not None
    assert error.startswith("stalled: no Spark worker has been ALIVE for 120 s")
    assert "127.0.0.1:7078 at" in error and "`clusterkit up`" in error


def test_a_worker_that_comes_back_is_noted_and_the_run_goes_on(tmp_path):
    clock, readings = Clock(), {"spark": {"127.0.0.1:7078"}, "ray": {"127.0.0.1"}}
    watch = _watch(tmp_path, clock, readings)
    watch.tick()
    readings["spark"] = set()
    clock.now = 100.0
    assert watch.tick() is None
    readings["spark"] = {"127.0.0.1:7078"}
    clock.now = 200.0  # longer than the timeout in all, but never 120 s without a worker
    assert watch.tick() is None
    assert [n.split(" at ")[0] for n in watch.notes] == [  # in the run's record
        "Spark worker 127.0.0.1:7078 was lost", "Spark worker 127.0.0.1:7078 joined"]  # fmt: skip


def test_an_engine_the_run_does_not_use_is_not_watched(tmp_path):
    clock = Clock()
    watch = _watch(tmp_path, clock, {"spark": set(), "ray": set()})
    watch.uses = lambda: {"ray"}  # type: ignore[method-assign]
    watch.readers["ray"] = lambda: {"127.0.0.1"}
    for clock.now in (0.0, 500.0):
        assert watch.tick() is None
    assert watch.notes == []


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers each path with the body the test set (a real HTTP server on loopback)."""

    bodies: ClassVar[dict[str, bytes]] = {}
    seen_auth: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization"))
        body = self.bodies.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def canned() -> Iterator[tuple[str, type[_Canned]]]:
    handler = type("Handler", (_Canned,), {"bodies": {}, "seen_auth": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_the_spark_masters_alive_workers_are_read_by_id(canned):
    url, handler = canned
    handler.bodies["/json/"] = json.dumps({"workers": [
        {"id": "worker-1", "host": "127.0.0.1", "port": 7078, "state": "ALIVE"},
        {"id": "worker-0", "host": "127.0.0.1", "port": 7078, "state": "DEAD"},
        "not a worker"]}).encode()  # fmt: skip
    assert spark_workers(url) == {"worker-1"}
    handler.bodies["/json/"] = b"[1, 2]"  # an answer of another shape: no worker, no crash
    assert spark_workers(url) == set()
    handler.bodies["/json/"] = b"<html>"
    assert spark_workers(url) == set()
    assert spark_workers("http://127.0.0.1:1") == set()  # nothing listening


def test_the_ray_dashboards_alive_nodes_are_read_by_id_with_the_token(canned, tmp_path):
    url, handler = canned
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    handler.bodies["/nodes?view=summary"] = json.dumps({"data": {"summary": [
        {"raylet": {"nodeId": "n1", "nodeManagerAddress": "10.0.0.1", "state": "ALIVE"}},
        {"raylet": {"nodeId": "n0", "nodeManagerAddress": "10.0.0.1", "state": "DEAD"}},
        {"raylet": None, "ip": "10.0.0.2"}]}}).encode()  # fmt: skip
    assert ray_nodes(url, str(token)) == {"n1"}
    assert handler.seen_auth[-1] == "Bearer s3cret"
    handler.bodies["/nodes?view=summary"] = b'{"data": {"summary": null}}'
    assert ray_nodes(url, str(token)) == set()
    assert ray_nodes(url, str(tmp_path / "no-token")) == set()  # unreadable token: none


def test_a_look_that_raises_is_said_and_does_not_end_the_supervisor(tmp_path, capsys):
    watch = _watch(tmp_path, Clock(), {"spark": {"w"}})

    def broken() -> set[str]:
        raise AttributeError("'NoneType' object has no attribute 'get'")

    watch.readers["spark"] = broken
    assert _look(watch) is None
    assert "the stall check failed (AttributeError" in capsys.readouterr().err


def test_a_run_whose_connect_server_ends_fails_at_once_saying_so(tmp_path):
    """A stand-in server (a real process): found once the run attached to it; its end fails
    the run at the next look, whatever the workers say, and is noted."""
    server = subprocess.Popen(["sleep", "60"])
    try:
        watch = StallWatch("r1", tmp_path, timeout_s=120, spark_master_ui=None,
                           ray_dashboard=None, clock=Clock(),
                           find_server=lambda: psutil.Process(server.pid))  # fmt: skip
        assert watch.tick() is None  # not attached yet: nothing to watch
        (tmp_path / "shared.json").write_text("{}")
        assert watch.tick() is None  # attached: the server found
        assert watch.tick() is None and watch.server_lost is None
        server.kill()
        server.wait()
        error = watch.tick()
        assert error is not None and error == watch.server_lost
        assert error.startswith(f"the Spark Connect server this run worked on (pid {server.pid}) "
                                "ended at")  # fmt: skip
        assert watch.notes[-1].startswith(f"the Spark Connect server (pid {server.pid}) ended")
        assert watch.tick() == error  # it stays lost
    finally:
        server.kill()
        server.wait()


def test_status_counts_the_spark_workers_listed_dead_and_lists_the_others(canned):
    """A worker removed by `scale` (or restarted) stays DEAD in the master's list for a
    while: counted in the master's row, not a row of its own that would make status
    degraded."""
    url, handler = canned
    handler.bodies["/json/"] = json.dumps({"status": "ALIVE", "aliveworkers": 1, "workers": [
        {"id": "w2", "host": "10.0.2.11", "port": 7078, "state": "ALIVE", "cores": 2},
        {"id": "w1", "host": "10.0.2.11", "port": 7078, "state": "DEAD", "cores": 2}],
        "activeapps": []}).encode()  # fmt: skip
    rows = spark_health("spark://10.0.1.10:7077", url, "sc://localhost:15002")
    assert rows[0].detail == "status ALIVE, 1 alive worker(s) (1 dead before)"
    workers = [r for r in rows if r.name == "spark-worker"]
    assert [(r.state, r.info["id"]) for r in workers] == [("up", "w2")]
