"""`clusterkit submit` of users' own scripts and `clusterkit notebook` on the real local
cluster: the environment a script gets, its exit status as the run's, detach / logs / cancel,
bad input, per-run requirements, the RDD API through spark-submit, the examples, and the
notebook's kernel driven through the server's own API."""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pyspark
import pytest
import requests

from clusterkit.metrics.sampling import RunProcessFinder
from tests.conftest import BASE_PORT, LocalCluster, test_ports
from tests.notebook_client import code_cells, run_cells

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PI = Path(pyspark.__file__).parent / "examples" / "src" / "main" / "python" / "pi.py"

ENV_SCRIPT = """
import json, os, sys
from pyspark.sql import SparkSession
import ray
spark = SparkSession.builder.getOrCreate()
ray.init()
seen = {k: os.environ.get(k) for k in ("SPARK_REMOTE", "RAY_ADDRESS", "CLUSTERKIT_STORAGE")}
seen["count"] = spark.range(12).count()
seen["ray"] = ray.get(ray.remote(lambda: 6 * 7).remote())
seen["argv"] = sys.argv[1:]
seen["cwd"] = os.getcwd()
print("ENV " + json.dumps(seen))
"""


def _submit(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "clusterkit.cli", "submit", *args],
                          env={**cluster.env, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


def _record(cluster: LocalCluster, *args: str, env: dict[str, str] | None = None
            ) -> tuple[int, dict]:  # fmt: skip
    out = _submit(cluster, "--json", *args, env=env)
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def _stdout(record: dict) -> str:
    return Path(record["artifacts"], "stdout.log").read_text()


def test_a_script_gets_the_cluster_and_its_arguments(local_cluster: LocalCluster, tmp_path):
    script = tmp_path / "show_env.py"
    script.write_text(ENV_SCRIPT)
    code, record = _record(local_cluster, str(script), "--", "--flag", "x y", "--json")
    assert code == 0, record["error"]
    assert record["status"] == "succeeded" and record["job"] == "submit"
    seen = json.loads(_stdout(record).split("ENV ", 1)[1].splitlines()[0])
    status = local_cluster.status()
    assert seen["SPARK_REMOTE"].startswith(status["endpoints"]["spark_connect_url"])
    assert seen["RAY_ADDRESS"] == status["endpoints"]["ray_address"]
    assert seen["CLUSTERKIT_STORAGE"] == str(local_cluster.storage)
    assert seen["count"] == 12 and seen["ray"] == 42
    assert seen["argv"] == ["--flag", "x y", "--json"] and seen["cwd"] == str(tmp_path)
    assert record["result"]["exit_code"] == 0 and record["wall_s"] > 0
    assert record["peak_rss_bytes"] > 0 and record["nodes"]


def test_a_non_zero_exit_or_an_exception_fails_the_run(local_cluster, tmp_path: Path):
    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nprint('about to stop')\nsys.exit(3)\n")
    out = _submit(local_cluster, "--json", str(exits))
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout)
    assert record["status"] == "failed" and record["exit_code"] == 3, record
    assert "exited with code 3" in record["error"]
    raises = tmp_path / "raises.py"
    raises.write_text("def f():\n    raise KeyError('no such column: salary')\nf()\n")
    code, record = _record(local_cluster, str(raises))
    assert code == 1 and record["status"] == "failed"
    assert record["error"] == "KeyError: 'no such column: salary'"
    assert "Traceback" in Path(record["artifacts"], "stderr.log").read_text()


def test_detach_logs_follow_runs_and_cancel(local_cluster: LocalCluster, tmp_path: Path):
    script = tmp_path / "sleepy.py"  # hour-long Spark tasks on the shared server
    script.write_text(
        "import time\nfrom pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "def slow(batches):\n    import time\n    time.sleep(3600)\n    yield from batches\n"
        "print('sleepy: ready', flush=True)\n"
        "spark.range(0, 2, 1, 2).mapInArrow(slow, 'id long').collect()\n"
    )
    started = _submit(local_cluster, str(script), "--detach")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    follow = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "logs", run_id,
                               "--follow"], env=local_cluster.env, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert follow.stdout is not None
        deadline = time.monotonic() + 60
        for line in follow.stdout:
            if "sleepy: ready" in line:
                break
            assert time.monotonic() < deadline
        listed = {r["id"]: r for r in local_cluster.cli("runs", "--json").json()}
        assert listed[run_id]["status"] == "running" and listed[run_id]["job"] == "submit"
        time.sleep(5)  # its tasks now hold the server's executors
        cancelled = local_cluster.cli("cancel", run_id, "--json")
        assert cancelled.code == 0, cancelled.stderr
        assert cancelled.json()["status"] == "cancelled"
        follow.wait(timeout=60)  # the followed run ended: so does `logs --follow`
    finally:
        if follow.poll() is None:
            follow.kill()
    assert RunProcessFinder(run_id).find() == []
    assert not [p for p in psutil.process_iter(["cmdline"])
                if str(script) in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    # its Connect work was interrupted too: the next script gets the executors at once
    quick = tmp_path / "quick.py"
    quick.write_text("from pyspark.sql import SparkSession\n"
                     "print(SparkSession.builder.getOrCreate().range(10).count())\n")  # fmt: skip
    t0 = time.monotonic()
    code, record = _record(local_cluster, str(quick))
    assert code == 0 and record["status"] == "succeeded", record["error"]
    assert time.monotonic() - t0 < 90


def test_bad_input_exits_2_and_names_the_file(local_cluster: LocalCluster, tmp_path: Path):
    missing = _submit(local_cluster, str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and "nope.py: no such file" in missing.stderr
    text = tmp_path / "notes.txt"
    text.write_text("print(1)\n")
    not_python = _submit(local_cluster, str(text))
    assert not_python.returncode == 2 and "not a Python script" in not_python.stderr
    script = tmp_path / "job.py"
    script.write_text("print(1)\n")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    outside = _submit(local_cluster, str(script), "--workdir", str(elsewhere))
    assert outside.returncode == 2 and "is not inside --workdir" in outside.stderr
    with open(tmp_path / "big.bin", "wb") as big:  # sparse: 80 MiB said, nothing written
        big.truncate(80 * 1024**2)
    # here the script runs in place: nothing is copied, so no size limit (the rehearsal's
    # test_submit_copies_the_workdir_to_the_master_and_runs_there checks the limit)
    in_place = _submit(local_cluster, str(script))
    assert in_place.returncode == 0, in_place.stderr


def _local_wheel(tmp_path: Path) -> Path:
    """A tiny package's wheel, built here without an index."""
    project = tmp_path / "pkg"
    (project / "greeting_ck").mkdir(parents=True)
    (project / "greeting_ck" / "__init__.py").write_text(
        "def hello():\n    return 'hi from a wheel'\n"
    )
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "greeting-ck"\nversion = "1.0"\n'
    )
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                          "--no-build-isolation", "-q", "-w", str(tmp_path / "wheels"),
                          str(project)], capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return next((tmp_path / "wheels").glob("greeting_ck-*.whl"))


