"""`clusterkit scale` on the shared rehearsal (two workers): refused while a run goes; down to
one worker, drained first (Spark decommissioned, Ray drained) and then removed with its
namespace and folder; back to two, only the new worker provisioned (the other worker not in
the playbook's recap, the master only changing what names the workers); the cluster healthy
and running jobs on both after."""

from __future__ import annotations

import json
import re
import time

import pytest

from clusterkit.providers.netns import topology
from tests.rehearsal.conftest import NAME, Rehearsal

pytestmark = pytest.mark.rehearsal

#: What the master may change when a worker comes or goes: its /etc/hosts, the idle guard's
#: list of workers (its unit, then the guard started again with it), the master's known hosts
MASTER_MAY_CHANGE = {
    "Map the nodes' names to their private addresses",
    "Know the accepting side's host keys, by name and by address",
    "Write the guard's unit",
    "Run the guard's loop",
}


def _changed(stderr: str, host: str) -> set[str]:
    """The tasks `host` changed, from `scale`'s progress lines ("· host: task (changed)")."""
    return {m.group(1) for m in re.finditer(rf"^· {host}: (.*) \(changed\)$", stderr, re.M)}


def _hostnames(rehearsal: Rehearsal) -> list[str]:
    """`exec hostname` on every node: its lines, the node prefix unpadded, sorted."""
    shown = rehearsal.ck("exec", "hostname")
    assert shown.returncode == 0, shown.stderr
    return sorted(re.sub(r"^\[(\S+)\s*\]", r"[\1]", line) for line in shown.stdout.splitlines())


def _alive(rehearsal: Rehearsal) -> tuple[set[str], set[str]]:
    rows = rehearsal.ck_json("status")["services"]
    spark = {r["address"].split(":")[0] for r in rows if r["name"] == "spark-worker"
             and r["state"] == "up"}  # fmt: skip
    ray = {r["address"].split(":")[0] for r in rows if r["name"] == "ray-node"
           and r["state"] == "up"}  # fmt: skip
    return spark, ray


def test_shrinking_is_refused_while_a_run_goes(rehearsal: Rehearsal):
    run_id = rehearsal.ck("run", "ray-pi", "--samples", "3000000000", "--tasks", "8",
                          "--detach").stdout.strip()  # fmt: skip
    assert run_id, "no run id printed"
    try:
        refused = rehearsal.ck("scale", "--workers", "1")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"has 1 run(s) going: {run_id} (ray-pi)" in refused.stderr, refused.stderr
        assert "`clusterkit scale --force` cancels them" in refused.stderr
    finally:
        rehearsal.ck("cancel", run_id)
    assert len(rehearsal.inventory.workers()) == 2  # nothing changed


@pytest.mark.slow  # about 2-3 min: `pytest -m slow` (docs/development.md)
def test_down_to_one_worker_and_back_to_two(rehearsal: Rehearsal):
    layout = rehearsal.layout
    w1, w2 = layout.worker_address(1), layout.worker_address(2)
    started = time.monotonic()
    down = rehearsal.ck("scale", "--workers", "1", "--json")
    assert down.returncode == 0, down.stdout[-2000:] + down.stderr[-3000:]
    report = json.loads(down.stdout)
    assert (report["workers_before"], report["workers_after"], report["removed"]) == (
        2, 1, ["worker-2"])  # fmt: skip
    # drained before it went: Spark's decommissioning, Ray's drain, then its units stopped
    said = down.stderr
    order = [
        said.index(line)
        for line in (
            "node worker-2: Spark worker decommissioning (SIGPWR)",
            "Spark: worker-2 decommissioned",
            f"Ray: node {w2} drained",
            "node worker-2: stopped",
        )
    ]
    assert order == sorted(order), said
    assert f"ck-{NAME}-worker-2" not in topology.existing_namespaces()
    assert not (rehearsal.paths.root / "nodes" / "worker-2").exists()
    assert [n.name for n in rehearsal.inventory.workers()] == ["worker-1"]
    assert rehearsal.state.spec.nodes.workers == 1
    assert _alive(rehearsal) == ({w1}, {layout.master, w1})
    assert _hostnames(rehearsal) == ["[master] master", "[worker-1] worker-1"]
    assert topology.route_of(w2) == "unreachable"  # still guarded on this shell's side

    up = rehearsal.ck("scale", "--workers", "2", "--json")
    assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
    report = json.loads(up.stdout)
    assert (report["workers_after"], report["added"]) == (2, ["worker-2"])
    # provisioned alone: worker-1 not in the recap, the master changing only the names
    assert set(report["provisioned"]) == {"master", "worker-2"}, report["provisioned"]
    assert not re.search(r"^· worker-1: ", up.stderr, re.M), up.stderr
    assert _changed(up.stderr, "master") <= MASTER_MAY_CHANGE, _changed(up.stderr, "master")
    assert report["provisioned"]["worker-2"] > 0
    assert _alive(rehearsal) == ({w1, w2}, {layout.master, w1, w2})
    assert _hostnames(rehearsal) == ["[master] master", "[worker-1] worker-1",
                                     "[worker-2] worker-2"]  # fmt: skip
    with rehearsal.connect("master") as master:  # the master reaches the new node by name
        out = master.run("ssh -o BatchMode=yes worker-2 hostname", timeout=60).stdout.strip()
        assert out == "worker-2"
    print(f"scale 2 -> 1 -> 2 took {time.monotonic() - started:.0f} s")


def test_scale_to_the_count_it_has_changes_nothing(rehearsal: Rehearsal):
    same = rehearsal.ck_json("scale", "--workers", str(len(rehearsal.inventory.workers())))
    assert not same["changed"] and "nothing changed" in same["message"], same
