"""`stop` and `start` on the rehearsal: the kit's systemd units stop on every node (the
workers' first) while the nodes, their disks, the storage and the run history on the master
stay; `start` brings the services back healthy (every worker joined again) and a job reads
the data made before.

The rehearsal's one cluster (conftest's ``rehearsal``) is shared: it is left running, as
found, whatever happens here."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterkit.services.playbooks import NODE_RUNS_DIR
from tests.rehearsal.conftest import Rehearsal, sh

pytestmark = [pytest.mark.rehearsal, pytest.mark.slow]  # `pytest -m slow`

KEPT = "/root/clusterkit-stop-start.txt"
# the idle guard's too: the rehearsal runs it (conftest's --idle-minutes 1)
MASTER_UNITS = {"clusterkit-spark-master.service", "clusterkit-spark-connect.service",
                "clusterkit-ray.service", "clusterkit-idle.service"}  # fmt: skip
WORKER_UNITS = {"clusterkit-spark-worker.service", "clusterkit-ray.service"}


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _listening(rehearsal: Rehearsal, node: str, ports: list[int]) -> list[str]:
    """The lines of ``ss`` on ``node`` for those of ``ports`` something listens on."""
    with rehearsal.connect(node) as runner:
        lines = sh(runner, "ss -Hltn").splitlines()
    return [line for line in lines if any(line.split()[3].endswith(f":{p}") for p in ports)]


@pytest.fixture
def left_running(rehearsal: Rehearsal) -> Iterator[Rehearsal]:
    """The rehearsal, started again at the end if this test left it stopped."""
    yield rehearsal
    if rehearsal.state.power == "stopped":
        proc = rehearsal.ck("start", timeout=900)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_stop_and_start_keep_disks_storage_and_runs(left_running: Rehearsal):
    rehearsal = left_running
    ports = rehearsal.state.spec.ports
    master_ports = [ports.spark_master, ports.spark_master_ui, ports.ray_gcs,
                    ports.ray_dashboard, ports.spark_connect]  # fmt: skip
    made = rehearsal.ck_json("run", "datagen", "--rows", "20k", "--overwrite")
    assert made["status"] == "succeeded", made
    storage = Path(rehearsal.state.storage_root)
    stored = _files(storage)
    assert stored, f"datagen wrote nothing under {storage}"
    token = secrets.token_hex(8)
    names, workers = rehearsal.layout.node_names, rehearsal.layout.worker_names
    for node in names:
        with rehearsal.connect(node) as runner:
            sh(runner, f"echo {token} > {KEPT}")
    runs = [r["id"] for r in rehearsal.ck_json("runs")]
    assert made["id"] in runs

    stopped = rehearsal.ck_json("stop", timeout=600)
    assert stopped["changed"] is True and stopped["power"] == "stopped", stopped
    units = stopped["details"]["units_stopped"]
    assert list(units) == [*workers, "master"]  # the workers' first, in order
    assert all(set(units[w]) >= WORKER_UNITS for w in workers), units
    assert set(units["master"]) >= MASTER_UNITS
    # on the nodes: nothing of the kit runs or listens, and the nodes still answer
    expected_units = {n: WORKER_UNITS for n in workers} | {"master": MASTER_UNITS}
    for node, expected in expected_units.items():
        with rehearsal.connect(node) as runner:
            for unit in expected:
                active = sh(runner, f"systemctl is-active {unit} || true")
                assert active != "active", (node, unit)
    assert _listening(rehearsal, "master", master_ports) == []
    for node in workers:
        assert _listening(rehearsal, node, [ports.spark_worker, ports.spark_worker_ui]) == []
    status = rehearsal.ck_json("status")
    assert status["state"] == "stopped" and status["stopped_at"] == stopped["stopped_at"]
    refused = rehearsal.ck("run", "ray-pi")
    assert refused.returncode == 1 and "`clusterkit start`" in refused.stderr, refused.stderr
    assert "already stopped" in rehearsal.ck("stop").stdout

    # kept: each node's disk, the storage, the run history (here, and on the master)
    for node in names:
        with rehearsal.connect(node) as runner:
            assert sh(runner, f"cat {KEPT}") == token
    assert _files(storage) == stored
    assert set(runs) <= {r["id"] for r in rehearsal.ck_json("runs")}
    with rehearsal.connect("master") as master:
        assert sh(master, f"test -f {NODE_RUNS_DIR}/{made['id']}/record.json && echo kept") == (
            "kept"
        )

    started = rehearsal.ck_json("start", timeout=900)
    assert started["changed"] is True and started["power"] == "running", started
    units = started["details"]["units_started"]
    assert list(units) == ["master", *reversed(workers)]  # the master first
    assert set(units["master"]) >= MASTER_UNITS, units
    assert all(set(units[w]) >= WORKER_UNITS for w in workers), units
    status = rehearsal.ck_json("status")
    assert status["state"] == "up", status["services"]
    alive = {r["address"] for r in status["services"]
             if r["name"] == "spark-worker" and r["state"] == "up"}  # fmt: skip
    layout = rehearsal.layout
    assert alive == {f"{layout.address_of(w)}:{ports.spark_worker}" for w in workers}, alive
    assert status["idle_guard"]["installed"] is True, status["idle_guard"]
    with rehearsal.connect("master") as master:
        assert sh(master, "systemctl is-active clusterkit-idle.service") == "active"
    assert "already running" in rehearsal.ck("start").stdout
    etl = rehearsal.ck_json("run", "etl", "--overwrite", timeout=900)
    assert etl["status"] == "succeeded" and etl["result"]["rows"] == 20_000, etl
    after = [r["id"] for r in rehearsal.ck_json("runs")]
    assert set(runs) <= set(after) and after[-1] == etl["id"]
    for node in names:
        with rehearsal.connect(node) as runner:
            sh(runner, f"rm -f {KEPT}")
