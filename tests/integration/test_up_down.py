"""A full cycle on a cluster of its own: up, repair, down verified by pid and port, purge."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import yaml

from clusterkit.exec import processes as daemons
from clusterkit.exec.processes import Daemon
from clusterkit.metrics.sampling import RunProcessFinder
from clusterkit.services import preflight
from tests.conftest import cli_env, run_cli, test_ports

pytestmark = pytest.mark.cluster

BASE = 28000


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def _kill_only(daemon: Daemon) -> None:
    """End one process, not its tree (the keeper's children are the daemons it restarted)."""
    process = daemons.process_of(daemon)
    assert process is not None
    process.kill()
    process.wait(30)


def test_up_repair_down_purge(tmp_path: Path):
    home = tmp_path / "home"
    spec = tmp_path / "clusterkit.yaml"
    spec.write_text(yaml.safe_dump({"name": "cycle", "ports": test_ports(BASE)}))
    env = cli_env(home)

    up = run_cli("up", "--spec", str(spec), "--json", env=env)
    assert up.code == 0, up.stderr
    state_dir = Path(up.json()["state_dir"])
    state = json.loads((state_dir / "cluster.json").read_text())
    ray_head = Daemon.from_dict(next(d for d in state["daemons"] if d["name"] == "ray-head"))
    # the state folder and Ray's temp folder's parent are the operator's alone
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    ray_parent = Path(state["ray_temp_dir"]).parent
    assert ray_parent.name == f"ck-{os.geteuid()}" and not ray_parent.is_symlink()
    assert stat.S_IMODE(ray_parent.stat().st_mode) == 0o700

    # with its keeper stopped too, a service that died is noticed; the next `up` starts
    # again only what ended (and the keeper), nothing that runs
    keeper = Daemon.from_dict(json.loads((state_dir / "pids" / "keeper.json").read_text()))
    _kill_only(keeper)
    daemons.stop_all([ray_head])
    others = [Daemon.from_dict(d) for d in state["daemons"] if d["name"] != "ray-head"]
    degraded = run_cli("status", "--json", env=env).json()
    assert degraded["state"] == "degraded" and degraded["keeper"]["alive"] is False
    assert {s["name"]: s["state"] for s in degraded["services"]}["ray-head"] == "down"
    repaired = run_cli("up", "--spec", str(spec), "--json", env=env)
    assert repaired.code == 0, repaired.stderr
    assert repaired.json()["changed"] is True and "keeper" in repaired.json()["message"]
    healthy = run_cli("status", "--json", env=env).json()
    assert healthy["state"] == "up" and healthy["keeper"]["alive"] is True
    assert healthy["keeper"]["restarts"] == {"ray-head": 1}
    assert all(daemons.is_alive(d) for d in others)  # the Spark daemons were left running

    # a killed Spark Connect server (its keeper stopped first, or it would start it again at
    # once): the next Spark run says so and how to fix it; `up` does
    made = run_cli("run", "datagen", "--rows", "20k", env=env)
    assert made.code == 0, made.stderr
    _kill_only(Daemon.from_dict(json.loads((state_dir / "pids" / "keeper.json").read_text())))
    state = json.loads((state_dir / "cluster.json").read_text())
    connect = Daemon.from_dict(next(d for d in state["daemons"] if d["name"] == "spark-connect"))
    process = daemons.process_of(connect)
    assert process is not None
    process.kill()
    process.wait(30)
    etl = run_cli("run", "etl", "--json", env=env)
    assert etl.code == 1, etl.stderr
    error = etl.json()["error"]
    assert "Spark Connect server" in error and "`clusterkit up`" in error, error
    assert {s["name"]: s["state"] for s in run_cli("status", "--json", env=env).json()[
        "services"]}["spark-connect"] == "down"  # fmt: skip
    restored = run_cli("up", "--spec", str(spec), "--json", env=env)
    assert restored.code == 0 and restored.json()["changed"] is True, restored.stderr
    etl = run_cli("run", "etl", "--json", env=env)
    assert etl.code == 0, etl.stderr
    assert etl.json()["result"]["rows"] == 20_000

    # an empty cluster.json (a crash while it was written by another tool, a full disk):
    # status says so in one line; down stops what its pid files name and frees the ports
    state = json.loads((state_dir / "cluster.json").read_text())
    running = [daemons.process_of(Daemon.from_dict(d)) for d in state["daemons"]]
    running.append(daemons.process_of(Daemon.from_dict(
        json.loads((state_dir / "pids" / "keeper.json").read_text()))))  # fmt: skip
    assert all(running) and len(running) == 5
    (state_dir / "cluster.json").write_text("")
    broken = run_cli("status", env=env)
    assert broken.code == 1 and "Traceback" not in broken.stderr
    assert f"{state_dir / 'cluster.json'} is not valid JSON" in broken.stderr
    blind = run_cli("down", "--json", env=env)
    assert blind.code == 0, blind.stderr
    assert "down without its state file" in blind.json()["message"]
    assert {p.pid for p in running if p} <= set(blind.json()["stopped_pids"])
    assert not any(p.is_running() and p.status() != "zombie" for p in running if p)
    assert preflight.listening_ports([p for p in test_ports(BASE).values() if p < BASE + 100]) == []
    assert (state_dir / "cluster.json.unreadable").exists()
    again = run_cli("up", "--spec", str(spec), "--json", env=env)  # the runs below use it
    assert again.code == 0, again.stderr

    # a notebook still open when the cluster goes down is stopped with it
    notebook = subprocess.Popen([sys.executable, "-m", "clusterkit.cli", "notebook", "--port",
                                 str(BASE + 90)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert notebook.stdout is not None
    assert any("/lab?token=" in line for line in notebook.stdout)

    # a run still going when the cluster goes down is cancelled first, and says why
    busy = run_cli("run", "busy", "--engine", "ray", "--detach", env=env)
    assert busy.code == 0, busy.stderr
    busy_id = busy.stdout.strip()
    runs_dir = state_dir / "runs" / busy_id
    assert daemons.wait_until(lambda: "started" in _text(runs_dir / "stdout.log"), timeout_s=120)

    # down: every process of every daemon tree gone, every port free
    state = json.loads((state_dir / "cluster.json").read_text())
    pids, roots = [], []
    for d in state["daemons"]:
        root = daemons.process_of(Daemon.from_dict(d))
        assert root is not None
        roots.append(root.pid)
        pids += [root.pid, *(c.pid for c in root.children(recursive=True))]
    assert len(pids) > 5
    assert RunProcessFinder(busy_id).find(), "the busy run's Ray workers should be running"
    keeper = Daemon.from_dict(json.loads((state_dir / "pids" / "keeper.json").read_text()))
    assert daemons.is_alive(keeper)
    down = run_cli("down", "--json", env=env)
    assert down.code == 0, down.stderr
    # down stopped the three daemons' trees (Ray ends some workers on its own meanwhile,
    # so the exact set differs from the one seen above); none of those processes is left
    assert set(roots) | {keeper.pid} <= set(down.json()["stopped_pids"])
    assert not daemons.is_alive(keeper)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert alive == []
    ports = list(test_ports(BASE).values())
    assert preflight.listening_ports([p for p in ports if p < BASE + 100]) == []
    assert not (state_dir / "cluster.json").exists()
    assert not Path(state["ray_temp_dir"]).exists()
    record = json.loads((runs_dir / "record.json").read_text())
    assert record["status"] == "cancelled"
    assert record["error"] == "the cluster was taken down"
    assert RunProcessFinder(busy_id).find() == []
    assert notebook.wait(timeout=60) == 0  # it saw its server stop and ended
    assert not [p for p in psutil.process_iter(["cmdline"])
                if "jupyterlab" in " ".join(p.info["cmdline"] or [])]  # fmt: skip

    # down again: nothing up, said plainly, exit 0; status says down
    again = run_cli("down", env=env)
    assert again.code == 0 and "is not up; nothing to stop" in again.stdout
    status = run_cli("status", env=env)
    assert status.code == 0 and "is down" in status.stdout

    # a run against a cluster that is down
    result = run_cli("run", "ray-pi", env=env)
    assert result.code == 1 and "cluster 'cycle' is down" in result.stderr

    # purge deletes state, data and runs; without --yes it asks (and no answer aborts)
    asked = run_cli("down", "--purge", env=env)
    assert asked.code == 1 and state_dir.exists()
    purged = run_cli("down", "--purge", "--yes", env=env)
    assert purged.code == 0, purged.stderr
    assert not state_dir.exists()
    assert run_cli("clusters", "--json", env=env).json() == []
