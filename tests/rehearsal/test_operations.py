"""Operating the rehearsal's cluster (a master and several workers) from this machine, as a
laptop would: exec, copy, ssh and tunnels; runs detached on the master that survive their SSH
connection and are reattached, cancelled, and sampled on every node; and every error a user
can run into.

The rehearsal's one cluster (conftest's ``rehearsal``), driven through the CLI; its jobs that
submit runs of their own (``suite``, ``bench``) run on the master like any other.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from clusterkit.core.state import Contexts
from clusterkit.providers.netns.topology import in_ns
from tests.rehearsal.conftest import CLUSTERKIT, NAME, Rehearsal

pytestmark = pytest.mark.rehearsal

RUNS_ON_NODE = "/var/lib/clusterkit/runs"


def _error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed; fails on a traceback or more lines."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def _prefixed(lines: dict[str, list[str]]) -> list[str]:
    """What `exec` prints of ``lines`` (by node), sorted: each line prefixed by its node's
    name, padded to the longest name of the nodes it ran on."""
    width = max(len(name) for name in lines)
    return sorted(f"[{name:<{width}}] {line}" for name, said in lines.items() for line in said)


def _on_each(rehearsal: Rehearsal, line: str) -> list[str]:
    """What `exec` prints when every node says ``line`` with NAME replaced by its name."""
    return _prefixed({n: [line.replace("NAME", n)] for n in rehearsal.layout.node_names})


def _run_processes(rehearsal: Rehearsal, run_id: str) -> dict[str, int]:
    """How many processes carry the run's marker on each node, sampled there by the node's
    own Python (the venv the playbooks made)."""
    python = rehearsal.state.node_python
    proc = rehearsal.ck("exec", "--json",
                        f"{python} -m clusterkit.metrics --run-id {run_id} --count 1")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {
        item["node"]: json.loads(item["line"])["run_processes"]
        for item in json.loads(proc.stdout)["output"]
        if item["stream"] == "out" and item["line"].startswith("{")
    }


def test_exec_runs_on_every_node_with_output_prefixed(rehearsal: Rehearsal):
    proc = rehearsal.ck("exec", "hostname; echo to-stderr >&2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(proc.stdout.splitlines()) == _on_each(rehearsal, "NAME")
    assert sorted(proc.stderr.splitlines()) == _on_each(rehearsal, "to-stderr")
    for name in rehearsal.layout.worker_names:
        only = rehearsal.ck("exec", "--node", name, "hostname")
        assert only.stdout.splitlines() == [f"[{name}] {name}"], only.stdout + only.stderr
    # `worker` still names the first worker, shown by its own name
    alias = rehearsal.ck("exec", "--node", "worker", "hostname")
    assert alias.stdout.splitlines() == ["[worker-1] worker-1"], alias.stdout + alias.stderr


def test_exec_fails_when_one_node_fails(rehearsal: Rehearsal):
    proc = rehearsal.ck("exec", "echo on $(hostname); test $(hostname) = master || exit 3")
    assert proc.returncode == 1
    assert sorted(proc.stdout.splitlines()) == _on_each(rehearsal, "on NAME")
    failed = ", ".join(f"{name} (exit 3)" for name in rehearsal.layout.worker_names)
    assert _error_line(proc) == f"error: the command failed on {failed}"


def test_copy_a_file_and_a_folder_then_read_them_on_every_node(rehearsal, tmp_path: Path):
    note = tmp_path / "note.txt"
    note.write_text("copied by clusterkit\n")
    note.chmod(0o640)
    proc = rehearsal.ck("copy", str(note), "/tmp/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = rehearsal.ck("exec", "cat /tmp/note.txt; stat -c %a /tmp/note.txt")
    assert sorted(shown.stdout.splitlines()) == _prefixed(
        {n: ["copied by clusterkit", "640"] for n in rehearsal.layout.node_names})  # fmt: skip
    folder = tmp_path / "conf"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_text("A")
    target = rehearsal.layout.worker_names[-1]  # one worker, not the first
    proc = rehearsal.ck("copy", str(folder), "/tmp/conf-copy", "--node", target)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    read = rehearsal.ck("exec", "cat /tmp/conf-copy/sub/a.txt", "--node", target)
    assert read.stdout.strip() == f"[{target}] A"
    # on that node only
    there = rehearsal.ck("exec", "test -e /tmp/conf-copy && echo there || echo absent")
    assert sorted(there.stdout.splitlines()) == _prefixed(
        {n: ["there" if n == target else "absent"] for n in rehearsal.layout.node_names}
    )  # fmt: skip
    rehearsal.ck("exec", "rm -rf /tmp/conf-copy", "--node", target)


def test_tunnel_serves_the_spark_masters_json_and_the_ray_dashboard_locally(rehearsal):
    proc = subprocess.Popen([CLUSTERKIT, "tunnel"], env=rehearsal.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        urls = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("forwarding"):
                break
            parts = line.split()
            if len(parts) >= 2 and parts[1].startswith("http://127.0.0.1:"):
                urls[parts[0]] = parts[1]
        assert set(urls) == {"spark_master_ui", "spark_worker_ui", "ray_dashboard"}, urls
        master = requests.get(f"{urls['spark_master_ui']}/json/", timeout=10).json()
        assert master["status"] == "ALIVE"
        workers = [rehearsal.layout.address_of(n) for n in rehearsal.layout.worker_names]
        assert sorted(w["host"] for w in master["workers"]) == sorted(workers)
        worker = requests.get(f"{urls['spark_worker_ui']}/json/", timeout=10).json()
        assert worker["masterurl"] == f"spark://{rehearsal.layout.master}:7077"
        token = rehearsal.paths.ray_token.read_text().strip()
        nodes = requests.get(f"{urls['ray_dashboard']}/nodes?view=summary", timeout=10,
                             headers={"Authorization": f"Bearer {token}"})  # fmt: skip
        assert nodes.status_code == 200
        refused = requests.get(f"{urls['ray_dashboard']}/nodes?view=summary", timeout=10)
        assert refused.status_code in (401, 403)  # the token is still needed
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_ssh_runs_a_command_on_each_worker_and_an_interactive_shell(rehearsal):
    for name in rehearsal.layout.worker_names:
        proc = rehearsal.ck("ssh", name, "--", "hostname")
        assert proc.returncode == 0 and proc.stdout.strip() == name, proc.stdout + proc.stderr
    alias = rehearsal.ck("ssh", "worker", "--", "hostname")  # `worker`: the first one
    assert alias.returncode == 0 and alias.stdout.strip() == "worker-1", alias.stdout
    last = rehearsal.layout.worker_names[-1]
    assert rehearsal.ck("ssh", last, "--", "exit", "7").returncode == 7
    # an interactive shell on a terminal (its controlling one), the way a user types into it
    pid, leader = pty.fork()
    if pid == 0:
        os.execve(CLUSTERKIT, [CLUSTERKIT, "ssh", last], rehearsal.env)
    seen = b""

    def read_until(marker: bytes, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while marker not in seen and time.monotonic() < deadline:
            if select.select([leader], [], [], 0.5)[0]:
                try:
                    seen += os.read(leader, 4096)
                except OSError:  # the terminal closed: the shell ended
                    return

    exit_code = None
    try:
        # type once the remote prompt shows: the terminal's pending input is flushed when
        # the client puts it in raw mode
        read_until(b"# ", 30)
        os.write(leader, b"echo on-$(hostname)-via-shell; exit 0\n")
        deadline = time.monotonic() + 30
        while exit_code is None and time.monotonic() < deadline:
            read_until(b"logout", 0.5)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                exit_code = os.waitstatus_to_exitcode(status)
    finally:
        if exit_code is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(leader)
    assert exit_code == 0, seen
    assert f"on-{last}-via-shell".encode() in seen, seen


def _wait_running(rehearsal: Rehearsal, run_id: str | None = None) -> dict:
    """The newest run (or ``run_id``) once the master's supervisor says it is running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        listed = rehearsal.ck_json("runs")
        record = next((r for r in listed if r["id"] == run_id), None) if run_id else listed[-1]
        if record and record["status"] == "running":
            return record
        time.sleep(1)
    raise AssertionError(f"no run went running: {listed[-3:]}")


