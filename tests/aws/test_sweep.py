"""The sweep after `terraform destroy`: everything tagged with the cluster is found, named
and removed in dependency order; other clusters' and untagged resources are left alone."""

from __future__ import annotations

from clusterkit.providers.aws import sweep
from tests.aws.conftest import make_cluster


def test_find_lists_every_kind_in_removal_order(ec2):
    made = make_cluster(ec2, "alpha")
    found = sweep.find(ec2, "alpha")
    kinds = [t.kind for t in found]
    assert kinds == sorted(kinds, key=sweep.KINDS.index)
    assert {t.id for t in found if t.kind == "instance"} == {made["master"], made["worker"]}
    assert {t.id for t in found if t.kind == "security-group"} == {
        made["master_sg"],
        made["members_sg"],
    }
    assert [t.id for t in found if t.kind == "vpc"] == [made["vpc"]]
    for kind in ("key-pair", "route-table", "internet-gateway", "subnet", "volume"):
        assert kind in kinds, kind
    assert len([t for t in found if t.kind == "route-table"]) == 2  # not the VPC's main one
    assert "instance " + made["master"] + " (master)" in [str(t) for t in found]


def test_remove_leaves_nothing_tagged_and_spares_the_rest(ec2):
    make_cluster(ec2, "alpha")
    other = make_cluster(ec2, "beta")
    untagged = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    said: list[str] = []
    removed = sweep.remove(ec2, "alpha", say=said.append, wait_s=30)
    assert sweep.find(ec2, "alpha") == []
    assert {t.kind for t in removed} >= {"instance", "security-group", "subnet", "vpc"}
    assert any(line.startswith("terminating ") for line in said)
    beta = sweep.find(ec2, "beta")
    assert other["vpc"] in {t.id for t in beta} and len(beta) >= 12
    assert untagged in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}


def test_remove_with_nothing_tagged_does_nothing(ec2):
    assert sweep.remove(ec2, "ghost", say=lambda _: None) == []


def test_an_unremovable_resource_is_said_and_found_again(ec2):
    """A resource AWS refuses to delete is named; the second find still lists it."""
    made = make_cluster(ec2, "alpha")
    # an untagged subnet someone added by hand keeps the VPC in use
    ec2.create_subnet(VpcId=made["vpc"], CidrBlock="10.0.9.0/24")
    said: list[str] = []
    sweep.remove(ec2, "alpha", say=said.append, wait_s=30)
    left = {t.kind for t in sweep.find(ec2, "alpha")}
    assert "vpc" in left
    assert any(line.startswith("could not remove vpc ") for line in said)
