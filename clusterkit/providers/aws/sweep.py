"""Whatever still carries the cluster's tags: found, judged, named, and removed in
dependency order.

``clusterkit down`` runs ``terraform destroy`` and then :func:`remove` on what is left (it is
all of ``down`` when the Terraform state is lost). Kinds: instances, volumes, addresses, key
pairs, security groups, route tables, internet gateways, subnets and the VPC. A spot
instance's persistent request is cancelled before the instance is terminated (it would
launch it again).

What a sweep of a :class:`Scope` removes:

- only resources tagged with the cluster's name *and* its id (``clusterkit:cluster-id``); one
  with the name and another id, or none, belongs to another cluster of the same name and is
  left, and named with why;
- a resource that lives in a VPC (instance, security group, route table, internet gateway,
  subnet, VPC) outside the recorded VPC only when ``confirm`` says yes (None: it is left);
  key pairs, volumes and addresses live in no VPC and go by their tags alone;
- with no id recorded, anything by its name alone only when ``confirm`` says yes (None:
  nothing is removed, all is named). A cluster an older kit made (its state here has no id)
  owns only what carries no id; with no state at all (``down --provider aws`` on another
  machine), what carries any id may be its.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusterkit.providers.aws.tags import ID_TAG_KEY, OWNER_TAG_KEY, TAG_KEY, tag_filter, tag_value

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
#: Asked before removing what is in doubt; True: remove it.
Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class Tagged:
    """One AWS resource tagged with the cluster's name: its kind, id, Name tag, cluster id
    tag ("" when it has none), VPC ("" for kinds that live in no VPC), cluster name tag and
    owner tag (the ARN that made it; "" when it has none, an older kit's)."""

    kind: str
    id: str
    name: str = ""
    cluster_id: str = ""
    vpc: str = ""
    cluster: str = ""
    owner: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.id}" + (f" ({self.name})" if self.name else "")


@dataclass(frozen=True)
class Scope:
    """Which tagged resources are this cluster's: its name, its id ("": made by an older
    kit, which tagged no id; None: nothing recorded, any id may be this cluster's) and its
    VPC (None: none recorded)."""

    name: str
    cluster_id: str | None = None
    vpc_id: str | None = None

    def owns(self, item: Tagged) -> bool:
        """Whether ``item`` may be this cluster's: it carries this cluster's id, or none
        for an older kit's cluster (any item may be, when nothing is recorded)."""
        return self.cluster_id is None or item.cluster_id == self.cluster_id

    def foreign(self, item: Tagged) -> str:
        """Why ``item``, which this cluster does not own, is left."""
        theirs = item.cluster_id or "(none)"
        ours = self.cluster_id or "(none: made by an older kit)"
        return (
            f"its {ID_TAG_KEY} is {theirs}, not this cluster's {ours}: another cluster "
            f"named {self.name!r}"
        )

    def doubts(self, item: Tagged) -> list[str]:
        """Why removing ``item`` needs the operator's yes; empty when it needs none."""
        why: list[str] = []
        if self.cluster_id == "":
            why.append(
                f"found by its name alone: cluster {self.name!r} was made by an older kit, "
                f"which tagged no cluster id"
            )
        elif self.cluster_id is None:
            why.append(
                f"found by its name alone: no cluster id is recorded for {self.name!r} on "
                f"this machine"
            )
        if item.vpc and item.vpc != self.vpc_id:
            where = f"the cluster's VPC {self.vpc_id}" if self.vpc_id else "a recorded VPC"
            why.append(f"in {item.vpc}, outside {where}")
        return why


@dataclass
class Swept:
    """A sweep: what :func:`choose` picked, what :func:`remove` then removed, and what is
    left as another cluster's or unconfirmed (each with why)."""

    chosen: list[Tagged] = field(default_factory=list)
    removed: list[Tagged] = field(default_factory=list)
    spared: list[tuple[Tagged, str]] = field(default_factory=list)
    skipped: list[tuple[Tagged, str]] = field(default_factory=list)


def _tagged(kind: str, rid: str, tags: list[dict[str, str]] | None, *, name: str | None = None,
            vpc: str = "") -> Tagged:  # fmt: skip
    """A :class:`Tagged` from an EC2 ``Tags`` list (its Name, unless ``name`` is given)."""
    label = tag_value(tags, "Name") if name is None else name
    return Tagged(kind, rid, label, tag_value(tags, ID_TAG_KEY), vpc, tag_value(tags, TAG_KEY),
                  tag_value(tags, OWNER_TAG_KEY))  # fmt: skip


