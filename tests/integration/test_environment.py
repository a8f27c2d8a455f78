"""A run's environment block and `clusterkit env`'s lock, on the real local cluster: the
versions are the node's own, the packages' hash the one its Python gives, the spec's hash that
of the spec `up` saved, and an input's checksum the one its writer recorded."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from clusterkit.runs import environment
from clusterkit.services.playbooks import node_requirements
from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _node_reading() -> dict:
    """What the local cluster's node (this machine's Python) says of itself."""
    proc = subprocess.run([sys.executable, "-m", environment.MODULE], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    reading: dict = json.loads(proc.stdout)
    return reading


def test_runs_record_their_environment_and_env_shows_the_lock(local_cluster: LocalCluster):
    state_dir = Path(local_cluster.up["state_dir"])
    here = environment.digest(_node_reading()["installed"])
    pinned = environment.digest(node_requirements())

    code, gen = local_cluster.run("datagen", "--rows", "20k", "--name", "env-raw",
                                  "--overwrite")  # fmt: skip
    assert code == 0, gen["error"]
    block = gen["environment"]
    versions = block["versions"]
    assert versions["python"] == platform.python_version()
    for key, dist in environment.PACKAGES.items():
        assert versions[key] == metadata.version(dist), key
    assert versions["clusterkit"] == "0.1.0"
    assert versions["java"] and int(versions["java"].split(".")[0]) >= 17, versions
    driver = block["driver"]
    assert block["packages"] == {driver: here}
    assert block["spec"] == hashlib.sha256((state_dir / "spec.yaml").read_bytes()).hexdigest()
    assert block["lock"] == pinned  # written by `up`, copied into the run's setup
    assert block["input"] is None  # datagen reads nothing

    raw = gen["result"]["path"]
    code, etl = local_cluster.run("etl", "--engine", "duckdb", "--input", raw, "--output",
                                  "datasets/env-processed", "--overwrite")  # fmt: skip
    assert code == 0, etl["error"]
    assert etl["environment"]["input"] == {"path": raw, "checksum": gen["result"]["checksum"]}
    assert {k: v for k, v in etl["environment"].items() if k != "input"} == {
        k: v for k, v in block.items() if k != "input"}  # fmt: skip

    shown = local_cluster.cli("env", "--json")
    assert shown.code == 0, shown.stderr
    data = shown.json()
    assert data["variables"]["CLUSTERKIT_STORAGE"] == str(local_cluster.storage)
    assert data["versions"] == versions
    lock = data["lock"]
    assert lock["hash"] == pinned and lock["packages"] == sorted(node_requirements())
    assert lock["nodes"] == {driver: {"hash": here, "matches": True, "unmet": []}}
    assert lock["same"] is True
    written = json.loads((state_dir / environment.LOCK_FILE).read_text())
    assert written["hash"] == pinned and written["nodes"][driver]["hash"] == here

    human = local_cluster.cli("env")
    assert human.code == 0, human.stderr
    assert f"lock: {len(lock['packages'])} pinned packages, hash {pinned[:12]}" in human.stdout
    assert f"installed {here[:12]}  meets the pinned set" in human.stdout