def test_a_run_survives_its_ssh_connection_and_is_reattached(rehearsal, tmp_path: Path):
    made = rehearsal.ck_json("run", "datagen", "--rows", "1M", "--overwrite")
    assert made["status"] == "succeeded", made
    client = subprocess.Popen([CLUSTERKIT, "run", "etl", "--overwrite"], env=rehearsal.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              start_new_session=True)  # fmt: skip
    record = _wait_running(rehearsal)
    assert record["job"] == "etl" and record["supervisor"]["node"] == "master"
    os.killpg(client.pid, signal.SIGKILL)  # the laptop closes: its SSH connection drops
    client.wait(timeout=10)
    time.sleep(3)
    alive = rehearsal.ck("exec", "--node", "master", f"kill -0 {record['supervisor']['pid']}")
    assert alive.returncode == 0, "the run's supervisor died with the connection"
    assert rehearsal.ck_json("runs")[-1]["status"] == "running"

    follow = rehearsal.ck("logs", record["id"], "--follow")  # reattach, to the end
    assert follow.returncode == 0, follow.stderr[-2000:]
    assert "etl" in follow.stdout + follow.stderr
    final = rehearsal.ck_json("runs")[-1]
    assert final["status"] == "succeeded", final
    local = rehearsal.paths.runs / record["id"]
    result = json.loads((local / "result.json").read_text())
    assert result["rows"] == 1_000_000

    # sampled on every node: the driver on the master, Spark's executors on the workers (the
    # warm session's, shared: named so in the record). The session's dynamic allocation asks
    # for as many executors as the tasks need: at least one worker has one, maybe not all
    nodes = final["nodes"]
    workers = rehearsal.layout.worker_names
    executor = "shared spark-executor"
    assert set(nodes) == set(rehearsal.layout.node_names), nodes
    assert all(nodes[n]["samples"] >= 5 for n in rehearsal.layout.node_names), nodes
    executors = {w: nodes[w]["peak_rss_by_role"].get(executor, 0) for w in workers}
    assert max(executors.values()) > 100 * 2**20, nodes
    assert nodes["master"]["peak_rss_by_role"].get(executor, 0) == 0, nodes
    assert nodes["master"]["peak_rss_by_role"].get("shared spark-connect-server", 0) > 0, nodes
    assert final["shared_processes"] == {
        "master": ["spark-connect-server"],
        **{w: ["spark-executor"] for w, peak in executors.items() if peak > 0},
    }, final  # fmt: skip
    assert nodes["master"]["peak_rss_by_role"].get("driver", 0) > 0
    samples = [json.loads(line) for line in (local / "metrics.jsonl").read_text().splitlines()]
    executor_on_worker = [s for s in samples if s["node"] in workers
                          and s["run_rss_by_role"].get(executor, 0) > 0]  # fmt: skip
    assert executor_on_worker, "no worker sample saw an executor"
    assert final["peak_rss_bytes"] >= max(executors.values())
    assert result["peak_rss_by_node"] == {n: v["peak_rss_bytes"] for n, v in nodes.items()}

    # a second laptop with the cluster's state but none of its run copies sees the same runs
    other = tmp_path / "laptop2"
    state = other / "clusters" / NAME
    shutil.copytree(rehearsal.paths.root, state, ignore=shutil.ignore_patterns("runs", "nodes"))
    Contexts(other).add(NAME, state)
    env = {**rehearsal.env, "CLUSTERKIT_HOME": str(other)}
    second = subprocess.run([CLUSTERKIT, "runs", "--json"], capture_output=True, text=True,
                            env=env, timeout=120)  # fmt: skip
    assert second.returncode == 0, second.stderr
    mine = {r["id"]: r["status"] for r in rehearsal.ck_json("runs")}
    theirs = {r["id"]: r["status"] for r in json.loads(second.stdout)}
    assert theirs == mine
    assert (state / "runs" / record["id"] / "stdout.log").read_bytes() == (
        local / "stdout.log"
    ).read_bytes()


