"""What the benchmark scripts share: the CLI as a user runs it, and a cluster of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusterkit.core.spec import Ports

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class BenchCluster:
    """A cluster spec and home of the benchmark's own, away from the user's clusters."""

    work: Path
    spec: Path
    env: dict[str, str]

    def cli(self, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ``clusterkit ARGS``; (seconds from start to exit, the finished process)."""
        started = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "clusterkit.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"clusterkit {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
        return elapsed, proc

    def run(self, job: str, *args: str) -> dict[str, Any]:
        """A job's finished run record (``run --json``)."""
        record: dict[str, Any] = json.loads(self.cli("run", job, *args, "--json")[1].stdout)
        return record

    @property
    def storage(self) -> Path:
        return self.env_home / "clusters" / "bench" / "data"

    @property
    def env_home(self) -> Path:
        return Path(self.env["CLUSTERKIT_HOME"])


def bench_cluster(base_port: int, nodes: dict[str, Any] | None = None) -> BenchCluster:
    """A cluster named ``bench`` on ports from ``base_port``; ``nodes`` overrides sizes."""
    work = Path(tempfile.mkdtemp(prefix="ck-bench-"))
    ports = Ports.numbered_from(base_port).model_dump()
    spec = work / "clusterkit.yaml"
    spec.write_text(yaml.safe_dump({"name": "bench", "ports": ports, "nodes": nodes or {}}))
    return BenchCluster(work, spec, {**os.environ, "CLUSTERKIT_HOME": str(work / "home")})


@contextmanager
def running(cluster: BenchCluster) -> Iterator[BenchCluster]:
    """The cluster up for the duration; down and purged afterwards."""
    cluster.cli("up", "--spec", str(cluster.spec))
    try:
        yield cluster
    finally:
        cluster.cli("down", "--purge", "--yes")


def save(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    return out
