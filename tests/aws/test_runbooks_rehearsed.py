"""The AWS runbooks rehearsed against moto's server on loopback (no cluster, no Terraform):
the incident made in moto's EC2, ``clusterkit doctor`` naming the runbook, the page's ``bash
steps`` run as written (``clusterkit`` for real, boto3 sent to moto by ``AWS_ENDPOINT_URL``),
and doctor no longer naming it (:func:`tests.runbooks.rehearse.rehearse`).

- operator-ip-changed: the master's SSH rule opens 81.2.69.160/32, and this machine's public
  address (a checkip on loopback, ``CLUSTERKIT_CHECKIP_URL``) is now 81.2.69.161.
- left-billing: an earlier cluster ``alpha`` of the operator's (its ``clusterkit:owner`` tag
  is moto's caller) whose state was lost left its nodes and VPC, while the ``alpha`` made
  again since is known here and a classmate's ``alpha`` runs in the same account: doctor
  names only the lost one, ``down`` lists only its resources, the test answers its question
  yes, and only the lost one's go (the classmate's stays, said to be theirs).

The cluster known here is a stopped one (``cluster.json`` with ``power: stopped``), so no
check tries to reach its nodes. moto's server needs Flask (a dev dependency): without it the
tests are skipped, and fail under CI.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.spec import parse_spec
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts, Endpoints
from clusterkit.exec.ssh import ensure_key
from clusterkit.providers.aws import sweep
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.aws.tags import ID_TAG_KEY
from tests.aws.conftest import CLASSMATE, MOTO_CALLER, REGION, cluster_tags, make_cluster
from tests.conftest import cli_env
from tests.runbooks.rehearse import rehearse

PUBLIC = "81.2.69.160"
MOVED = "81.2.69.161"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port: its URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:  # Flask missing: `bash scripts/bootstrap.sh --dev` installs it
        if os.environ.get("CI"):
            raise
        pytest.skip(f"moto's server cannot start here: {exc}")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


class CheckIp:
    """A checkip on loopback: answers ``address`` to any GET."""

    def __init__(self) -> None:
        self.address = PUBLIC
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"{outer.address}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def checkip() -> Iterator[CheckIp]:
    found = CheckIp()
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def moto(moto_server: str, monkeypatch) -> Iterator[Any]:
    """An EC2 client of moto's server, its state fresh (reset before the test)."""
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in _aws_env(moto_server).items():
        monkeypatch.setenv(key, value)
    import requests

    requests.post(f"{moto_server}/moto-api/reset", timeout=10).raise_for_status()
    yield boto3.client("ec2", region_name=REGION, endpoint_url=moto_server)