def test_requirements_go_into_an_environment_of_the_runs_own(local_cluster, tmp_path: Path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "uses_pkg.py").write_text(
        "import greeting_ck, pyspark\nprint(greeting_ck.hello(), pyspark.__version__)\n"
    )
    (work / "requirements.txt").write_text(f"{_local_wheel(tmp_path)}\n")
    code, record = _record(local_cluster, str(work / "uses_pkg.py"), "--requirements",
                           str(work / "requirements.txt"), env={"PIP_NO_INDEX": "1"})  # fmt: skip
    assert code == 0, record["error"]
    assert f"hi from a wheel {pyspark.__version__}" in _stdout(record)
    assert "requirements" in record["result"]["stages"]
    # the cluster's own environment did not get it
    probe = subprocess.run([sys.executable, "-c", "import greeting_ck"], capture_output=True)
    assert probe.returncode != 0
    (work / "requirements.txt").write_text("no-such-package-ck==9.9\n")
    code, record = _record(local_cluster, str(work / "uses_pkg.py"), "--requirements",
                           str(work / "requirements.txt"), env={"PIP_NO_INDEX": "1"})  # fmt: skip
    assert code == 1 and "--requirements" in record["error"], record["error"]


def test_the_stock_pi_runs_classic_and_warm_says_why_not(local_cluster: LocalCluster):
    code, record = _record(local_cluster, str(PI), "--spark-session", "classic", "--", "3")
    assert code == 0, record["error"]
    assert "Pi is roughly 3.1" in _stdout(record)
    assert record["spark_session"] == "classic"
    code, record = _record(local_cluster, str(PI))
    assert code == 1 and record["status"] == "failed"
    assert "RDD API" in record["error"] and "--spark-session classic" in record["error"]


def test_the_examples_run_through_submit(local_cluster: LocalCluster):
    code, record = _record(local_cluster, str(EXAMPLES / "wordcount.py"), "--", "--top", "4")
    assert code == 0, record["error"]
    words = re.findall(r"[a-z']+", (EXAMPLES / "words.txt").read_text().lower())
    expected = sorted(collections.Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:4]
    printed = [line.split("\t") for line in _stdout(record).splitlines() if "\t" in line]
    assert [(w, int(n)) for w, n in printed] == expected
    code, record = _record(local_cluster, str(EXAMPLES / "ray_tasks_actors.py"), "--",
                           "--tasks", "10")  # fmt: skip
    assert code == 0, record["error"]
    text = _stdout(record)
    assert "sum of squares: 285" in text and "actor total: 285" in text
    assert "cluster nodes: 1" in text


def _notebook_url(proc: subprocess.Popen, timeout_s: float = 120) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    for line in proc.stdout:
        found = re.search(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", line)
        if found:
            return found.group(0)
        assert time.monotonic() < deadline, "no URL printed"
    raise AssertionError(f"notebook exited: {proc.wait()}")


def _listening(port: int) -> list[str]:
    """The addresses something listens on at ``port`` on this machine."""
    return [c.laddr[0] for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] == port]  # fmt: skip


def test_the_notebook_runs_the_example_cells_and_stops_on_ctrl_c(local_cluster, tmp_path):
    port = test_ports(BASE_PORT)["spark_connect"] + 50
    proc = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "notebook", "--port",
                             str(port), "--dir", str(tmp_path)], env=local_cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = _notebook_url(proc)
        base, token = url.split("/lab?token=")
        assert set(_listening(port)) == {"127.0.0.1"}

        assert requests.get(f"{base}/api/kernels", timeout=10).status_code == 403
        results = run_cells(base, token, code_cells(EXAMPLES / "cluster_tour.ipynb"))
        assert [r.error for r in results] == [None] * len(results), results
        text = "".join(r.stdout for r in results)
        assert "spark sum of squares: 333833500" in text
        assert "dept eng average 110.0" in text and "dept ops average 92.5" in text
        assert "ray sum of squares: 333833500" in text and "actor total: 6" in text
        assert f"storage: {local_cluster.storage}" in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _listening(port) == []
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "jupyterlab" in " ".join(p.info["cmdline"] or [])]  # fmt: skip
