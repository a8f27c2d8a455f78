"""The warm Spark session on the rehearsal's nodes: the Connect server as the master's
systemd unit (loopback, root-only token), reached from here only through `clusterkit tunnel`;
users' scripts copied to the master and run there by `submit`; `spark-submit` of Apache's
pi.py beside it; the notebook through its tunnel; and a killed server named, then restored by
`up`. (The runs in test_operations and test_netns_cluster use the warm session too: it is
the default.)"""

from __future__ import annotations

import collections
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyspark
import pytest

from clusterkit.services.playbooks import NODE_SPARK_CONF_DIR, NODE_SPARK_CONNECT_TOKEN
from tests.notebook_client import code_cells, run_cells
from tests.rehearsal.conftest import CLUSTERKIT, UP_ARGS, Rehearsal, sh

pytestmark = pytest.mark.rehearsal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PI = Path(pyspark.__file__).parent / "examples" / "src" / "main" / "python" / "pi.py"
PORT = 15002  # the spec's default

CLIENT = """
import os, sys
from pyspark.sql import SparkSession
os.environ.pop("SPARK_CONNECT_AUTHENTICATE_TOKEN", None)
if sys.argv[2] != "-":
    os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = sys.argv[2]
try:
    print("count", SparkSession.builder.remote(sys.argv[1]).getOrCreate().range(7).count())
except Exception as exc:
    print("refused", type(exc).__name__, str(exc).replace(chr(10), " ")[:300])
"""


def _client(url: str, token: str) -> str:
    out = subprocess.run([sys.executable, "-c", CLIENT, url, token], capture_output=True,
                         text=True, timeout=120)  # fmt: skip
    return (out.stdout.strip().splitlines() or [out.stderr[-300:]])[-1]


def _record(rehearsal: Rehearsal, *args: str) -> tuple[int, dict]:
    proc = rehearsal.ck("submit", "--json", *args, timeout=600)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _stdout(rehearsal: Rehearsal, run_id: str) -> str:
    logs = rehearsal.ck("logs", run_id)
    assert logs.returncode == 0, logs.stderr
    return logs.stdout


def test_the_connect_server_runs_on_the_master_only_on_loopback(rehearsal: Rehearsal):
    status = rehearsal.ck_json("status")
    connect = next(s for s in status["services"] if s["name"] == "spark-connect")
    assert connect["state"] == "up" and connect["address"] == f"sc://localhost:{PORT}"
    assert status["endpoints"]["spark_connect_url"] == f"sc://localhost:{PORT}"
    with rehearsal.connect("master") as master:
        assert sh(master, "systemctl is-active clusterkit-spark-connect") == "active"
        listening = sh(master, f"ss -Hltn 'sport = :{PORT}'").split()
        assert [w for w in listening if w.endswith(f":{PORT}")] in (
            [f"127.0.0.1:{PORT}"], [f"[::ffff:127.0.0.1]:{PORT}"])  # fmt: skip
        assert sh(master, f"stat -c '%a %U' {NODE_SPARK_CONNECT_TOKEN}") == "600 root"
        token = rehearsal.paths.spark_connect_token.read_text().strip()
        assert token not in sh(master, "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '")
    for name in rehearsal.layout.worker_names:  # on no worker
        with rehearsal.connect(name) as worker:
            assert sh(worker, f"ss -Hltn 'sport = :{PORT}' | wc -l") == "0", name
            assert sh(worker, f"test -e {NODE_SPARK_CONNECT_TOKEN} && echo yes || echo no") == (
                "no"), name  # fmt: skip


def test_through_the_tunnel_the_token_is_required(rehearsal: Rehearsal):
    proc = subprocess.Popen([CLUSTERKIT, "tunnel"], env=rehearsal.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url = None
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("forwarding"):
                break
            found = re.search(r"sc://localhost:\d+", line)
            url = found.group(0) if found else url
        assert url, "the tunnel printed no sc:// URL"
        assert "UNAUTHENTICATED" in _client(url, "-")
        assert "UNAUTHENTICATED" in _client(url, "f" * 64)
        assert _client(url, rehearsal.paths.spark_connect_token.read_text().strip()) == "count 7"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)


def test_submit_copies_the_workdir_to_the_master_and_runs_there(rehearsal, tmp_path: Path):
    work = tmp_path / "project"
    (work / ".git").mkdir(parents=True)
    (work / ".git" / "HEAD").write_text("ref: x\n")
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / ".venv" / "bin" / "python").write_text("not copied\n")
    (work / "data.txt").write_text("spark ray spark\n")
    (tmp_path / "shared.txt").write_text("ray\n")
    (work / "more.txt").symlink_to("../shared.txt")  # a link out of the folder: its file goes
    (work / "where.py").write_text(
        "import os, socket\nfrom pyspark.sql import SparkSession\n"
        "spark = SparkSession.builder.getOrCreate()\n"
        "words = open('data.txt').read().split() + open('more.txt').read().split()\n"
        "df = spark.createDataFrame([(w,) for w in words], 'w string')\n"
        "print('ran on', socket.gethostname(), sorted(os.listdir('.')),\n"
        "      sorted((r['w'], r['count']) for r in df.groupBy('w').count().collect()))\n"
        "spark.stop()  # a second session after the first is stopped: the same run\n"
        "print('again', SparkSession.builder.getOrCreate().range(3).count())\n"
    )
    code, record = _record(rehearsal, str(work / "where.py"))
    assert code == 0, record["error"]
    out = _stdout(rehearsal, record["id"])
    assert "ran on master ['data.txt', 'more.txt', 'where.py'] [('ray', 2), ('spark', 2)]" in out
    assert "again 3" in out
    assert record["spark_session"] == "warm"
    assert set(record["nodes"]) == set(rehearsal.layout.node_names), record["nodes"]
    with open(work / "big.bin", "wb") as big:  # sparse: 80 MiB said, nothing written
        big.truncate(80 * 1024**2)
    too_big = rehearsal.ck("submit", str(work / "where.py"))
    assert too_big.returncode == 2, too_big.stderr
    assert "over the limit" in too_big.stderr and "big.bin" in too_big.stderr


