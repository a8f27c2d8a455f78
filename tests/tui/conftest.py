"""A fixed cluster state for the console: a source whose readings are set by the test, a
clock the test moves, and a run store with a few runs written as the supervisor writes them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from clusterkit.core.records import RunRecord
from clusterkit.runs.store import FolderRunStore
from clusterkit.services.health import ServiceHealth
from clusterkit.tui.app import ClusterkitApp
from clusterkit.watch import ClusterInfo

NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC).timestamp()
GiB = 1024**3


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


class Clock:
    """A clock the test advances (every poll of :func:`settle` moves it one second)."""

    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def services_up() -> list[ServiceHealth]:
    alive = "status ALIVE, 1 alive worker(s)"
    return [
        ServiceHealth("spark-master", "up", "spark://10.0.0.10:7077", None, alive),
        ServiceHealth("spark-worker", "up", "10.0.0.11:7078", None, "ALIVE, 2 cores, 6144 MiB"),
        ServiceHealth("ray-head", "up", "10.0.0.10:6379", None, "2 node(s), token auth on"),
        ServiceHealth("ray-node", "up", "10.0.0.10:6380", None, "ALIVE, 2 CPUs, head"),
        ServiceHealth("ray-node", "up", "10.0.0.11:6380", None, "ALIVE, 2 CPUs"),
        ServiceHealth("storage", "up", "/srv/clusterkit/data", None, "local folder, 41.2 GiB free"),
    ]  # fmt: skip


def ray_silent() -> list[ServiceHealth]:
    """The same cluster with the Ray dashboard no longer answering."""
    rows = [s for s in services_up() if not s.name.startswith("ray")]
    rows.insert(2, ServiceHealth("ray-head", "down", "10.0.0.10:6379", None,
                                 "http://10.0.0.10:8265 not answering: ConnectionError",
                                 answered=False))  # fmt: skip
    return rows


@dataclass
class FixedSource:
    """A two-node cluster whose readings are whatever the test sets."""

    root: Path
    info_value: ClusterInfo = field(
        default_factory=lambda: ClusterInfo("demo", "up", "netns", iso(NOW - 3723))
    )
    readings: Callable[[], list[ServiceHealth]] = services_up
    cpu: Sequence[float] = (12, 35, 80, 55, 20, 5, 60, 90, 40, 25)
    calls: int = 0

    def info(self) -> ClusterInfo:
        return self.info_value

    def nodes(self) -> list[dict[str, Any]]:
        self.calls += 1
        out = []
        for i, (name, address, roles) in enumerate(
            [("master", "10.0.0.10", ["master"]), ("worker", "10.0.0.11", ["worker"])]
        ):
            cpu = self.cpu[(self.calls + 3 * i) % len(self.cpu)]
            used = (2.5 + i * 3.0 + self.calls * 0.1) * GiB
            share = round(used / (8 * GiB) * 100, 1)
            out.append({"name": name, "address": address, "roles": roles, "node": name,
                        "cpu_percent": float(cpu), "cpu_count": 2, "mem_total_bytes": 8 * GiB,
                        "mem_used_bytes": int(used), "mem_percent": share})  # fmt: skip
        return out

    def services(self) -> list[ServiceHealth]:
        return self.readings()

    def store(self) -> FolderRunStore:
        return FolderRunStore(self.root)

    def reap(self, record: RunRecord) -> RunRecord:
        return record

    def close(self) -> None:
        return None

    def submit(self, job: str, args: Sequence[str]) -> RunRecord:
        raise AssertionError("a fixed cluster runs nothing")

    def cancel(self, run_id: str) -> RunRecord:
        raise AssertionError("a fixed cluster runs nothing")


def write_run(root: Path, run_id: str, job: str, *, status: str, started: float,
              wall_s: float | None, peak: int | None, params: dict[str, Any],
              result: dict[str, Any] | None = None, error: str | None = None,
              log: str = "", samples: Sequence[tuple[str, float, int]] = ()) -> None:  # fmt: skip
    """A run folder as the supervisor leaves it: record, logs, metrics, result."""
    store = FolderRunStore(root)
    store.dir(run_id).mkdir(parents=True)
    record = RunRecord(
        id=run_id, job=job, params=params, cluster="demo", provider="netns", status=status,
        created=iso(started), started=iso(started),
        ended=iso(started + wall_s) if wall_s is not None else None, wall_s=wall_s,
        error=error, peak_rss_bytes=peak,
    )  # fmt: skip
    store.save(record)
    (store.dir(run_id) / "stdout.log").write_text(log)
    (store.dir(run_id) / "stderr.log").write_text("")
    with open(store.dir(run_id) / "metrics.jsonl", "w") as out:
        for node, t, rss in samples:
            out.write(json.dumps({"t": t, "node": node, "run_rss_bytes": rss}) + "\n")
    if result is not None:
        (store.dir(run_id) / "result.json").write_text(json.dumps(result))


@pytest.fixture
def fixed_store(tmp_path: Path) -> Path:
    """A history: the three engines on the same 30M rows, a failure, and a run going on."""
    root = tmp_path / "runs"
    etl = [("20261121-100000-aaaa", "duckdb", 7.34, 205),
           ("20261121-100100-bbbb", "ray", 19.57, 2700),
           ("20261121-100200-cccc", "spark", 42.88, 1800)]  # fmt: skip
    for run_id, engine, wall, mib in etl:
        write_run(root, run_id, "etl", status="succeeded", started=NOW - 7000, wall_s=wall + 1.5,
                  peak=mib * 1024**2, params={"engine": engine},
                  result={"rows": 30_000_000, "wall_s": wall, "engine": engine, "stages":
                          {"open": 0.4, "transform_write": wall - 1.0, "verify": 0.6}})  # fmt: skip
    write_run(root, "20261121-103000-dddd", "top-earners", status="failed", started=NOW - 5000,
              wall_s=0.5, peak=9 * 1024**2, params={"engine": "ray"},
              error="input people-processed: no such dataset; run etl first")  # fmt: skip
    samples = [(node, NOW - 40 + t, int((0.3 + 0.02 * t + (0.4 if node == "worker" else 0)) * GiB))
               for t in range(0, 40, 2) for node in ("master", "worker")]  # fmt: skip
    write_run(root, "20261121-115920-eeee", "train", status="running", started=NOW - 40,
              wall_s=None, peak=None, params={"sample": 1_000_000},
              log="train: reading 1,000,000 rows\ntrain: search of 8 trials on Ray\n",
              samples=samples)  # fmt: skip
    runs_dir = FolderRunStore(root).dir("20261121-115920-eeee")
    (runs_dir / "stages.json").write_text(json.dumps(
        {"done": {"read": 6.2}, "current": "search", "since": NOW - 30}))  # fmt: skip
    (runs_dir / "progress.json").write_text(json.dumps({"done": 3, "total": 8, "unit": "trials"}))
    return root


async def settle(pilot: Pilot[Any], polls: int = 1) -> None:
    """Run ``polls`` refresh ticks one at a time, each a second later, and let them land."""
    app = pilot.app
    assert isinstance(app, ClusterkitApp)
    clock = app.clock
    for _ in range(polls):
        if isinstance(clock, Clock):
            clock.t += 1
        app.poll()
        await app.workers.wait_for_complete()
        await pilot.pause()
    await pilot.pause()


def fixed_app(source: FixedSource, clock: Clock | None = None) -> ClusterkitApp:
    """The console on a fixed cluster; it refreshes only when the test says so."""
    return ClusterkitApp(source, clock=clock or Clock(), refresh_s=3600)
