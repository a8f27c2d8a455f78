import json
import os
import subprocess
import sys

from clusterkit.metrics import sampling as metrics

HOLD = [sys.executable, "-c", "import time; x = bytearray(50 * 1024 * 1024); time.sleep(30)"]


def test_finder_sees_only_marked_processes():
    marked = subprocess.Popen(HOLD, env={**os.environ, metrics.RUN_MARKER: "run-a"})
    other = subprocess.Popen(HOLD, env={**os.environ, metrics.RUN_MARKER: "run-b"})
    try:
        finder = metrics.RunProcessFinder("run-a")
        assert [p.pid for p in finder.find()] == [marked.pid]
        assert [p.pid for p in finder.find()] == [marked.pid]  # cached verdicts agree
    finally:
        marked.kill()
        other.kill()
        marked.wait()
        other.wait()
    assert metrics.RunProcessFinder("run-a").find() == []


def test_sampler_measures_the_run_while_it_runs():
    proc = subprocess.Popen(HOLD, env={**os.environ, metrics.RUN_MARKER: "run-m"})
    seen: list[dict] = []
    try:
        sampler = metrics.Sampler("run-m", node="n1", interval_s=0.1, on_sample=seen.append)
        sampler.start()
        import time

        time.sleep(0.8)
        peaks = sampler.stop()
    finally:
        proc.kill()
        proc.wait()
    assert peaks["samples"] >= 3 and len(seen) == peaks["samples"]
    assert peaks["peak_rss_bytes"] > 50 * 1024 * 1024  # the 50 MiB the process holds
    assert peaks["peak_rss_by_role"]["driver"] == peaks["peak_rss_bytes"]
    assert all(s["node"] == "n1" and s["mem_total_bytes"] > 0 for s in seen)


def test_node_side_entry_point_prints_json_lines():
    out = subprocess.run(
        [sys.executable, "-m", "clusterkit.metrics", "--run-id", "none", "--interval", "0.1",
         "--count", "2", "--node", "w1"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 2
    assert lines[0]["node"] == "w1" and lines[0]["run_processes"] == 0


def test_a_process_that_gets_the_marker_by_exec_after_fork_is_found():
    """raylet forks, then execs a Ray worker with the run's environment: a sample taken
    between the two must not hide the worker for the rest of the run."""
    script = (
        "import os, sys, time\n"
        "time.sleep(1.5)\n"  # the 'fork' half: no marker yet
        "env = dict(os.environ, CLUSTERKIT_RUN_ID='run-x')\n"
        "os.execve(sys.executable, [sys.executable, '-c', 'import time; time.sleep(30)'], env)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        finder = metrics.RunProcessFinder("run-x")
        assert finder.find() == []  # before the exec: not (yet) ours
        import time

        deadline = time.monotonic() + 10
        while not finder.find():
            assert time.monotonic() < deadline, "the exec'd process was never found"
            time.sleep(0.2)
        assert [p.pid for p in finder.find()] == [proc.pid]
    finally:
        proc.kill()
        proc.wait()


def _sample(node, t, rss, roles, used=1000):
    return {"node": node, "t": t, "run_rss_bytes": rss, "run_rss_by_role": roles,
            "mem_used_bytes": used}  # fmt: skip


def test_peaks_per_node_and_for_the_run_as_the_sum_of_each_nodes_latest_sample():
    peaks = metrics.Peaks()
    peaks.add(_sample("master", 1.0, 100, {"driver": 100}))
    peaks.add(_sample("worker", 1.1, 500, {"spark-executor": 500}))  # 100 + 500 together
    peaks.add(_sample("master", 2.0, 300, {"driver": 300}))  # 300 + 500: the run's peak
    peaks.add(_sample("worker", 2.1, 50, {"spark-executor": 50}, used=4000))  # 300 + 50
    assert peaks.peak_rss_bytes == 800
    assert peaks.peak_rss_by_role == {"driver": 300, "spark-executor": 500}
    nodes = peaks.nodes()
    assert nodes["master"]["peak_rss_bytes"] == 300 and nodes["master"]["samples"] == 2
    assert nodes["worker"]["peak_rss_by_role"] == {"spark-executor": 500}
    assert nodes["worker"]["peak_node_mem_used_bytes"] == 4000
    assert peaks.node("absent")["samples"] == 0


def test_a_process_of_no_known_role_is_the_default_role():
    assert metrics.process_role(["python", "-m", "jobs", "etl"]) == "driver"
    assert metrics.process_role(["sh", "-c", "x"], "other") == "other"
    assert metrics.process_role(["ray::throw"], "other") == "ray-worker"
