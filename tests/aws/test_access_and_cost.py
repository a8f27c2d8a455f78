"""`allow-ip` moves the one SSH rule in place; `cost` prices what the cluster runs now."""

from __future__ import annotations

import pytest

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws import access, pricing
from tests.aws.conftest import make_cluster


def _ssh_cidrs(ec2, group_id):
    return [r["CidrIpv4"] for r in access.ssh_rules(ec2, group_id)]


def test_allow_ip_modifies_the_rule_in_place(ec2):
    made = make_cluster(ec2, "alpha", operator_cidr="198.51.100.7/32")
    before = access.ssh_rules(ec2, made["master_sg"])
    change = access.allow_ip(ec2, "alpha", "81.2.69.160/32")
    assert change.changed and change.old_cidr == "198.51.100.7/32"
    after = access.ssh_rules(ec2, made["master_sg"])
    assert [r["CidrIpv4"] for r in after] == ["81.2.69.160/32"]
    assert after[0]["SecurityGroupRuleId"] == before[0]["SecurityGroupRuleId"] == change.rule_id
    assert after[0]["Description"] == access.SSH_RULE_DESCRIPTION
    # the NAT rule for the private subnet is untouched
    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [made["master_sg"]]}]
    )["SecurityGroupRules"]
    assert "10.0.2.0/24" in {r.get("CidrIpv4") for r in rules if not r["IsEgress"]}


def test_allow_ip_again_changes_nothing(ec2):
    made = make_cluster(ec2, "alpha", operator_cidr="81.2.69.160/32")
    change = access.allow_ip(ec2, "alpha", "81.2.69.160/32")
    assert not change.changed
    assert _ssh_cidrs(ec2, made["master_sg"]) == ["81.2.69.160/32"]


def test_allow_ip_refuses_a_group_with_other_ssh_rules(ec2):
    made = make_cluster(ec2, "alpha")
    ec2.authorize_security_group_ingress(
        GroupId=made["master_sg"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    with pytest.raises(ClusterkitError, match=r"exactly one SSH rule, found .*0\.0\.0\.0/0"):
        access.allow_ip(ec2, "alpha", "81.2.69.160/32")


def test_allow_ip_on_a_cluster_that_is_not_there(ec2):
    with pytest.raises(ClusterkitError, match=r"cluster 'ghost' has no master security group"):
        access.allow_ip(ec2, "ghost", "81.2.69.160/32")


def test_cost_of_the_running_cluster(ec2):
    make_cluster(ec2, "alpha")
    cost = pricing.running(ec2, "alpha", "us-east-1")
    counts = {line.what: line.count for line in cost.lines}
    assert counts == {"t2.large instance": 2, "GB of gp3": 30, "public IPv4": 1}
    expected = 2 * 0.0928 + 30 * 0.08 / 730 + 1 * 0.005
    assert cost.hourly == pytest.approx(expected)
    assert cost.formula().endswith(f"= ${cost.hourly:.4f}/h")


def test_cost_stopped_instances_bill_only_their_volumes(ec2):
    made = make_cluster(ec2, "alpha")
    ec2.stop_instances(InstanceIds=[made["worker"]])
    counts = {line.what: line.count for line in pricing.running(ec2, "alpha", "us-east-1").lines}
    assert counts == {"t2.large instance": 1, "GB of gp3": 30, "public IPv4": 1}


def test_estimate_of_the_default_cluster():
    cost = pricing.estimate(region="us-east-1", master_type="t2.large", worker_type="t2.large",
                            workers=1, volume_gb=15)  # fmt: skip
    expected = 2 * 0.0928 + 30 * 0.08 / 730 + 0.005
    assert cost.hourly == pytest.approx(expected)
    assert cost.formula() == (
        f"2 × $0.0928/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = ${expected:.4f}/h"
    )


def test_no_price_for_an_unknown_region_or_type():
    with pytest.raises(ClusterkitError, match=r"no list price for t2.large in ap-south-2 .*dated"):
        pricing.instance_hourly("t2.large", "ap-south-2")
    with pytest.raises(ClusterkitError, match=r"no list price for x9.huge"):
        pricing.instance_hourly("x9.huge", "us-east-1")


def test_allow_ip_and_cost_by_id_leave_a_same_name_cluster_alone(ec2):
    ours = make_cluster(ec2, "alpha", operator_cidr="198.51.100.7/32")
    theirs = make_cluster(ec2, "alpha", operator_cidr="203.0.113.9/32", key_name="k2")
    assert access.master_group(ec2, "alpha", ours["cluster_id"]) == ours["master_sg"]
    access.allow_ip(ec2, "alpha", "81.2.69.160/32", cluster_id=ours["cluster_id"])
    assert _ssh_cidrs(ec2, ours["master_sg"]) == ["81.2.69.160/32"]
    assert _ssh_cidrs(ec2, theirs["master_sg"]) == ["203.0.113.9/32"]
    with pytest.raises(ClusterkitError, match=r"2 clusters named 'alpha' have a master security"):
        access.allow_ip(ec2, "alpha", "81.2.69.160/32")  # no id: refused, not guessed
    both = {line.what: line.count for line in pricing.running(ec2, "alpha", "us-east-1").lines}
    mine = pricing.running(ec2, "alpha", "us-east-1", cluster_id=ours["cluster_id"])
    assert both["t2.large instance"] == 4
    assert {line.what: line.count for line in mine.lines}["t2.large instance"] == 2
