"""Shared helpers: run the real CLI as a subprocess, in a home of its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterkit.spec import Ports

FIXTURE_JOBS = Path(__file__).parent / "fixtures" / "jobs"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERKIT_")}
    env.update({"CLUSTERKIT_HOME": str(home), "CLUSTERKIT_JOBS_PATH": str(FIXTURE_JOBS)})
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> Result:
    """Run ``clusterkit ARGS`` for real; return its exit code and output."""
    proc = subprocess.run(
        [sys.executable, "-m", "clusterkit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_ports(base: int) -> dict[str, int]:
    """A full set of spec ports starting at ``base`` (distinct from the defaults)."""
    return Ports.numbered_from(base).model_dump()


test_ports.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "ckhome"
    path.mkdir()
    return path


BASE_PORT = 27000


@dataclass
class LocalCluster:
    home: Path
    spec_file: Path
    env: dict[str, str]
    up: dict[str, Any]

    def cli(self, *args: str, timeout: float = 300):
        return run_cli(*args, env=self.env, timeout=timeout)

    @property
    def storage(self) -> Path:
        """The cluster's storage root (a local folder on the local provider)."""
        return Path(self.up["state_dir"]) / "data"

    def run(self, job: str, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any]]:
        """``clusterkit run JOB ARGS --json``: (exit code, the run's record)."""
        result = self.cli("run", job, *args, "--json", timeout=timeout)
        assert result.stdout, result.stderr
        record: dict[str, Any] = result.json()
        return result.code, record

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.code == 0, result.stderr
        data: dict[str, Any] = result.json()
        return data


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("cluster")
    home = root / "home"
    spec_file = root / "clusterkit.yaml"
    spec_file.write_text(
        yaml.safe_dump({"name": "itest", "ports": test_ports(BASE_PORT),
                        "nodes": {"worker_memory": "2g", "ray_object_store_memory": "1g"}})
    )  # fmt: skip
    env = cli_env(home)
    result = run_cli("up", "--spec", str(spec_file), "--json", env=env, timeout=300)
    assert result.code == 0, result.stderr
    cluster = LocalCluster(home, spec_file, env, result.json())
    try:
        yield cluster
    finally:
        down = run_cli("down", env=env, timeout=120)
        assert down.code == 0, down.stderr
