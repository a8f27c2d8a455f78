"""One real local cluster for the integration tests, on ports of its own."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import cli_env, run_cli, test_ports

BASE_PORT = 27000


@dataclass
class LocalCluster:
    home: Path
    spec_file: Path
    env: dict[str, str]
    up: dict[str, Any]

    def cli(self, *args: str, timeout: float = 300):
        return run_cli(*args, env=self.env, timeout=timeout)

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