def _aws_env(url: str) -> dict[str, str]:
    """What sends this machine's boto3 to moto's server, with fake credentials."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": url,
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "NO_PROXY": "127.0.0.1,localhost"}  # fmt: skip


def _env(home: Path, url: str, checkip: CheckIp) -> dict[str, str]:
    base = {k: v for k, v in cli_env(home).items() if not k.startswith("AWS_")}
    return {**base, **_aws_env(url), "CLUSTERKIT_CHECKIP_URL": checkip.url}


def _stopped_cluster(home: Path, ec2: Any, made: dict[str, str], *, name: str = "alpha") -> Path:
    """The state folder ``up`` and ``stop`` leave of the cluster moto holds as ``made``:
    Terraform's variables and a state holding its VPC, its id, its spec, its SSH key (the key
    pair in EC2 holds it), and ``cluster.json`` saying it is stopped."""
    paths = ClusterPaths(home / "clusters" / name)
    paths.root.mkdir(parents=True, mode=0o700)
    tf = AwsProvider.terraform(paths)
    tf.write_vars({"cluster_name": name, "cluster_id": made["cluster_id"], "region": REGION,
                   "operator_cidr": f"{PUBLIC}/32"})  # fmt: skip
    (tf.work / "cluster-id").write_text(made["cluster_id"] + "\n")
    resource = {"mode": "managed", "type": "aws_vpc", "name": "main",
                "instances": [{"attributes": {"id": made["vpc"]}}]}  # fmt: skip
    tf.state_file.write_text(json.dumps({"resources": [resource]}))
    spec = parse_spec({"provider": "aws", "name": name})
    paths.spec_file.write_text(f"provider: aws\nname: {name}\n")
    ssh = AwsProvider().ssh_settings(paths)
    public = ensure_key(ssh.key)
    ec2.delete_key_pair(KeyName=f"clusterkit-{name}")
    tags = [{"ResourceType": "key-pair", "Tags": cluster_tags(name, made["cluster_id"])}]
    ec2.import_key_pair(KeyName=f"clusterkit-{name}", PublicKeyMaterial=public.encode(),
                        TagSpecifications=tags)  # fmt: skip
    nodes = (Node("master", "10.0.1.10", ("master",), ssh_host="198.51.100.10"),
             Node("worker-1", "10.0.2.10", ("worker",), ssh_host="10.0.2.10",
                  jump_host="198.51.100.10"))  # fmt: skip
    ClusterState(
        name=name, provider="aws", spec=spec, started_at="2026-12-03T08:00:00.000+00:00",
        state_dir=str(paths.root), storage_root="hdfs://10.0.1.10:9000/clusterkit",
        inventory=Inventory(name, "aws", nodes), endpoints=Endpoints.for_spec(spec),
        node_python=sys.executable, runs_dir="/var/lib/clusterkit/runs", ssh=ssh,
        power="stopped", stopped_at="2026-12-03T09:00:00.000+00:00",
    ).save(paths)  # fmt: skip
    for secret in (paths.ray_token, paths.spark_connect_token, paths.spark_secret):
        secret.write_text("s3cret")
        secret.chmod(0o600)
    Contexts(home).add(name, paths.root)
    return paths.root


def _ours(check: str, report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["checks"] if f["check"] == check]


def test_operator_ip_changed_allow_ip_opens_ssh_to_the_new_address(moto, moto_server,
                                                                   checkip, tmp_path):  # fmt: skip
    home = tmp_path / "home"
    made = make_cluster(moto, "alpha", operator_cidr=f"{PUBLIC}/32")
    state_dir = _stopped_cluster(home, moto, made)
    checkip.address = MOVED
    env = _env(home, moto_server, checkip)
    done = rehearse("operator-ip-changed", "sshrule", env=env, cwd=tmp_path,
                    statuses=("warn",), clean=False)  # fmt: skip
    assert done.finding["data"] == {"CLUSTER": "alpha", "CIDR": f"{MOVED}/32"}
    [after] = _ours("sshrule", done.report)
    assert after["status"] == "ok" and f"your address {MOVED} is inside" in after["saw"]
    for check in ("aws", "keypair", "orphans"):
        assert [f["status"] for f in _ours(check, done.report)] == ["ok"], done.report
    group = [{"Name": "group-id", "Values": [made["master_sg"]]}]
    rules = moto.describe_security_group_rules(Filters=group)["SecurityGroupRules"]
    assert f"{MOVED}/32" in {r.get("CidrIpv4") for r in rules if r.get("FromPort") == 22}
    saved = json.loads((state_dir / "terraform" / "cluster.tfvars.json").read_text())
    assert saved["operator_cidr"] == f"{MOVED}/32"  # the next apply keeps it


def test_left_billing_the_lost_clusters_resources_go_and_the_known_ones_stay(
    moto, moto_server, checkip, tmp_path
):
    home = tmp_path / "home"
    known = make_cluster(moto, "alpha", operator_cidr=f"{PUBLIC}/32", owner=MOTO_CALLER)
    _stopped_cluster(home, moto, known)
    theirs = make_cluster(moto, "alpha", key_name="clusterkit-alpha-bea", owner=CLASSMATE)
    lost = make_cluster(moto, "alpha", key_name="clusterkit-alpha-old", owner=MOTO_CALLER)
    env = _env(home, moto_server, checkip)
    done = rehearse(
        "left-billing", "orphans", env=env, cwd=tmp_path, clean=False, answers="y\n"
    )  # the operator's answer, once `down` listed what goes
    # `down` named each resource before asking: the lost cluster's, none of the known one's
    listed, asked, _ = done.said.partition("Remove them?")
    assert asked, done.said
    assert f"instance {lost['master']} (master) [{ID_TAG_KEY}={lost['cluster_id']}]" in listed
    assert f"vpc {lost['vpc']}" in listed
    assert known["master"] not in listed and known["vpc"] not in listed
    assert theirs["master"] not in listed and theirs["vpc"] not in listed
    assert [f["data"] for f in done.findings] == [{"CLUSTER": "alpha", "REGION": REGION,
                                                   "CLUSTER_ID": lost["cluster_id"]}]  # fmt: skip
    assert lost["master"] in done.finding["saw"] and "/h at list prices" in done.finding["saw"]
    assert f"yours (clusterkit:owner={MOTO_CALLER})" in done.finding["saw"]
    [after] = _ours("orphans", done.report)  # the classmate's alone, said to be theirs
    assert after["status"] == "ok" and f"belongs to {CLASSMATE}" in after["saw"], after
    assert theirs["master"] in after["saw"] and after["runbook"] is None
    left = sweep.find(moto, "alpha")
    assert {t.cluster_id for t in left} == {known["cluster_id"], theirs["cluster_id"]}, left
    kept = {
        known["master"],
        known["worker"],
        known["vpc"],
        theirs["master"],
        theirs["worker"],
        theirs["vpc"],
    }
    assert kept <= {t.id for t in left}
    assert all(t.kind != "instance" or t.id in kept for t in left)
    assert ID_TAG_KEY in done.finding["saw"]
