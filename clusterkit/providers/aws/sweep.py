"""Whatever still carries the cluster's tag: found, named, and removed in dependency order.

``clusterkit down`` runs ``terraform destroy`` and then :func:`find`; anything found is named
and removed by :func:`remove` (which is also all of ``down`` when the Terraform state is
lost). Kinds: instances, volumes, addresses, key pairs, security groups, route tables,
internet gateways, subnets and the VPC.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusterkit.providers.aws.tags import TAG_KEY, tag_filter

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
#: The order of removal: what depends on a resource goes before it.
KINDS = (
    "instance",
    "address",
    "volume",
    "key-pair",
    "security-group",
    "route-table",
    "internet-gateway",
    "subnet",
    "vpc",
)


@dataclass(frozen=True)
class Tagged:
    """One AWS resource of the cluster: its kind, id and Name tag."""

    kind: str
    id: str
    name: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.id}" + (f" ({self.name})" if self.name else "")


def _name(tags: list[dict[str, str]] | None) -> str:
    return next((t["Value"] for t in tags or [] if t["Key"] == "Name"), "")


def find(ec2: Any, cluster: str) -> list[Tagged]:
    """Every resource tagged ``clusterkit:cluster = cluster`` in the client's region, in
    removal order. Terminated instances are gone already and not listed."""
    f = tag_filter(cluster)
    found: list[Tagged] = []
    for reservation in ec2.describe_instances(
        Filters=[*f, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    )["Reservations"]:
        found += [
            Tagged("instance", i["InstanceId"], _name(i.get("Tags")))
            for i in reservation["Instances"]
        ]
    found += [
        Tagged("address", a["AllocationId"], _name(a.get("Tags")))
        for a in ec2.describe_addresses(Filters=f)["Addresses"]
    ]
    found += [
        Tagged("volume", v["VolumeId"], _name(v.get("Tags")))
        for v in ec2.describe_volumes(Filters=f)["Volumes"]
    ]
    found += [
        Tagged("key-pair", k["KeyPairId"], k["KeyName"])
        for k in ec2.describe_key_pairs(Filters=f)["KeyPairs"]
    ]
    found += [
        Tagged("security-group", g["GroupId"], g["GroupName"])
        for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]
        if g["GroupName"] != "default"
    ]  # goes with its VPC
    found += [
        Tagged("route-table", r["RouteTableId"], _name(r.get("Tags")))
        for r in ec2.describe_route_tables(Filters=f)["RouteTables"]
        if not any(a.get("Main") for a in r.get("Associations", []))
    ]
    found += [
        Tagged("internet-gateway", g["InternetGatewayId"], _name(g.get("Tags")))
        for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]
    ]
    found += [
        Tagged("subnet", s["SubnetId"], _name(s.get("Tags")))
        for s in ec2.describe_subnets(Filters=f)["Subnets"]
    ]
    found += [
        Tagged("vpc", v["VpcId"], _name(v.get("Tags")))
        for v in ec2.describe_vpcs(Filters=f)["Vpcs"]
    ]
    return found


def remove(
    ec2: Any, cluster: str, *, say: Callable[[str], None] = print, wait_s: float = 600.0
) -> list[Tagged]:
    """Remove everything :func:`find` lists, instances first (waiting until they are
    terminated); returns what was removed. Errors of one resource do not stop the others;
    what is left is for the caller to :func:`find` again and name."""
    removed: list[Tagged] = []
    found = find(ec2, cluster)
    instances = [t.id for t in found if t.kind == "instance"]
    if instances:
        say(f"terminating {', '.join(instances)}")
        ec2.terminate_instances(InstanceIds=instances)
        _wait_terminated(ec2, instances, wait_s)
        removed += [t for t in found if t.kind == "instance"]
        found = find(ec2, cluster)  # root volumes went with their instances
    for item in found:
        try:
            _REMOVERS[item.kind](ec2, item.name if item.kind == "key-pair" else item.id)
        except Exception as exc:  # named by the caller's second find
            say(f"could not remove {item}: {exc}")
            continue
        removed.append(item)
    return removed


def _wait_terminated(ec2: Any, ids: list[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        states = [
            i["State"]["Name"]
            for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
            for i in r["Instances"]
        ]
        if all(s == "terminated" for s in states):
            return
        time.sleep(5)


def _security_group(ec2: Any, group_id: str) -> None:
    """Rules first: groups that reference each other cannot be deleted otherwise."""
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
    if group.get("IpPermissionsEgress"):
        ec2.revoke_security_group_egress(
            GroupId=group_id, IpPermissions=group["IpPermissionsEgress"]
        )
    ec2.delete_security_group(GroupId=group_id)


def _route_table(ec2: Any, table_id: str) -> None:
    table = ec2.describe_route_tables(RouteTableIds=[table_id])["RouteTables"][0]
    for assoc in table.get("Associations", []):
        ec2.disassociate_route_table(AssociationId=assoc["RouteTableAssociationId"])
    ec2.delete_route_table(RouteTableId=table_id)


def _internet_gateway(ec2: Any, gateway_id: str) -> None:
    gateway = ec2.describe_internet_gateways(InternetGatewayIds=[gateway_id])
    for attachment in gateway["InternetGateways"][0].get("Attachments", []):
        ec2.detach_internet_gateway(InternetGatewayId=gateway_id, VpcId=attachment["VpcId"])
    ec2.delete_internet_gateway(InternetGatewayId=gateway_id)


_REMOVERS: dict[str, Callable[[Any, str], Any]] = {
    "address": lambda ec2, i: ec2.release_address(AllocationId=i),
    "volume": lambda ec2, i: ec2.delete_volume(VolumeId=i),
    "key-pair": lambda ec2, name: ec2.delete_key_pair(KeyName=name),
    "security-group": _security_group,
    "route-table": _route_table,
    "internet-gateway": _internet_gateway,
    "subnet": lambda ec2, i: ec2.delete_subnet(SubnetId=i),
    "vpc": lambda ec2, i: ec2.delete_vpc(VpcId=i),
}
assert set(_REMOVERS) | {"instance"} == set(KINDS)
assert TAG_KEY  # the tag every kind above is found by
