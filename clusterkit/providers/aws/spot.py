"""Spot workers (``aws.worker_market: spot``): their price now, whether AWS took them back,
and the persistent spot requests behind them.

infra/nodes.tf asks each spot worker with a *persistent* request whose interruption
behaviour is *stop*: AWS stops the worker when it needs the capacity back (the disk kept),
and the request starts it again once capacity returns; the kit's ``stop`` and ``start``
work on such an instance. Two consequences the kit takes care of:

- a persistent request outlives its instance: terminated, the instance is launched again by
  the request, outside Terraform. So the requests are cancelled before their instances go
  (:func:`cancel_requests`: ``scale`` shrinking or replacing, ``down``);
- only EC2 may start a worker it stopped itself: ``start`` leaves such a worker (it is
  *reclaimed*, :func:`reclaimed`) and ``scale`` replaces it.

Pure boto3 on a client the caller gives; the functions on describe_instances data are pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from clusterkit.core.errors import ClusterkitError

#: describe_instances' StateReason codes of a spot instance AWS stopped or terminated.
INTERRUPTION_REASONS = frozenset({"Server.SpotInstanceShutdown", "Server.SpotInstanceTermination"})
#: Spot request status codes that mean AWS interrupted (or is about to interrupt) the
#: instance (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/spot-request-status.html);
#: ``instance-stopped-by-user`` and ``instance-terminated-by-user`` are the kit's own doing.
INTERRUPTION_STATUSES = frozenset({
    "marked-for-stop",
    "marked-for-termination",
    "instance-stopped-by-price",
    "instance-stopped-no-capacity",
    "instance-terminated-by-price",
    "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed",
    "instance-terminated-launch-group-constraint",
    "instance-terminated-by-service",
    "marked-for-stop-by-experiment",
    "instance-stopped-by-experiment",
    "instance-terminated-by-experiment",
})  # fmt: skip
#: The spot product of a Linux instance (in a VPC, some regions answer with the suffix).
PRODUCT = "Linux/UNIX"
WORKER_NAME = re.compile(r"-(worker-\d+)$")


def is_spot(instance: dict[str, Any]) -> bool:
    """Whether describe_instances says ``instance`` is a spot instance."""
    return instance.get("InstanceLifecycle") == "spot"


def node_name(instance: dict[str, Any]) -> str:
    """The kit's node name of ``instance`` from its Name tag (``clusterkit-NAME-worker-2`` is
    ``worker-2``; the master is ``master``); "" when the tag says neither."""
    name = next((t["Value"] for t in instance.get("Tags") or [] if t["Key"] == "Name"), "")
    found = WORKER_NAME.search(name)
    if found:
        return found[1]
    return "master" if name.endswith("-master") else ""


def interrupted(instance: dict[str, Any], request: dict[str, Any] | None = None) -> bool:
    """Whether AWS interrupted spot ``instance`` (describe_instances' shape): EC2 stopped or
    terminated it for spot capacity or price (its StateReason), or its spot ``request``
    (describe_spot_instance_requests' shape) has an interruption status. A stop by the kit,
    the idle guard or the console is not one."""
    if not is_spot(instance):
        return False
    reason = (instance.get("StateReason") or {}).get("Code", "")
    if reason in INTERRUPTION_REASONS and instance["State"]["Name"] != "running":
        return True
    status = ((request or {}).get("Status") or {}).get("Code", "")
    return status in INTERRUPTION_STATUSES


def reclaimed(instances: Iterable[dict[str, Any]],
              requests: Iterable[dict[str, Any]] = ()) -> list[str]:  # fmt: skip
    """The node names (``worker-N``, in order) of the workers among ``instances`` that AWS
    interrupted (:func:`interrupted`), ``requests`` their spot requests when known (matched
    by instance id). A worker named twice (an instance terminated and its successor) is
    reclaimed when one is interrupted and no other runs."""
    by_instance = {r.get("InstanceId"): r for r in requests}
    hit: set[str] = set()
    running: set[str] = set()
    for inst in instances:
        name = node_name(inst)
        if not name.startswith("worker-"):
            continue
        if interrupted(inst, by_instance.get(inst["InstanceId"])):
            hit.add(name)
        elif inst["State"]["Name"] in ("pending", "running"):
            running.add(name)
    return sorted(hit - running, key=lambda n: int(n.rsplit("-", 1)[1]))


def requests_of(ec2: Any, instance_ids: list[str]) -> list[dict[str, Any]]:
    """The spot requests behind ``instance_ids`` (describe_spot_instance_requests' shape);
    [] for none or on-demand instances."""
    if not instance_ids:
        return []
    answer = ec2.describe_spot_instance_requests(
        Filters=[{"Name": "instance-id", "Values": list(instance_ids)}]
    )
    return list(answer.get("SpotInstanceRequests", []))


def cancel_requests(ec2: Any, instances: Iterable[dict[str, Any]]) -> list[str]:
    """Cancel the spot requests of ``instances`` (describe_instances' shape; on-demand ones
    are skipped) that are not cancelled or closed already, so that none launches an
    instance again once these go. A running instance keeps running (its removal is the
    caller's); a stopped one is terminated by EC2. The ids cancelled; ClusterkitError when
    EC2 refuses (the instances must then not be removed: their requests would replace them)."""
    from botocore.exceptions import BotoCoreError, ClientError

    ids = [i["InstanceId"] for i in instances if is_spot(i)]
    if not ids:
        return []
    try:
        live = [r["SpotInstanceRequestId"] for r in requests_of(ec2, ids)
                if r.get("State") not in ("cancelled", "closed")]  # fmt: skip
        if live:
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=live)
    except (ClientError, BotoCoreError) as exc:
        raise ClusterkitError(
            f"EC2 refused to cancel the spot requests of {', '.join(ids)} ({exc}); cancel them "
            "in the EC2 console (Spot Requests), then run the same command again: an instance "
            "whose persistent request stays open is launched again"
        ) from exc
    return live


def current_price(ec2: Any, instance_type: str, zone: str | None = None,
                  *, now: datetime | None = None) -> tuple[float, str]:  # fmt: skip
    """(USD per hour, where) of a Linux spot ``instance_type`` now, from EC2's spot price
    history: in ``zone`` when given, else the highest of the region's zones (an upper bound
    when the zone is not known yet). ``where`` names the zone or says "highest of N zones".
    ValueError saying why when EC2 gives no price (any EC2 error is the caller's)."""
    kwargs: dict[str, Any] = {
        "InstanceTypes": [instance_type],
        "ProductDescriptions": [PRODUCT],
        "StartTime": now or datetime.now(UTC),
    }
    if zone:
        kwargs["AvailabilityZone"] = zone
    history = ec2.describe_spot_price_history(**kwargs).get("SpotPriceHistory", [])
    latest: dict[str, tuple[datetime, float]] = {}
    for entry in history:
        if not str(entry.get("ProductDescription", "")).startswith(PRODUCT):
            continue
        where, at = entry.get("AvailabilityZone", ""), entry.get("Timestamp")
        if zone and where != zone:
            continue
        try:
            price = float(entry["SpotPrice"])
        except (KeyError, TypeError, ValueError):
            continue
        if price > 0 and (where not in latest or (at and at > latest[where][0])):
            latest[where] = (at or datetime.min.replace(tzinfo=UTC), price)
    if not latest:
        raise ValueError(f"EC2 has no spot price of {instance_type}"
                         f"{f' in {zone}' if zone else ''} now")  # fmt: skip
    if zone:
        return latest[zone][1], zone
    return max(p for _, p in latest.values()), f"highest of {len(latest)} zones"