def test_a_cancelled_run_leaves_no_process_on_any_node(rehearsal: Rehearsal):
    # minutes of Monte Carlo tasks (8, more than the cluster's CPUs), spread over every node's
    # Ray workers
    run_id = rehearsal.ck("run", "ray-pi", "--samples", "3000000000", "--tasks", "8",
                          "--detach").stdout.strip()  # fmt: skip
    assert run_id, "no run id printed"
    _wait_running(rehearsal, run_id)
    deadline = time.monotonic() + 120
    names = rehearsal.layout.node_names
    while time.monotonic() < deadline:  # until Ray workers of the run run on every node
        counts = _run_processes(rehearsal, run_id)
        if all(counts.get(name, 0) > 0 for name in names):
            break
        time.sleep(2)
    assert all(counts.get(name, 0) > 0 for name in rehearsal.layout.worker_names), counts
    cancelled = rehearsal.ck_json("cancel", run_id)
    assert cancelled["status"] == "cancelled" and cancelled["error"] == "cancelled by the user"
    assert _run_processes(rehearsal, run_id) == dict.fromkeys(names, 0)
    left = rehearsal.ck("exec", f"pgrep -af {run_id} | grep -v pgrep || true")
    assert left.stdout.strip() == "", left.stdout
    on_master = rehearsal.ck("exec", "--node", "master", f"cat {RUNS_ON_NODE}/{run_id}/record.json")
    assert '"status": "cancelled"' in on_master.stdout


