"""`clusterkit up --provider netns`: the playbooks on the rehearsal's two nodes, proven.

The rehearsal's one cluster (conftest's ``rehearsal``), brought up through the CLI as a user
would; every check reads the nodes over SSH or the services through their own APIs.
``test_teardown.py`` takes it down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from clusterkit.cluster import Cluster
from clusterkit.providers.netns import nodes, topology
from clusterkit.providers.netns.topology import in_ns
from clusterkit.services.playbooks import PlaybookServices, ProvisionError, run_playbook
from tests.rehearsal import probes
from tests.rehearsal.conftest import CLUSTERKIT, Rehearsal, sh
from tests.rehearsal.test_topology import PORT, SERVE

#: every service port of the default spec, plus HDFS's (absent here, and closed either way)
SERVICE_PORTS = [7077, 8080, 6379, 8265, 10001, 6380, 6381, 9000, 9870]

pytestmark = pytest.mark.rehearsal


def test_up_reports_progress_and_the_private_endpoints(rehearsal):
    status = rehearsal.ck_json("status")
    assert status["provider"] == "netns" and status["state"] == "up", status
    assert status["endpoints"]["spark_master_url"] == f"spark://{rehearsal.layout.master}:7077"
    names = {n["name"]: n for n in status["nodes"]}
    assert set(names) == {"master", "worker"}
    for node in names.values():  # sampled on each node itself, over SSH
        assert node["mem_total_bytes"] > 0 and node["cpu_count"] >= 1, node


def test_spark_master_on_the_private_address_lists_the_worker_by_its_ip(rehearsal):
    rows = rehearsal.ck_json("status")["services"]
    master = [r for r in rows if r["name"] == "spark-master"]
    workers = [r for r in rows if r["name"] == "spark-worker"]
    assert [m["address"] for m in master] == [f"spark://{rehearsal.layout.master}:7077"]
    assert [(w["state"], w["address"]) for w in workers] == [
        ("up", f"{rehearsal.layout.worker}:7078")
    ]
    with rehearsal.connect("master") as c:
        assert f"{rehearsal.layout.master}]:7077" in sh(c, "ss -Hltn 'sport = :7077'")
        assert "spark.master.rest.enabled      false" in sh(
            c, "cat /etc/clusterkit/spark/spark-defaults.conf"
        )


def test_ray_lists_both_nodes_with_token_auth(rehearsal):
    rows = rehearsal.ck_json("status")["services"]
    ray_nodes = sorted(r["address"] for r in rows if r["name"] == "ray-node" and r["state"] == "up")
    assert ray_nodes == [f"{rehearsal.layout.master}:6380", f"{rehearsal.layout.worker}:6380"]
    with rehearsal.connect("master") as c:  # without the token the dashboard refuses
        url = f"http://{rehearsal.layout.master}:8265/nodes?view=summary"
        code = sh(c, f"python3 -c \"import urllib.request as u, urllib.error as e\n"
                     f"try: u.urlopen('{url}', timeout=5); print(200)\n"
                     f"except e.HTTPError as x: print(x.code)\"")  # fmt: skip
    assert code in {"401", "403"}, code


def test_a_suite_job_runs_with_its_executors_on_the_worker(rehearsal):
    made = rehearsal.ck_json("run", "datagen", "--rows", "100k")
    assert made["status"] == "succeeded", made
    record = rehearsal.ck_json("run", "etl")
    assert record["status"] == "succeeded", record
    local = rehearsal.paths.runs / record["id"]
    result = json.loads((local / "result.json").read_text())  # fetched back from the master
    assert result["rows"] == 100_000
    with rehearsal.connect("master") as c:
        # etl is the module's one Spark application; Spark 4 keeps its events zstd-compressed
        events = sh(c, "zstdcat /var/lib/clusterkit/spark/events/*/events_* "
                       "| grep -a SparkListenerExecutorAdded")  # fmt: skip
    hosts = {json.loads(line)["Executor Info"]["Host"] for line in events.splitlines()}
    assert hosts == {rehearsal.layout.worker}, events[:500]


def test_from_the_operator_side_only_ssh_answers(rehearsal):
    layout = rehearsal.layout
    with rehearsal.connect("master") as c:  # the services do listen there...
        listening = sh(c, "ss -Hltn")
    for port in (7077, 8080, 6379, 8265, 10001):
        assert f":{port} " in listening, (port, listening)
    # ...but from this shell (the master's address only) the firewall lets only SSH in
    assert probes.connect(None, layout.master, 22) == "open"
    dropped = {p: probes.connect(None, layout.master, p, timeout=1.5) for p in SERVICE_PORTS}
    assert dropped == dict.fromkeys(SERVICE_PORTS, "timeout")
    # the private subnet: refused by this machine's route table (nothing is sent), and by
    # the router for the internet's side, probed from the outside namespace
    assert topology.route_of(layout.worker) == "unreachable"
    assert probes.connect(layout.ns("outside"), layout.worker, 22) == "unreachable EHOSTUNREACH"
    assert probes.connect(layout.ns("outside"), layout.master, 22) == "open"


def test_hosts_and_hostnames(rehearsal):
    layout = rehearsal.layout
    for name in nodes.NODES:
        with rehearsal.connect(name) as c:
            hosts = sh(c, "cat /etc/hosts")
            assert f"{layout.master} master" in hosts and f"{layout.worker} worker" in hosts
            assert "127.0.1.1" not in hosts
            assert sh(c, "hostname") == name == sh(c, "cat /etc/hostname")


def test_ssh_master_to_worker_needs_no_password(rehearsal):
    with rehearsal.connect("master") as c:
        assert sh(c, "ssh -o BatchMode=yes worker hostname") == "worker"
        assert sh(c, f"ssh -o BatchMode=yes {rehearsal.layout.worker} hostname") == "worker"


def _fetch_from_worker(rehearsal: Rehearsal) -> str:
    """GET the outside's server from the worker's network namespace: ``answer BODY``,
    ``refused``, ``unreachable ERRNO`` or ``timeout``."""
    return probes.fetch(rehearsal.layout.ns("worker"), rehearsal.layout.outside, PORT)


def test_the_worker_reaches_outside_only_through_the_masters_nat(rehearsal):
    layout = rehearsal.layout
    server = subprocess.Popen(in_ns(layout.ns("outside"), sys.executable, "-c", SERVE,
                                    layout.outside, str(PORT), "outside"))  # fmt: skip
    masquerade = (f"POSTROUTING -s {layout.private_subnet} -o eth0 "
                  f"-m comment --comment 'clusterkit nat' -j MASQUERADE")  # fmt: skip
    try:
        time.sleep(1.0)
        expected = f"answer hello from outside, you are {layout.master}"
        assert _fetch_from_worker(rehearsal) == expected
        with rehearsal.connect("master") as c:
            assert "MASQUERADE" in sh(c, "cat /etc/iptables/rules.v4")
            assert sh(c, "sysctl -n net.ipv4.conf.eth0.send_redirects") == "0"
            sh(c, f"iptables -t nat -D {masquerade}")  # NAT off
        try:  # forwarded unmasqueraded: the private route table sends it back to the master
            assert _fetch_from_worker(rehearsal) == "unreachable EHOSTUNREACH"
        finally:
            with rehearsal.connect("master") as c:  # on again, exactly as the role made it
                sh(c, f"iptables -t nat -A {masquerade}")
        assert _fetch_from_worker(rehearsal) == expected
    finally:
        server.terminate()
        server.wait(timeout=10)
    with rehearsal.connect("worker") as c:  # the worker's own default route is left alone
        assert sh(c, "ip route show default") == f"default via {layout.router_private} dev eth0"


def test_provision_again_changes_nothing(rehearsal):
    report = rehearsal.ck_json("provision")
    assert report["total_changed"] == 0, report
    assert set(report["changed"]) == {"master", "worker"}


def test_a_failed_task_names_host_role_and_task(rehearsal, tmp_path: Path):
    cluster = Cluster.of(rehearsal.state, rehearsal.paths)
    assert isinstance(cluster.services, PlaybookServices)
    inventory = cluster.services.inventory(rehearsal.state)
    variables = {**inventory["all"]["vars"], "common_packages": ["no-such-package-ck"]}
    broken = {"all": {**inventory["all"], "vars": variables}}
    with pytest.raises(ProvisionError, match=r"role common, task 'Install the base"):
        run_playbook(broken, work_dir=tmp_path / "ansible")


def test_without_root_up_says_so_in_one_line():
    home = Path(tempfile.mkdtemp(prefix="ck-nonroot-"))  # pytest's own folders are root's only
    os.chmod(home, 0o777)
    proc = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
         CLUSTERKIT, "up", "--provider", "netns", "--name", "nonroot"],
        env={**os.environ, "CLUSTERKIT_HOME": str(home), "HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "needs Linux and root" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    shutil.rmtree(home)


def test_dry_run_checks_the_machine_and_starts_nothing(tmp_path: Path):
    env = {**os.environ, "CLUSTERKIT_HOME": str(tmp_path)}
    before = topology.existing_namespaces()
    proc = subprocess.run([CLUSTERKIT, "up", "--provider", "netns", "--name", "dry", "--dry-run"],
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "provider netns can run here" in proc.stdout and "nothing started" in proc.stdout
    assert topology.existing_namespaces() == before
    # with no name, a rehearsal is a cluster of its own beside the local one
    named = subprocess.run([CLUSTERKIT, "up", "--provider", "netns", "--dry-run", "--json"],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    plan = json.loads(named.stdout)
    assert plan["cluster"] == "rehearsal" and plan["state_dir"].endswith("/clusters/rehearsal")
