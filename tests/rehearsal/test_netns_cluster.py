"""`clusterkit up --provider netns`: the playbooks on the rehearsal's master and workers, proven.

The rehearsal's one cluster (conftest's ``rehearsal``, with several workers), brought up
through the CLI as a user would; every check reads the nodes over SSH or the services through
their own APIs, and covers every worker. ``test_teardown.py`` takes it down.
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
from clusterkit.providers.netns import topology
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
    layout = rehearsal.layout
    assert layout.workers >= 2, "the shared rehearsal is to have several workers"
    # the inventory, the namespaces and the layout the tests use agree: worker-1 ... worker-N
    assert [n.name for n in rehearsal.inventory.nodes] == layout.node_names
    assert [n.address for n in rehearsal.inventory.workers()] == [
        layout.address_of(name) for name in layout.worker_names]  # fmt: skip
    assert topology.existing_workers(layout.cluster) == layout.worker_names
    names = {n["name"]: n for n in status["nodes"]}
    assert sorted(names) == sorted(layout.node_names)
    for node in names.values():  # sampled on each node itself, over SSH
        assert node["mem_total_bytes"] > 0 and node["cpu_count"] >= 1, node


def _worker_addresses(rehearsal: Rehearsal) -> list[str]:
    """Every worker's private address, worker-1's first."""
    return [rehearsal.layout.address_of(name) for name in rehearsal.layout.worker_names]


def test_spark_master_on_the_private_address_lists_every_worker_by_its_ip(rehearsal):
    rows = rehearsal.ck_json("status")["services"]
    master = [r for r in rows if r["name"] == "spark-master"]
    workers = [r for r in rows if r["name"] == "spark-worker"]
    assert [m["address"] for m in master] == [f"spark://{rehearsal.layout.master}:7077"]
    assert sorted((w["state"], w["address"]) for w in workers) == sorted(
        ("up", f"{address}:7078") for address in _worker_addresses(rehearsal))  # fmt: skip
    with rehearsal.connect("master") as c:
        assert f"{rehearsal.layout.master}]:7077" in sh(c, "ss -Hltn 'sport = :7077'")
        assert "spark.master.rest.enabled      false" in sh(
            c, "cat /etc/clusterkit/spark/spark-defaults.conf"
        )


def test_ray_lists_every_node_with_token_auth(rehearsal):
    rows = rehearsal.ck_json("status")["services"]
    ray_nodes = sorted(r["address"] for r in rows if r["name"] == "ray-node" and r["state"] == "up")
    every = [rehearsal.layout.master, *_worker_addresses(rehearsal)]
    assert ray_nodes == sorted(f"{address}:6380" for address in every)
    with rehearsal.connect("master") as c:  # without the token the dashboard refuses
        url = f"http://{rehearsal.layout.master}:8265/nodes?view=summary"
        code = sh(c, f"python3 -c \"import urllib.request as u, urllib.error as e\n"
                     f"try: u.urlopen('{url}', timeout=5); print(200)\n"
                     f"except e.HTTPError as x: print(x.code)\"")  # fmt: skip
    assert code in {"401", "403"}, code


#: Each Spark application's event log on the master (Spark 4: a folder per application, its
#: events zstd-compressed), as "FOLDER JSON" lines of its start and of its executors; zstdcat
#: and grep may fail on a log still being written (the Connect server's): that log is skipped
EVENTS = (
    "cd /var/lib/clusterkit/spark/events && for d in */; do "
    'zstdcat "$d"events_* 2>/dev/null '
    "| grep -a -e SparkListenerApplicationStart -e SparkListenerExecutorAdded "
    '| sed "s|^|${d%/} |"; done'
)


def _executor_hosts(rehearsal: Rehearsal, run_id: str) -> set[str]:
    """The hosts of the executors of run ``run_id``'s own Spark application (a classic
    session's, named ``clusterkit-JOB-RUNID``), read from its event log only: the Connect
    server's and other runs' applications have executors too."""
    with rehearsal.connect("master") as c:
        lines = sh(c, EVENTS).splitlines()
    events = [(folder, json.loads(event)) for folder, event in (ln.split(" ", 1) for ln in lines)]
    apps = {folder for folder, event in events
            if event["Event"] == "SparkListenerApplicationStart"
            and run_id in event["App Name"]}  # fmt: skip
    assert len(apps) == 1, (run_id, sorted({f for f, _ in events}))
    return {event["Executor Info"]["Host"] for folder, event in events
            if folder in apps and event["Event"] == "SparkListenerExecutorAdded"}  # fmt: skip


def test_a_suite_job_runs_with_its_executors_on_both_workers(rehearsal):
    """A classic session is a Spark application of the run's own: the standalone master
    spreads its executors over every worker."""
    made = rehearsal.ck_json("run", "datagen", "--rows", "100k")
    assert made["status"] == "succeeded", made
    record = rehearsal.ck_json("run", "etl", "--spark-session", "classic")
    assert record["status"] == "succeeded", record
    local = rehearsal.paths.runs / record["id"]
    result = json.loads((local / "result.json").read_text())  # fetched back from the master
    assert result["rows"] == 100_000
    hosts = _executor_hosts(rehearsal, record["id"])
    assert hosts == set(_worker_addresses(rehearsal)), hosts


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
    assert probes.connect(layout.ns("outside"), layout.master, 22) == "open"
    # every worker, on the private subnet: refused by this machine's route table (nothing is
    # sent), and by the router for the internet's side, probed from the outside namespace,
    # its SSH and its services alike. The router answers the first probe with ICMP
    # unreachable; Linux rate-limits those ICMP replies, so a later probe may time out
    # instead: either way no connection is made.
    worker_ports = [22, 7078, *SERVICE_PORTS]
    refused = {"unreachable EHOSTUNREACH", "timeout"}
    answers: list[str] = []
    for name in layout.worker_names:
        address = layout.address_of(name)
        with rehearsal.connect(name) as c:  # its services do listen on its address...
            listening = sh(c, "ss -Hltn")
        assert f"{address}:22 " in listening and ":7078 " in listening, (name, listening)
        assert topology.route_of(address) == "unreachable", name  # ...out of reach from here
        seen = {p: probes.connect(layout.ns("outside"), address, p, timeout=1.5)
                for p in worker_ports}  # fmt: skip
        assert set(seen.values()) <= refused, (name, seen)
        answers += seen.values()
    assert "unreachable EHOSTUNREACH" in answers  # the router's refusal, as far as ICMP goes


def test_hosts_and_hostnames(rehearsal):
    layout = rehearsal.layout
    expected = [f"{layout.address_of(name)} {name}" for name in layout.node_names]
    for name in layout.node_names:
        with rehearsal.connect(name) as c:
            hosts = sh(c, "cat /etc/hosts")
            lines = [" ".join(line.split()) for line in hosts.splitlines()]
            assert all(line in lines for line in expected), (name, hosts)
            assert "127.0.1.1" not in hosts
            assert sh(c, "hostname") == name == sh(c, "cat /etc/hostname")


def test_ssh_master_to_each_worker_needs_no_password(rehearsal):
    layout = rehearsal.layout
    with rehearsal.connect("master") as c:
        for name in layout.worker_names:
            assert sh(c, f"ssh -o BatchMode=yes {name} hostname") == name
            assert sh(c, f"ssh -o BatchMode=yes {layout.address_of(name)} hostname") == name


def _fetch_from_workers(rehearsal: Rehearsal) -> dict[str, str]:
    """GET the outside's server from each worker's network namespace: ``answer BODY``,
    ``refused``, ``unreachable ERRNO`` or ``timeout``, by worker."""
    layout = rehearsal.layout
    return {name: probes.fetch(layout.ns(name), layout.outside, PORT)
            for name in layout.worker_names}  # fmt: skip


def test_the_workers_reach_outside_only_through_the_masters_nat(rehearsal):
    layout = rehearsal.layout
    server = subprocess.Popen(in_ns(layout.ns("outside"), sys.executable, "-c", SERVE,
                                    layout.outside, str(PORT), "outside"))  # fmt: skip
    masquerade = (f"POSTROUTING -s {layout.private_subnet} -o eth0 "
                  f"-m comment --comment 'clusterkit nat' -j MASQUERADE")  # fmt: skip
    # every worker: the outside sees the master's address, each one behind its NAT
    through_nat = dict.fromkeys(layout.worker_names,
                                f"answer hello from outside, you are {layout.master}")  # fmt: skip
    try:
        time.sleep(1.0)
        assert _fetch_from_workers(rehearsal) == through_nat
        with rehearsal.connect("master") as c:
            assert "MASQUERADE" in sh(c, "cat /etc/iptables/rules.v4")
            assert sh(c, "sysctl -n net.ipv4.conf.eth0.send_redirects") == "0"
            sh(c, f"iptables -t nat -D {masquerade}")  # NAT off
        try:  # forwarded unmasqueraded: the private route table sends it back to the master
            assert _fetch_from_workers(rehearsal) == dict.fromkeys(
                layout.worker_names, "unreachable EHOSTUNREACH")  # fmt: skip
        finally:
            with rehearsal.connect("master") as c:  # on again, exactly as the role made it
                sh(c, f"iptables -t nat -A {masquerade}")
        assert _fetch_from_workers(rehearsal) == through_nat
    finally:
        server.terminate()
        server.wait(timeout=10)
    for name in layout.worker_names:  # the workers' own default route is left alone
        with rehearsal.connect(name) as c:
            route = sh(c, "ip route show default")
        assert route == f"default via {layout.router_private} dev eth0", (name, route)


@pytest.mark.slow  # about 2-3 min: `pytest -m slow` (docs/development.md)
def test_provision_again_changes_nothing(rehearsal):
    report = rehearsal.ck_json("provision")
    assert report["total_changed"] == 0, report
    assert set(report["changed"]) == set(rehearsal.layout.node_names)  # master, worker-1, ...


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