def test_a_run_whose_supervisor_dies_is_recorded_failed_and_its_processes_stopped(rehearsal):
    run_id = rehearsal.ck("run", "ray-pi", "--samples", "3000000000", "--tasks", "8",
                          "--detach").stdout.strip()  # fmt: skip
    record = _wait_running(rehearsal, run_id)
    killed = rehearsal.ck("exec", "--node", "master", f"kill -9 {record['supervisor']['pid']}")
    assert killed.returncode == 0, killed.stderr
    listed = {r["id"]: r for r in rehearsal.ck_json("runs")}
    assert listed[run_id]["status"] == "failed"
    assert (
        listed[run_id]["error"]
        == "the run's supervisor on master is gone; its processes were stopped"
    )
    assert _run_processes(rehearsal, run_id) == dict.fromkeys(rehearsal.layout.node_names, 0)


@pytest.mark.slow  # about 2.5 min: `pytest -m slow` (docs/development.md)
@pytest.mark.timeout(1800)
def test_a_suite_runs_on_the_master_with_its_steps_as_runs_of_their_own(rehearsal):
    record = rehearsal.ck_json("run", "suite", "--rows", "20k", "--no-digits", timeout=1800)
    assert record["status"] == "succeeded", record
    steps = [r for r in rehearsal.ck_json("runs") if r["parent"] == record["id"]]
    assert [r["job"] for r in steps] == [
        "datagen", "etl", "top-earners", "age-extremes", "train", "predict"
    ]  # fmt: skip
    assert all(r["status"] == "succeeded" for r in steps), steps
    assert all(r["supervisor"]["node"] == "master" for r in steps)
    assert sorted(record["children"]) == sorted(r["id"] for r in steps)
    assert [row["run"] for row in record["result"]["steps"]] == [r["id"] for r in steps]
    on_master = rehearsal.ck("exec", "--node", "master", f"ls {RUNS_ON_NODE}").stdout
    assert all(f"[master] {r['id']}" in on_master for r in [record, *steps]), on_master
    # a second home, holding none of the run copies, sees the suite and its steps
    other = rehearsal.home.parent / "laptop-suite"
    state = other / "clusters" / NAME
    shutil.copytree(rehearsal.paths.root, state, ignore=shutil.ignore_patterns("runs", "nodes"))
    Contexts(other).add(NAME, state)
    theirs = rehearsal.ck("runs", "--json", env={**rehearsal.env, "CLUSTERKIT_HOME": str(other)})
    seen = {r["id"]: r["parent"] for r in json.loads(theirs.stdout)}
    assert {r["id"] for r in steps} <= set(seen) and seen[steps[0]["id"]] == record["id"]