def find(ec2: Any, cluster: str | None) -> list[Tagged]:
    """Every resource tagged ``clusterkit:cluster = cluster`` (of any cluster id; None: of
    any cluster) in the client's region, in removal order. Terminated instances are gone
    already and not listed."""
    f = tag_filter(cluster) if cluster is not None else [{"Name": "tag-key", "Values": [TAG_KEY]}]
    live = [*f, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    found = [
        _tagged("instance", i["InstanceId"], i.get("Tags"), vpc=i.get("VpcId", ""))
        for reservation in ec2.describe_instances(Filters=live)["Reservations"]
        for i in reservation["Instances"]
    ]
    found += [
        _tagged("address", a["AllocationId"], a.get("Tags"))
        for a in ec2.describe_addresses(Filters=f)["Addresses"]
    ]
    found += [
        _tagged("volume", v["VolumeId"], v.get("Tags"))
        for v in ec2.describe_volumes(Filters=f)["Volumes"]
    ]
    found += [
        _tagged("key-pair", k["KeyPairId"], k.get("Tags"), name=k["KeyName"])
        for k in ec2.describe_key_pairs(Filters=f)["KeyPairs"]
    ]
    found += [
        _tagged("security-group", g["GroupId"], g.get("Tags"), name=g["GroupName"], vpc=g["VpcId"])
        for g in ec2.describe_security_groups(Filters=f)["SecurityGroups"]
        if g["GroupName"] != "default"
    ]  # goes with its VPC
    found += [
        _tagged("route-table", r["RouteTableId"], r.get("Tags"), vpc=r["VpcId"])
        for r in ec2.describe_route_tables(Filters=f)["RouteTables"]
        if not any(a.get("Main") for a in r.get("Associations", []))
    ]
    found += [
        _tagged(
            "internet-gateway",
            g["InternetGatewayId"],
            g.get("Tags"),
            vpc=next((a["VpcId"] for a in g.get("Attachments", [])), ""),
        )
        for g in ec2.describe_internet_gateways(Filters=f)["InternetGateways"]
    ]
    found += [
        _tagged("subnet", s["SubnetId"], s.get("Tags"), vpc=s["VpcId"])
        for s in ec2.describe_subnets(Filters=f)["Subnets"]
    ]
    found += [
        _tagged("vpc", v["VpcId"], v.get("Tags"), vpc=v["VpcId"])
        for v in ec2.describe_vpcs(Filters=f)["Vpcs"]
    ]
    return found


def ours(ec2: Any, scope: Scope) -> list[Tagged]:
    """What :func:`find` lists that may be this cluster's (another cluster's left out)."""
    return [t for t in find(ec2, scope.name) if scope.owns(t)]


def _label(item: Tagged, scope: Scope) -> str:
    """``item`` as a question names it: with its cluster id when the scope has none."""
    return (
        f"{item} [{ID_TAG_KEY}={item.cluster_id}]"
        if item.cluster_id and not scope.cluster_id
        else str(item)
    )


def choose(found: list[Tagged], scope: Scope, confirm: Confirm | None) -> Swept:
    """Which of ``found`` to remove: this cluster's, each doubt asked once of ``confirm``
    for all the resources it concerns (None: answered no). Nothing is removed here."""
    result = Swept(spared=[(t, scope.foreign(t)) for t in found if not scope.owns(t)])
    mine = [t for t in found if scope.owns(t)]
    doubts = {t: scope.doubts(t) for t in mine}
    answers: dict[str, bool] = {}
    for reason in dict.fromkeys(r for t in mine for r in doubts[t]):
        items = ", ".join(_label(t, scope) for t in mine if reason in doubts[t])
        question = f"cluster {scope.name!r}: remove {items} ({reason})?"
        answers[reason] = confirm is not None and bool(confirm(question))
    for item in mine:
        refused = [r for r in doubts[item] if not answers[r]]
        if refused:
            result.skipped.append((item, "; ".join(refused) + "; not confirmed"))
        else:
            result.chosen.append(item)
    return result


def remove(ec2: Any, scope: Scope, *, say: Callable[[str], None] = print,
           confirm: Confirm | None = None, wait_s: float = 600.0) -> Swept:  # fmt: skip
    """Remove what :func:`choose` picks of what :func:`find` lists, instances first (waiting
    until they are terminated); what is left is said with why. Errors of one resource do not
    stop the others (they are said, and left for the caller to :func:`find` again)."""
    result = choose(find(ec2, scope.name), scope, confirm)
    for item, why in [*result.spared, *result.skipped]:
        say(f"left {item}: {why}")
    chosen = result.chosen
    if chosen:
        say(f"still tagged {TAG_KEY}={scope.name}: {', '.join(map(str, chosen))}; removing")
    instances = [t for t in chosen if t.kind == "instance"]
    if instances:
        _cancel_spot_requests(ec2, [t.id for t in instances], say)
        say(f"terminating {', '.join(t.id for t in instances)}")
        ec2.terminate_instances(InstanceIds=[t.id for t in instances])
        _wait_terminated(ec2, [t.id for t in instances], wait_s)
        result.removed += instances
        still = {t.id for t in find(ec2, scope.name)}  # root volumes went with their instances
        chosen = [t for t in chosen if t.kind != "instance" and t.id in still]
    for item in chosen:
        try:
            _REMOVERS[item.kind](ec2, item.name if item.kind == "key-pair" else item.id)
        except Exception as exc:  # named by the caller's second find
            say(f"could not remove {item}: {exc}")
            continue
        result.removed.append(item)
    return result


def _cancel_spot_requests(ec2: Any, ids: list[str], say: Callable[[str], None]) -> None:
    """Cancel the persistent spot requests of instances ``ids`` before they are terminated
    (else a request launches its instance again); a refusal is said, and the sweep goes on."""
    from clusterkit.providers.aws import spot

    try:
        described = [i for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
                     for i in r["Instances"]]  # fmt: skip
        cancelled = spot.cancel_requests(ec2, described)
    except Exception as exc:  # said: the operator cancels them in the console
        say(f"could not cancel the spot requests of {', '.join(ids)}: {exc}")
        return
    if cancelled:
        say(f"cancelled the spot requests {', '.join(cancelled)}")


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
