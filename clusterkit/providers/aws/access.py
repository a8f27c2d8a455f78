"""``clusterkit allow-ip``: SSH follows the operator to a new address (campus Wi-Fi).

The master's group has one SSH rule (Terraform's ``ssh_from_operator``); it is modified in
place, keeping its id, so Terraform sees the same rule, and the cluster's Terraform variables
get the new CIDR, so the next ``up`` or ``down`` plans no change to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws.tags import tag_filter

SSH_RULE_DESCRIPTION = "SSH from the operator only"


@dataclass(frozen=True)
class SshRuleChange:
    group_id: str
    rule_id: str
    old_cidr: str
    new_cidr: str

    @property
    def changed(self) -> bool:
        return self.old_cidr != self.new_cidr


def master_group(ec2: Any, cluster: str, cluster_id: str | None = None) -> str:
    """The id of the cluster's master security group (found by its tags and name; with
    ``cluster_id``, never another cluster's of the same name)."""
    groups = ec2.describe_security_groups(
        Filters=[
            *tag_filter(cluster, cluster_id),
            {"Name": "group-name", "Values": [f"clusterkit-{cluster}-master"]},
        ]
    )["SecurityGroups"]
    if not groups:
        raise ClusterkitError(
            f"cluster {cluster!r} has no master security group in this region "
            f"(clusterkit-{cluster}-master); is it up? (`clusterkit status`)"
        )
    if len(groups) > 1:  # clusters of the same name, and no id to tell them apart
        found = ", ".join(f"{g['GroupId']} in {g['VpcId']}" for g in groups)
        raise ClusterkitError(
            f"{len(groups)} clusters named {cluster!r} have a master security group here "
            f"({found}) and this cluster's state records no cluster id to tell them apart; "
            f"change the SSH rule of yours in the EC2 console"
        )
    return str(groups[0]["GroupId"])


def ssh_rules(ec2: Any, group_id: str) -> list[dict[str, Any]]:
    """The group's ingress rules that open TCP 22 to an IPv4 range."""
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group_id]}])[
        "SecurityGroupRules"
    ]
    return [
        r
        for r in rules
        if not r.get("IsEgress")
        and r.get("IpProtocol") == "tcp"
        and r.get("FromPort") == 22
        and r.get("ToPort") == 22
        and r.get("CidrIpv4")
    ]


def allow_ip(
    ec2: Any, cluster: str, new_cidr: str, *, cluster_id: str | None = None
) -> SshRuleChange:
    """Point the SSH rule at ``new_cidr`` (already checked by the caller) in the group of
    the cluster (of ``cluster_id``, when given). The rule must be the kit's only SSH rule;
    anything else is refused, naming the rules found."""
    group_id = master_group(ec2, cluster, cluster_id)
    rules = ssh_rules(ec2, group_id)
    if len(rules) != 1:
        found = ", ".join(f"{r['SecurityGroupRuleId']} {r['CidrIpv4']}" for r in rules) or "none"
        raise ClusterkitError(
            f"security group {group_id} should hold exactly one SSH rule, found {found}; "
            f"run `clusterkit up` to restore it"
        )
    rule = rules[0]
    change = SshRuleChange(group_id, rule["SecurityGroupRuleId"], rule["CidrIpv4"], new_cidr)
    if change.changed:
        ec2.modify_security_group_rules(
            GroupId=group_id,
            SecurityGroupRules=[
                {
                    "SecurityGroupRuleId": change.rule_id,
                    "SecurityGroupRule": {
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "CidrIpv4": new_cidr,
                        "Description": SSH_RULE_DESCRIPTION,
                    },
                }
            ],
        )
    return change