@pytest.mark.timeout(1800)
def test_bench_on_the_rehearsal_produces_its_table(rehearsal: Rehearsal):
    record = rehearsal.ck_json("bench", "--sizes", "20k", "--engines", "spark,duckdb",
                               "--repeats", "1", timeout=1800)  # fmt: skip
    assert record["status"] == "succeeded", record
    table = record["result"]["table"]
    assert {(r["job"], r["engine"]) for r in table} == {
        (j, e) for j in ("etl", "top-earners", "age-extremes") for e in ("spark", "duckdb")
    }
    for row in table:
        assert row["rows"] == 20_000 and row["runs"] == 1 and row["failed"] == 0, row
        assert row["median_s"] > 0 and row["ratio_to_fastest"] >= 1.0, row
    copied = rehearsal.paths.runs / record["id"] / "bench.md"  # fetched from the master
    assert len(copied.read_text().splitlines()) == 2 + 6
    children = [r for r in rehearsal.ck_json("runs") if r["parent"] == record["id"]]
    timed = [r for r in children if "/bench/" in r["params"].get("output", "")]
    assert len(timed) == 6 and all(r["status"] == "succeeded" for r in timed)


def test_errors_name_the_cluster_or_node_and_exit_1_or_2(rehearsal, tmp_path: Path):
    unknown = rehearsal.ck("exec", "--cluster", "nosuch", "hostname")
    assert unknown.returncode == 1
    assert "no cluster named 'nosuch'" in _error_line(unknown)
    Contexts(rehearsal.home).add("gone", tmp_path / "gone", make_current=False)
    down = rehearsal.ck("tunnel", "--cluster", "gone")
    assert down.returncode == 1 and "cluster 'gone' is down" in _error_line(down)
    for usage in (["exec"], ["copy", "only-one-arg"], ["tunnel", "--bogus"], ["exec", "--node"]):
        proc = rehearsal.ck(*usage)
        assert proc.returncode == 2, (usage, proc.stderr)
    bad_node = rehearsal.ck("ssh", "nosuch")
    assert bad_node.returncode == 2
    known = ", ".join(rehearsal.layout.node_names)  # master, worker-1, worker-2
    assert f"has no node 'nosuch'; its nodes: {known}" in _error_line(bad_node)
    missing = rehearsal.ck("copy", str(tmp_path / "absent.txt"), "/tmp/")
    assert missing.returncode == 2 and "absent.txt: no such file" in _error_line(missing)

    # one worker (the last) stops answering SSH: named, with what to do; the master and the
    # other workers still work
    layout = rehearsal.layout
    lost = layout.worker_names[-1]
    others = [n for n in layout.node_names if n != lost]
    lost_ns = layout.ns(lost)
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT"]
    subprocess.run(in_ns(lost_ns, "iptables", "-I", *rule), check=True)
    try:
        proc = rehearsal.ck("ssh", lost, "--", "hostname")
        assert proc.returncode == 1
        said = _error_line(proc)
        assert f"node {lost} ({layout.address_of(lost)} through master)" in said, said
        assert "clusterkit status" in said
        every = rehearsal.ck("exec", "hostname")
        assert every.returncode == 1, every.stdout + every.stderr
        answered = [ln for ln in _on_each(rehearsal, "NAME") if not ln.startswith(f"[{lost}]")]
        assert sorted(every.stdout.splitlines()) == answered, every.stdout
        assert f"the command failed on {lost} (unreachable)" in every.stderr
        status = rehearsal.ck_json("status")
        rows = {n["name"]: n for n in status["nodes"]}
        assert "error" in rows[lost] and not any("error" in rows[n] for n in others), rows
    finally:
        subprocess.run(in_ns(lost_ns, "iptables", "-D", *rule), check=True)
    assert rehearsal.ck("exec", "hostname").returncode == 0


