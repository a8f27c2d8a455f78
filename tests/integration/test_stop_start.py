"""`stop` and `start` on a local cluster of its own: a run finishes; `stop` is refused while
another goes on, and `stop --force` cancels it; once stopped, no process of the cluster is
left and its ports are free, while its data folder and run history stay; `status` says
stopped, `run` and `up` point at `start`; `start` brings it back healthy, and a job after it
reads the data made before, its record next to the old ones."""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import yaml

from clusterkit.exec import processes as daemons
from clusterkit.exec.processes import Daemon
from clusterkit.services import preflight
from tests.conftest import Result, cli_env, run_cli, test_ports

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # `pytest -m slow`

BASE = 29000


def _files(root: Path) -> dict[str, int]:
    """Every file under ``root`` with its size."""
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def _kit_pids(state_dir: Path) -> set[int]:
    """The pids of every daemon's process tree and of the keeper, now."""
    state = json.loads((state_dir / "cluster.json").read_text())
    found = [Daemon.from_dict(d) for d in state["daemons"]]
    found.append(Daemon.from_dict(json.loads((state_dir / "pids" / "keeper.json").read_text())))
    pids: set[int] = set()
    for daemon in found:
        root = daemons.process_of(daemon)
        assert root is not None, f"{daemon.name} is not running"
        pids |= {root.pid, *(c.pid for c in root.children(recursive=True))}
    return pids


def _alive(pids: set[int]) -> list[int]:
    return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def _ok(result: Result) -> Result:
    assert result.code == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_stop_keeps_data_and_runs_and_start_brings_it_back(tmp_path: Path):
    home = tmp_path / "home"
    spec = tmp_path / "clusterkit.yaml"
    spec.write_text(yaml.safe_dump({"name": "pause", "ports": test_ports(BASE),
                                    "nodes": {"worker_memory": "2g",
                                              "ray_object_store_memory": "1g"}}))  # fmt: skip
    env = cli_env(home)
    up = _ok(run_cli("up", "--spec", str(spec), "--json", env=env))
    state_dir = Path(up.json()["state_dir"])
    ports = [p for p in test_ports(BASE).values() if p < BASE + 100]
    try:
        made = _ok(run_cli("run", "datagen", "--rows", "20k", "--json", env=env)).json()
        assert made["status"] == "succeeded"
        data = _files(state_dir / "data")
        assert data, "datagen wrote nothing in the data folder"

        # a run going: `stop` is refused and says how to go on; `stop --force` cancels it
        busy = _ok(run_cli("run", "busy", "--engine", "ray", "--detach", env=env)).stdout.strip()
        refused = run_cli("stop", env=env)
        assert refused.code == 1 and "Traceback" not in refused.stderr
        assert busy in refused.stderr and "`clusterkit stop --force`" in refused.stderr
        assert json.loads((state_dir / "cluster.json").read_text())["power"] == "running"
        pids = _kit_pids(state_dir)
        stopped = _ok(run_cli("stop", "--force", "--json", env=env)).json()
        assert stopped["changed"] is True and stopped["power"] == "stopped"
        record = json.loads((state_dir / "runs" / busy / "record.json").read_text())
        assert record["status"] == "cancelled" and "stopped" in record["error"]

        # stopped: no process of the kit is left and its ports are free; data and runs stay
        assert _alive(pids) == []
        assert preflight.listening_ports(ports) == []
        assert _files(state_dir / "data") == data
        listed = [r["id"] for r in _ok(run_cli("runs", "--json", env=env)).json()]
        assert made["id"] in listed and busy in listed
        status = _ok(run_cli("status", "--json", env=env)).json()
        assert status["state"] == "stopped" and status["stopped_at"] == stopped["stopped_at"]
        shown = _ok(run_cli("status", env=env)).stdout
        assert "stopped since" in shown and "`clusterkit start`" in shown
        job = run_cli("run", "ray-pi", env=env)
        assert job.code == 1 and "'pause' is stopped" in job.stderr
        assert "`clusterkit start`" in job.stderr
        again_up = run_cli("up", "--spec", str(spec), env=env)
        assert again_up.code == 1 and "`clusterkit start`" in again_up.stderr
        assert _alive(pids) == [] and preflight.listening_ports(ports) == []  # up started nothing
        again = _ok(run_cli("stop", env=env))
        assert "already stopped" in again.stdout

        # start: healthy again, its keeper too; a job reads the data made before the stop
        started = _ok(run_cli("start", "--json", env=env, timeout=600)).json()
        assert started["changed"] is True and started["power"] == "running"
        status = _ok(run_cli("status", "--json", env=env)).json()
        assert status["state"] == "up" and status["keeper"]["alive"] is True
        assert "already running" in _ok(run_cli("start", env=env)).stdout
        etl = _ok(run_cli("run", "etl", "--json", env=env, timeout=600)).json()
        assert etl["status"] == "succeeded" and etl["result"]["rows"] == 20_000
        after = [r["id"] for r in _ok(run_cli("runs", "--json", env=env)).json()]
        assert after[: len(listed)] == listed and after[-1] == etl["id"]
        events = [json.loads(line)["event"]
                  for line in (state_dir / "power.jsonl").read_text().splitlines()]  # fmt: skip
        assert events == ["up", "stop", "start"]
    finally:
        run_cli("down", "--purge", "--yes", env=env, timeout=120)
