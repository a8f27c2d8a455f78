"""``clusterkit scale`` on AWS: which workers a new count makes and removes, found by the
tags infra/nodes.tf gives each worker (``Name = clusterkit-NAME-worker-N``,
``clusterkit:role = worker``, and the cluster's name and id).

Terraform's ``count`` numbers the workers worker-1 to worker-N: growing makes the next
numbers, shrinking removes the highest ones. Workers AWS reclaimed (spot, :mod:`.spot`) among
those kept are made again by the same apply. Pure boto3 on a client (or session) the caller
gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.inventory import worker_name
from clusterkit.providers.aws import spot
from clusterkit.providers.aws.sweep import LIVE_STATES
from clusterkit.providers.aws.tags import ROLE_TAG_KEY, tag_filter


@dataclass(frozen=True)
class WorkerInstance:
    """One worker's EC2 instance: its node name, id, state and market."""

    name: str
    instance_id: str
    state: str
    market: str = "on-demand"


@dataclass
class ScalePlan:
    """What going from ``current`` to ``target`` workers does: the workers made (``add``,
    in order), the instances removed (``remove``, the highest-numbered first), and the
    workers kept whose spot instance AWS reclaimed, made again (``reclaimed``)."""

    cluster: str
    current: int
    target: int
    add: list[str] = field(default_factory=list)
    remove: list[WorkerInstance] = field(default_factory=list)
    reclaimed: list[str] = field(default_factory=list)

    @property
    def made(self) -> list[str]:
        """Every worker that comes up new (added or made again): the ones to provision."""
        return sorted({*self.add, *self.reclaimed}, key=_number)

    @property
    def removed_ids(self) -> list[str]:
        return [w.instance_id for w in self.remove]

    @property
    def changed(self) -> bool:
        return bool(self.add or self.remove or self.reclaimed)


def _number(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _ec2(session_or_client: Any) -> Any:
    """An EC2 client: ``session_or_client`` itself, or one made from a boto3 session."""
    if hasattr(session_or_client, "describe_instances"):
        return session_or_client
    return session_or_client.client("ec2")


def worker_instances(ec2: Any, cluster_name: str, cluster_id: str | None,
                     *, states: list[str] | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """The cluster's worker instances (describe_instances' shape) in ``states`` (default:
    not terminated), by its name, id (None: any) and role tags."""
    from botocore.exceptions import BotoCoreError, ClientError

    filters = [*tag_filter(cluster_name, cluster_id),
               {"Name": f"tag:{ROLE_TAG_KEY}", "Values": ["worker"]},
               {"Name": "instance-state-name", "Values": states or LIVE_STATES}]  # fmt: skip
    try:
        pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
        return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
    except (ClientError, BotoCoreError) as exc:
        raise ClusterkitError(f"cluster {cluster_name!r}: EC2 could not be asked for its "
                              f"workers: {exc}") from exc  # fmt: skip


def _spot_requests(ec2: Any, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The spot requests of ``instances`` (none when EC2 does not say: StateReason alone)."""
    ids = [i["InstanceId"] for i in instances if spot.is_spot(i)]
    try:
        return spot.requests_of(ec2, ids)
    except Exception:  # the instances' StateReason still tells an interruption
        return []


def reclaimed_workers(session_or_client: Any, cluster_name: str,
                      cluster_id: str | None) -> list[str]:  # fmt: skip
    """The workers (``worker-N``) whose spot instance AWS interrupted (:func:`spot.reclaimed`);
    ClusterkitError when EC2 cannot be asked."""
    ec2 = _ec2(session_or_client)
    found = worker_instances(ec2, cluster_name, cluster_id, states=[*LIVE_STATES, "terminated"])
    return spot.reclaimed(found, _spot_requests(ec2, found))


def scale_plan(session_or_client: Any, cluster_id: str | None, cluster_name: str,
               current: int, target: int) -> ScalePlan:  # fmt: skip
    """The plan of going from ``current`` to ``target`` workers (see :class:`ScalePlan`):
    each worker found by its tags (Name ``clusterkit-NAME-worker-N``, ``clusterkit:role =
    worker``, the cluster's name and ``cluster_id``). ClusterkitError when EC2 cannot be
    asked."""
    ec2 = _ec2(session_or_client)
    found = worker_instances(ec2, cluster_name, cluster_id, states=[*LIVE_STATES, "terminated"])
    plan = ScalePlan(cluster_name, current, target)
    plan.add = [worker_name(i) for i in range(current + 1, target + 1)]
    live = [i for i in found if i["State"]["Name"] in LIVE_STATES]
    by_name = {spot.node_name(i): i for i in sorted(live, key=lambda i: i["InstanceId"])}
    for index in range(current, target, -1):
        inst = by_name.get(worker_name(index))
        if inst is not None:
            plan.remove.append(WorkerInstance(
                worker_name(index), inst["InstanceId"], inst["State"]["Name"],
                "spot" if spot.is_spot(inst) else "on-demand"))  # fmt: skip
    kept = {worker_name(i) for i in range(1, min(current, target) + 1)}
    plan.reclaimed = [n for n in spot.reclaimed(found, _spot_requests(ec2, found)) if n in kept]
    return plan