def test_the_operators_ssh_config_and_agent_never_reach_the_nodes(rehearsal, tmp_path: Path):
    """An ~/.ssh/config that would send the kit elsewhere (another user, port and key) and
    forward the operator's agent, with an agent running: the kit's SSH reads none of it."""
    home = tmp_path / "operator"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text(
        "Host *\n  User nobody\n  Port 2222\n  IdentityFile /nonexistent\n"
        "  ForwardAgent yes\n  ProxyJump nowhere.invalid\n"
    )
    agent = subprocess.run(["ssh-agent", "-a", str(tmp_path / "agent.sock")],
                           capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(agent.stdout.split("SSH_AGENT_PID=")[1].split(";")[0])
    try:
        env = {**rehearsal.env, "HOME": str(home), "SSH_AUTH_SOCK": str(tmp_path / "agent.sock")}
        proc = rehearsal.ck("exec", "echo agent=${SSH_AUTH_SOCK:-none} user=$(id -un)", env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert sorted(proc.stdout.splitlines()) == _on_each(rehearsal, "agent=none user=root")
    finally:
        os.kill(pid, signal.SIGTERM)


def test_a_command_out_of_time_is_ended_on_the_node_itself(rehearsal: Rehearsal):
    proc = rehearsal.ck("exec", "--timeout", "2", "sleep 97; echo late")
    assert proc.returncode == 1 and "late" not in proc.stdout, proc.stdout + proc.stderr
    for name in rehearsal.layout.node_names:  # each node timed out on its own
        assert f"did not end on {name} within 2 s" in proc.stderr, proc.stderr
    time.sleep(1)
    left = rehearsal.ck("exec", "pgrep -f 'sleep 9[7]' || true")  # not matching itself
    assert left.stdout.strip() == "", left.stdout  # not left running on any node


@pytest.mark.timeout(1500)
def test_lenet_trains_with_its_two_workers_on_two_nodes(rehearsal):
    """Ray Train across the rehearsal's nodes: the workers' gloo ring over the private
    network, each worker on a node of its own (shown by the node ids in the record)."""
    for job, *args in (("datagen-digits", "--rows", "2k", "--test-rows", "500", "--overwrite"),
                       ("digits-etl", "--engine", "duckdb", "--overwrite")):  # fmt: skip
        made = rehearsal.ck_json("run", job, *args, timeout=900)
        assert made["status"] == "succeeded", made
    record = rehearsal.ck_json("run", "lenet", "--workers", "2", "--epochs", "1",
                               "--batch-size", "128", timeout=1200)  # fmt: skip
    assert record["status"] == "succeeded", record
    result = record["result"]
    workers = result["workers"]
    assert [w["rank"] for w in workers] == [0, 1]
    assert len({w["node_id"] for w in workers}) == 2, workers
    assert len({w["node_ip"] for w in workers}) == 2, workers  # two hosts, not two ids of one
    hosts = {w["hostname"] for w in workers}
    assert len(hosts) == 2 and hosts <= {f"{NAME}-{n}" for n in rehearsal.layout.node_names} | set(
        rehearsal.layout.node_names), hosts  # fmt: skip
    assert result["epochs"][0]["images_per_s"] > 0 and result["test_accuracy"] > 0.3


def test_doctor_on_the_healthy_rehearsal_is_ok_everywhere(rehearsal: Rehearsal):
    report = rehearsal.ck_json("doctor")
    assert report["cluster"] == NAME and report["ok"] is True
    assert {"cluster", "python", "disk", "state", "ssh", "clock", "pythons", "nat", "hdfs", "idle",
            "drift"} <= {c["check"] for c in report["checks"]}  # fmt: skip
    assert [c for c in report["checks"] if c["status"] != "ok"] == [], report["checks"]


def test_env_shows_the_same_installed_packages_on_every_node(rehearsal: Rehearsal):
    """The lock: every node's Python has the same packages (one hash), which meet the pinned
    set; `up` wrote the same into the state folder, which runs copy into their records."""
    data = rehearsal.ck_json("env")
    lock = data["lock"]
    nodes = lock["nodes"]
    assert set(nodes) == set(rehearsal.layout.node_names), nodes
    hashes = {node["hash"] for node in nodes.values()}
    assert len(hashes) == 1 and None not in hashes, nodes
    assert all(node["matches"] for node in nodes.values()), nodes
    assert lock["same"] is True and len(lock["hash"]) == 64 and lock["packages"]
    versions = data["versions"]
    assert versions["python"] and versions["spark"] and versions["ray"] and versions["java"]
    assert data["variables"]["RAY_ADDRESS"].startswith(rehearsal.inventory.driver().address)
    written = json.loads((rehearsal.paths.root / "lock.json").read_text())
    assert written["hash"] == lock["hash"]
    assert {name: node["hash"] for name, node in written["nodes"].items()} == {
        name: node["hash"] for name, node in nodes.items()}  # fmt: skip
    human = rehearsal.ck("env")
    assert human.returncode == 0, human.stderr
    assert "every node has the same installed packages" in human.stdout
