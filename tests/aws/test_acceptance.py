"""Against real AWS: the whole path, once. Skipped unless AWS credentials are set and
CLUSTERKIT_AWS_ACCEPTANCE=1 (it starts two t2.large instances: see docs/aws.md for what a run
costs at list prices). It ends with `down` and a sweep that must find
nothing tagged with the cluster, whatever failed before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

OPT_IN = "CLUSTERKIT_AWS_ACCEPTANCE"
CLUSTERKIT = str(Path(sys.executable).parent / "clusterkit")


def _has_credentials() -> bool:
    try:
        import boto3

        return boto3.session.Session().get_credentials() is not None
    except Exception:
        return False


pytestmark = [
    pytest.mark.aws_live,
    pytest.mark.skipif(
        os.environ.get(OPT_IN) != "1" or not _has_credentials(),
        reason=f"real AWS: needs AWS credentials and {OPT_IN}=1 (it bills two t2.large nodes)",
    ),
]


class Cloud:
    def __init__(self, home: Path, name: str) -> None:
        self.name = name
        self.env = {**os.environ, "CLUSTERKIT_HOME": str(home)}

    def ck(self, *args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLUSTERKIT, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def ck_json(self, *args: str) -> Any:
        proc = self.ck(*args, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    from clusterkit.providers.aws import preflight, sweep

    c = Cloud(tmp_path_factory.mktemp("aws-home"), f"ckacc-{uuid.uuid4().hex[:6]}")
    try:
        up = c.ck("up", "--provider", "aws", "--name", c.name, "--yes", timeout=3600)
        assert up.returncode == 0, up.stdout + up.stderr
        yield c
    finally:
        down = c.ck("down", "--cluster", c.name, timeout=1800)
        ec2 = preflight.session(None).client("ec2")
        left = sweep.find(ec2, c.name)
        if left:  # remove them anyway (the name is this run's own), then fail
            sweep.remove(ec2, sweep.Scope(c.name), say=print, confirm=lambda q: True)
        assert down.returncode == 0, down.stdout + down.stderr
        assert left == [], left


def test_every_resource_carries_the_cluster_id(cloud: Cloud):
    from clusterkit.providers.aws import preflight, sweep

    home = Path(cloud.env["CLUSTERKIT_HOME"])
    made = (home / "clusters" / cloud.name / "terraform" / "cluster-id").read_text().strip()
    found = sweep.find(preflight.session(None).client("ec2"), cloud.name)
    assert len(found) >= 12
    assert {t.cluster_id for t in found} == {made}, [str(t) for t in found if t.cluster_id != made]


def test_healthy_with_the_worker_and_hdfs(cloud: Cloud):
    status = cloud.ck_json("status")
    states = {(s["name"], s["state"]) for s in status["services"]}
    assert ("spark-master", "up") in states and ("spark-worker", "up") in states
    assert ("ray-node", "up") in states and ("storage", "up") in states
    assert [n["name"] for n in status["nodes"]] == ["master", "worker-1"]


def test_the_jobs_at_small_scale(cloud: Cloud):
    for job in (
        ["datagen", "--rows", "100k"],
        ["etl"],
        ["top-earners"],
        ["age-extremes"],
        ["train"],
        ["predict"],
        ["ray-pi"],
    ):
        record = cloud.ck_json("run", *job)
        assert record["status"] == "succeeded", record


def test_remote_operations(cloud: Cloud, tmp_path: Path):
    run = cloud.ck("exec", "hostname")
    assert run.returncode == 0 and {"[master] master", "[worker] worker"} <= set(
        run.stdout.splitlines()
    )
    note = tmp_path / "note.txt"
    note.write_text("hello\n")
    assert cloud.ck("copy", str(note), "/tmp/note.txt").returncode == 0
    assert cloud.ck("ssh", "worker", "--", "cat", "/tmp/note.txt").stdout == "hello\n"


def test_cost_and_allow_ip(cloud: Cloud):
    cost = cloud.ck_json("cost")
    assert {line["what"] for line in cost["lines"]} >= {"t2.large instance", "GB of gp3"}
    change = cloud.ck_json("allow-ip")
    assert change["changed"] is False  # the same machine, the same address
