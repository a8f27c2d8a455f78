"""The live readings a console shows: stale services, node history, run store tails."""

from __future__ import annotations

import json
import time

import pytest

from clusterkit import catalog
from clusterkit.cluster import ParamsRefused, submit_job
from clusterkit.core.errors import NoCluster
from clusterkit.runs.launcher import RunWatcher
from clusterkit.runs.store import FolderRunStore
from clusterkit.runs.tails import LogTail, MetricsTail, Stage, stages
from clusterkit.services.health import ServiceHealth
from clusterkit.watch import HealthBoard, NodeHistory


def spark(state: str = "up", *, answered: bool = True) -> list[ServiceHealth]:
    if not answered:
        return [ServiceHealth("spark-master", "down", "spark://m:7077", None,
                              "not answering", answered=False)]  # fmt: skip
    return [ServiceHealth("spark-master", state, "spark://m:7077"),
            ServiceHealth("spark-worker", "up", "w:7078")]  # fmt: skip


def test_a_source_that_stops_answering_keeps_its_rows_as_stale_last_known():
    board = HealthBoard()
    board.update([*spark(), ServiceHealth("storage", "up", "/d")], now=100.0)
    assert not any(row.is_stale(100.5) for row in board.rows.values())
    board.update([*spark(answered=False), ServiceHealth("storage", "up", "/d")], now=103.0)
    master = board.rows["spark-master spark://m:7077"]
    worker = board.rows["spark-worker w:7078"]
    assert master.health.state == "down" and master.is_stale(103.0)
    assert worker.health.state == "up" and worker.is_stale(103.0)  # last known, marked
    assert worker.age_s(103.0) == 3.0  # since its source last answered
    assert not board.rows["storage /d"].is_stale(103.0)
    board.update(spark(), now=104.0)  # answering again: fresh rows
    assert not board.rows["spark-worker w:7078"].is_stale(104.0)


def test_a_row_gone_from_an_answering_source_is_dropped_and_old_readings_go_stale():
    board = HealthBoard()
    board.update(spark(), now=0.0)
    board.update(spark()[:1], now=1.0)  # the master answers and no longer lists the worker
    assert list(board.rows) == ["spark-master spark://m:7077"]
    assert board.rows["spark-master spark://m:7077"].is_stale(60.0)  # nobody read it since


def test_node_history_keeps_the_last_points():
    history = NodeHistory(points=3)
    for i in range(5):
        history.update([{"name": "n", "cpu_percent": i, "mem_percent": 10 * i}], now=float(i))
    assert list(history.cpu["n"]) == [2, 3, 4] and list(history.mem["n"]) == [20, 30, 40]
    assert history.read_at["n"] == 4.0


def test_metrics_tail_reads_only_complete_lines_and_keeps_the_peak(tmp_path):
    store = FolderRunStore(tmp_path)
    store.dir("r").mkdir()
    path = store.dir("r") / "metrics.jsonl"
    tail = MetricsTail(store, "r")
    assert tail.read() == 0  # no file yet
    first = json.dumps({"t": 1.0, "node": "a", "run_rss_bytes": 500})
    second = json.dumps({"t": 2.0, "node": "a", "run_rss_bytes": 300})
    path.write_text(first + "\n" + second[:10])  # the second line is being written
    assert tail.read() == 1 and tail.series == {"a": [(1.0, 500)]}
    path.write_text(first + "\n" + second + "\n")
    assert tail.read() == 1 and tail.series["a"] == [(1.0, 500), (2.0, 300)]
    assert tail.peak_rss_bytes == 500


def test_log_tail_returns_what_was_appended(tmp_path):
    store = FolderRunStore(tmp_path)
    store.dir("r").mkdir()
    (store.dir("r") / "stdout.log").write_text("one\n")
    tail = LogTail(store, "r")
    assert tail.read() == [("stdout.log", "one\n")]
    assert tail.read() == []
    with open(store.dir("r") / "stdout.log", "a") as out:
        out.write("two\n")
    (store.dir("r") / "stderr.log").write_text("warn\n")
    assert tail.read() == [("stdout.log", "two\n"), ("stderr.log", "warn\n")]


def test_stages_live_then_final(tmp_path):
    store = FolderRunStore(tmp_path)
    store.dir("r").mkdir()
    assert stages(store, "r") == []
    live = {"done": {"read": 1.5}, "current": "write", "since": 100.0}
    (store.dir("r") / "stages.json").write_text(json.dumps(live))
    assert stages(store, "r", now=104.0) == [
        Stage("read", 1.5), Stage("write", 4.0, running=True)]  # fmt: skip
    (store.dir("r") / "result.json").write_text(json.dumps({"stages": {"read": 1.5, "write": 6.0}}))
    assert stages(store, "r") == [Stage("read", 1.5), Stage("write", 6.0)]


def test_run_watcher_rereads_only_records_that_changed(tmp_path, monkeypatch):
    store = FolderRunStore(tmp_path)
    a = store.create(job="a", params={}, cluster="c", provider="local")
    store.create(job="b", params={}, cluster="c", provider="local")
    watcher = RunWatcher(store)
    assert sorted(r.job for r in watcher.poll()) == ["a", "b"]
    loads: list[str] = []
    real_load = store.load

    def counting_load(run_id):
        loads.append(run_id)
        return real_load(run_id)

    monkeypatch.setattr(store, "load", counting_load)
    watcher.poll()
    assert loads == []  # nothing changed, nothing read
    time.sleep(0.01)
    a.status, a.wall_s = "succeeded", 1.0
    store.save(a)
    assert {r.job: r.status for r in watcher.poll()} == {"a": "succeeded", "b": "queued"}
    assert loads == [a.id]


def test_form_arguments_are_the_changed_fields_checked_as_typed_ones(tmp_path, monkeypatch):
    texts = {"rows": "200k", "seed": "42", "partitions": "", "profile": "realistic",
             "name": "people", "overwrite": "true"}  # fmt: skip
    assert catalog.args_from_form("datagen", texts) == ["--rows=200k", "--overwrite=true"]
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path))  # no cluster known here
    bad = catalog.args_from_form("datagen", {"rows": "lots"})
    with pytest.raises(ParamsRefused, match="--rows of job datagen") as refused:
        submit_job("datagen", bad, cluster=NoCluster("no cluster is up"))
    assert refused.value.run_id is None  # no cluster up to record the attempt in


def test_a_node_that_did_not_answer_keeps_its_history_and_shows_its_error():
    history = NodeHistory(points=3)
    history.update([{"name": "w", "cpu_percent": 5.0, "mem_percent": 50.0}], now=1.0)
    history.update([{"name": "w", "address": "10.0.0.2", "roles": ["worker"],
                     "error": "node w did not answer"}], now=2.0)  # fmt: skip
    assert history.latest["w"]["error"] == "node w did not answer"
    assert list(history.cpu["w"]) == [5.0] and history.read_at["w"] == 1.0


def test_a_node_no_longer_sampled_is_forgotten():  # a worker `clusterkit scale` removed
    history = NodeHistory(points=3)
    sample = {"cpu_percent": 10.0, "mem_percent": 20.0}
    history.update([{"name": n, **sample} for n in ("master", "worker-1", "worker-2")], 1.0)
    history.update([{"name": n, **sample} for n in ("master", "worker-1")], 2.0)
    kept = {"master", "worker-1"}
    assert set(history.latest) == set(history.cpu) == set(history.read_at) == kept
    history.update([], 3.0)  # nothing read this time: nothing forgotten
    assert set(history.latest) == {"master", "worker-1"}
