"""The rehearsal's last cluster test: ``down`` while a run goes on and the master has stopped
answering SSH. The run's copy here is recorded failed with the reason, and every namespace,
link, route, node process and node folder (of the master and every worker) is gone all the
same."""

from __future__ import annotations

import subprocess
import time

import psutil
import pytest

from clusterkit.providers.netns import topology
from clusterkit.providers.netns.topology import in_ns
from tests.rehearsal.conftest import NAME, Rehearsal

pytestmark = pytest.mark.rehearsal


def _wait_running(rehearsal: Rehearsal, run_id: str) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(r["id"] == run_id and r["status"] == "running" for r in rehearsal.ck_json("runs")):
            return
        time.sleep(1)
    raise AssertionError(f"run {run_id} never went running")


def test_down_with_the_master_unreachable_removes_everything(rehearsal: Rehearsal):
    layout = rehearsal.layout
    node_dir = rehearsal.paths.root / "nodes"
    assert node_dir.is_dir()
    run_id = rehearsal.ck("run", "ray-pi", "--samples", "3000000000", "--tasks", "8",
                          "--detach").stdout.strip()  # fmt: skip
    _wait_running(rehearsal, run_id)
    rule = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "REJECT"]
    subprocess.run(in_ns(layout.ns("master"), "iptables", "-I", *rule), check=True)

    proc = rehearsal.ck("down")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"run {run_id} (ray-pi) could not be cancelled" in proc.stderr
    assert proc.stdout.startswith(f"cluster '{layout.cluster}' is down: removed ")
    record = rehearsal.ck_json("runs", "--cached")[-1]
    assert record["id"] == run_id and record["status"] == "failed", record
    assert record["error"].startswith("the cluster was taken down; its master did not answer")

    assert not topology.existing_namespaces() & set(layout.namespaces)
    # every worker's namespace with them, however many it had
    assert topology.existing_workers(layout.cluster) == []
    assert not [ns for ns in topology.existing_namespaces() if ns.startswith(f"ck-{NAME}-")]
    assert topology.run(["ip", "link", "show", layout.host_link], check=False) == ""
    routes = topology.run(["ip", "route", "show", "table", "all"])
    assert layout.master not in routes and f"metric {layout.route_metric}" not in routes
    assert not node_dir.exists()
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"])
                 if str(node_dir) in " ".join(p.info["cmdline"] or [])]  # fmt: skip
    assert leftovers == []
    assert rehearsal.ck_json("status")["state"] == "down"
    again = rehearsal.ck("down")
    assert again.returncode == 0 and "is not up; nothing to stop" in again.stdout, again.stdout