def test_the_examples_and_a_failure_through_submit(rehearsal: Rehearsal, tmp_path: Path):
    code, record = _record(rehearsal, str(EXAMPLES / "wordcount.py"), "--", "--top", "3")
    assert code == 0, record["error"]
    words = re.findall(r"[a-z']+", (EXAMPLES / "words.txt").read_text().lower())
    expected = sorted(collections.Counter(words).items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    printed = [line.split("\t") for line in _stdout(rehearsal, record["id"]).splitlines()
               if "\t" in line]  # fmt: skip
    assert [(w, int(n)) for w, n in printed] == expected
    code, record = _record(rehearsal, str(EXAMPLES / "ray_tasks_actors.py"))
    assert code == 0, record["error"]
    # the example counts the alive nodes (Ray keeps the one test_scale.py removed, dead):
    # every node of the cluster, as the status lists them
    counted = re.search(r"cluster nodes: (\d+);", _stdout(rehearsal, record["id"]))
    assert counted, _stdout(rehearsal, record["id"])
    rows = [r for r in rehearsal.ck_json("status")["services"] if r["name"] == "ray-node"]
    layout = rehearsal.layout
    alive = {r["address"].split(":")[0] for r in rows if r["state"] == "up"}
    assert alive == {layout.address_of(name) for name in layout.node_names}, rows
    assert int(counted.group(1)) == len(layout.node_names), rows
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('no input given')\n")
    code, record = _record(rehearsal, str(bad))
    assert code == 1 and record["status"] == "failed" and record["error"] == "no input given"


def test_pi_runs_classic_through_submit_and_warm_says_why_not(rehearsal: Rehearsal):
    code, record = _record(rehearsal, str(PI), "--spark-session", "classic", "--", "4")
    assert code == 0, record["error"]
    assert "Pi is roughly 3.1" in _stdout(rehearsal, record["id"])
    code, record = _record(rehearsal, str(PI))
    assert code == 1 and "--spark-session classic" in record["error"]


def test_spark_submit_of_pi_on_the_master_after_a_connect_job(rehearsal: Rehearsal):
    code, record = _record(rehearsal, str(EXAMPLES / "wordcount.py"))
    assert code == 0 and record["spark_session"] == "warm", record["error"]
    python = rehearsal.state.node_python
    submit = str(Path(python).parent / "spark-submit")
    with rehearsal.connect("master") as master:
        out = master.run(
            f"SPARK_CONF_DIR={NODE_SPARK_CONF_DIR} PYSPARK_PYTHON={python} {submit} "
            f"--master spark://{rehearsal.layout.master}:7077 {PI} 4", timeout=300, check=False
        )  # fmt: skip
    assert out.exit_code == 0, out.stderr[-2000:]
    assert "Pi is roughly 3.1" in out.stdout


def test_the_notebook_through_its_tunnel(rehearsal: Rehearsal):
    proc = subprocess.Popen([CLUSTERKIT, "notebook", "--port", "18888"], env=rehearsal.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None
        url = None
        for line in proc.stdout:
            found = re.search(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", line)
            if found:
                url = found.group(0)
                break
        assert url, proc.stderr.read() if proc.stderr else "no URL"
        base, token = url.split("/lab?token=")
        results = run_cells(base, token, code_cells(EXAMPLES / "cluster_tour.ipynb"))
        assert [r.error for r in results] == [None] * len(results), results
        text = "".join(r.stdout for r in results)
        assert "spark sum of squares: 333833500" in text and "actor total: 6" in text
        assert f"storage: {rehearsal.state.storage_root}" in text
        with rehearsal.connect("master") as master:
            assert sh(master, "ss -Hltn 'sport = :18888'").split()[3] == "127.0.0.1:18888"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    with rehearsal.connect("master") as master:
        assert sh(master, "pgrep -f '[p]ython.*-m jupyterlab' | wc -l") == "0"


@pytest.mark.slow  # about 2-3 min: `pytest -m slow` (docs/development.md)
def test_a_killed_connect_server_is_named_and_up_restores_it(rehearsal: Rehearsal):
    with rehearsal.connect("master") as master:
        master.run("pkill -KILL -f '[o]rg.apache.spark.sql.connect.service.SparkConnectServer'")
    deadline = time.monotonic() + 60
    while next(s for s in rehearsal.ck_json("status")["services"]
               if s["name"] == "spark-connect")["state"] == "up":  # fmt: skip
        assert time.monotonic() < deadline, "status still says the server is up"
        time.sleep(2)
    code, record = _record(rehearsal, str(EXAMPLES / "wordcount.py"))
    assert code == 1 and "Spark Connect server" in record["error"], record["error"]
    assert "clusterkit up" in record["error"]
    up = rehearsal.ck("up", *UP_ARGS)
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-2000:]
    code, record = _record(rehearsal, str(EXAMPLES / "wordcount.py"))
    assert code == 0, record["error"]
