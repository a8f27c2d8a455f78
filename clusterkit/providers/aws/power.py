"""``clusterkit stop`` and ``start`` on EC2: the cluster's instances stopped (their disks
kept) and started again, found by the cluster's tags as the sweep and ``cost`` find them.

Pure boto3 on a client the caller gives. Stop: the workers first, then the master (the NAT
and HDFS's NameNode the workers lean on), each step waited for with boto3's waiters. Start:
the master first, then the workers; then the master's new public address is read back (the
cluster has no Elastic IP: AWS gives a stopped instance's address back and a new one on
start). The role of an instance is its ``clusterkit:role`` tag (infra/nodes.tf). A spot
worker AWS stopped itself (reclaimed, :mod:`.spot`) cannot be started by anyone but EC2:
``start`` leaves it, says so, and names it in ``reclaimed`` (``clusterkit scale`` makes it
again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws import spot
from clusterkit.providers.aws.sweep import LIVE_STATES
from clusterkit.providers.aws.tags import ROLE_TAG_KEY, TAG_KEY, tag_filter, tag_value

#: Seconds between two looks of a waiter, and how long it waits at most (EC2 stops a t2 in
#: about a minute; one stuck in ``stopping`` is said after this).
WAIT_DELAY_S = 5
WAIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Instance:
    id: str
    role: str  # "master" or "worker"
    state: str  # EC2's: pending, running, stopping, stopped, shutting-down
    public_ip: str | None
    reclaimed: bool = False  # a spot instance AWS interrupted: only EC2 may start it again


@dataclass
class PowerChange:
    """What one stop or start did: the instances it acted on, in the order it did, those
    already as asked, and (after a start) the master's public address."""

    acted: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    public_ip: str | None = None
    reclaimed: list[str] = field(default_factory=list)  # spot workers left stopped by start

    @property
    def changed(self) -> bool:
        return bool(self.acted)


def _quiet(_: str) -> None:
    return None


def instances(ec2: Any, cluster: str, *, cluster_id: str | None = None) -> list[Instance]:
    """The cluster's instances that are not terminated, the master first. ClusterkitError
    naming the instance when one carries no ``clusterkit:role`` tag."""
    filters = [*tag_filter(cluster, cluster_id),
               {"Name": "instance-state-name", "Values": LIVE_STATES}]  # fmt: skip
    found = []
    described = _call("describe its instances", cluster,
                      lambda: ec2.describe_instances(Filters=filters))  # fmt: skip
    for reservation in described["Reservations"]:
        for inst in reservation["Instances"]:
            role = tag_value(inst.get("Tags"), ROLE_TAG_KEY)
            if role not in ("master", "worker"):
                raise ClusterkitError(
                    f"cluster {cluster!r}: instance {inst['InstanceId']} has no "
                    f"{ROLE_TAG_KEY} tag (master or worker), so its turn to stop or start is "
                    f"unknown: tag it in the EC2 console (infra/nodes.tf tags both)"
                )
            found.append(Instance(inst["InstanceId"], role, inst["State"]["Name"],
                                  inst.get("PublicIpAddress"),
                                  spot.interrupted(inst)))  # fmt: skip
    return sorted(found, key=lambda i: (i.role != "master", i.id))


def _nodes(ec2: Any, cluster: str, cluster_id: str | None, verb: str) -> list[Instance]:
    """:func:`instances`, or ClusterkitError saying there is nothing to ``verb``."""
    found = instances(ec2, cluster, cluster_id=cluster_id)
    if not found:
        region = getattr(getattr(ec2, "meta", None), "region_name", "this region")
        raise ClusterkitError(
            f"cluster {cluster!r} has no instances tagged {TAG_KEY}={cluster} in {region}: "
            f"nothing to {verb}; `clusterkit status` shows what is known of it, `clusterkit "
            f"down` removes what is left"
        )
    masters = [i for i in found if i.role == "master"]
    if len(masters) != 1:
        raise ClusterkitError(
            f"cluster {cluster!r} has {len(masters)} master instances "
            f"({', '.join(i.id for i in masters) or 'none'}); expected one: check the EC2 "
            f"console, or `clusterkit down` and `clusterkit up` again"
        )
    return found


def _wait(ec2: Any, waiter: str, ids: list[str], *, cluster: str, delay_s: float,
          timeout_s: float) -> None:  # fmt: skip
    """boto3's ``waiter`` on ``ids``; ClusterkitError naming them and the fix on timeout."""
    from botocore.exceptions import WaiterError

    attempts = max(1, int(timeout_s // max(delay_s, 0.001)))
    try:
        config = {"Delay": delay_s, "MaxAttempts": attempts}
        ec2.get_waiter(waiter).wait(InstanceIds=ids, WaiterConfig=config)
    except WaiterError as exc:
        raise ClusterkitError(
            f"cluster {cluster!r}: {', '.join(ids)} not {waiter.removeprefix('instance_')} "
            f"after {timeout_s:.0f} s ({exc}); look at them in the EC2 console, then run the "
            f"same command again"
        ) from exc


def _call(what: str, cluster: str, action: Callable[[], Any]) -> Any:
    """``action()``; EC2's refusal as a ClusterkitError naming the cluster and what was done."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return action()
    except (ClientError, BotoCoreError) as exc:
        raise ClusterkitError(f"cluster {cluster!r}: EC2 refused to {what}: {exc}") from exc


def _turn(ec2: Any, group: list[Instance], *, to: str, cluster: str, change: PowerChange,
          say: Callable[[str], None], delay_s: float, timeout_s: float) -> None:  # fmt: skip
    """Bring ``group`` to ``to`` ("stopped" or "running") and wait until it is there; an
    instance on its way the other way is first let finish (EC2 refuses to turn it midway)."""
    if not group:
        return
    opposite = {"stopped": ("pending", "instance_running"),
                "running": ("stopping", "instance_stopped")}[to]  # fmt: skip
    midway = [i.id for i in group if i.state == opposite[0]]
    if midway:
        _wait(ec2, opposite[1], midway, cluster=cluster, delay_s=delay_s, timeout_s=timeout_s)
    ids = [i.id for i in group if i.state != to]
    change.already += [i.id for i in group if i.state == to]
    if not ids:
        return
    stopping = to == "stopped"
    verb, waiter = ("stop", "instance_stopped") if stopping else ("start", "instance_running")
    say(f"{'stopping' if stopping else 'starting'} the {group[0].role}"
        f"{'s' if len(ids) > 1 else ''}: {', '.join(ids)}")  # fmt: skip
    method = ec2.stop_instances if stopping else ec2.start_instances
    _call(f"{verb} {', '.join(ids)}", cluster, lambda: method(InstanceIds=ids))
    change.acted += ids
    _wait(ec2, waiter, ids, cluster=cluster, delay_s=delay_s, timeout_s=timeout_s)


def stop(ec2: Any, cluster: str, *, cluster_id: str | None = None,
         say: Callable[[str], None] = _quiet, delay_s: float = WAIT_DELAY_S,
         timeout_s: float = WAIT_TIMEOUT_S) -> PowerChange:  # fmt: skip
    """Stop the cluster's workers, wait until they are stopped, then the master, and wait.
    Instances already stopped are left (``already``); nothing running: nothing done.
    ClusterkitError when the cluster has no instances here (nothing to stop), or EC2 refuses
    or does not finish."""
    nodes = _nodes(ec2, cluster, cluster_id, "stop")
    change = PowerChange()
    for role in ("worker", "master"):
        _turn(ec2, [i for i in nodes if i.role == role], to="stopped", cluster=cluster,
              change=change, say=say, delay_s=delay_s, timeout_s=timeout_s)  # fmt: skip
    return change


def start(ec2: Any, cluster: str, *, cluster_id: str | None = None,
          say: Callable[[str], None] = _quiet, delay_s: float = WAIT_DELAY_S,
          timeout_s: float = WAIT_TIMEOUT_S) -> PowerChange:  # fmt: skip
    """Start the master, wait until it runs, then the workers, and wait; ``public_ip`` is the
    master's address as EC2 gives it now. Spot workers AWS reclaimed are left stopped and
    named in ``reclaimed``. ClusterkitError when the cluster has no instances here, EC2
    refuses (no capacity of the type in the zone, say) or gives the master no public
    address."""
    nodes = _nodes(ec2, cluster, cluster_id, "start")
    change = PowerChange()
    held = [i for i in nodes if i.reclaimed and i.state in ("stopping", "stopped")]
    if held:
        change.reclaimed = [i.id for i in held]
        say(f"left stopped: {', '.join(change.reclaimed)}, spot worker(s) AWS reclaimed (only "
            "AWS may start them; `clusterkit scale` makes them again)")  # fmt: skip
    for role in ("master", "worker"):
        group = [i for i in nodes if i.role == role and i not in held]
        _turn(ec2, group, to="running", cluster=cluster, change=change, say=say,
              delay_s=delay_s, timeout_s=timeout_s)  # fmt: skip
    change.public_ip = master_public_ip(ec2, cluster, cluster_id=cluster_id)
    return change


def master_public_ip(ec2: Any, cluster: str, *, cluster_id: str | None = None) -> str:
    """The master's public address now; ClusterkitError when it has none (it is stopped)."""
    master = _nodes(ec2, cluster, cluster_id, "reach")[0]
    if not master.public_ip:
        raise ClusterkitError(
            f"cluster {cluster!r}: the master {master.id} has no public address "
            f"(it is {master.state}); `clusterkit start` starts it"
        )
    return master.public_ip


def states(ec2: Any, cluster: str, *, cluster_id: str | None = None) -> dict[str, str]:
    """Each instance's EC2 state, by id (empty: the cluster has none here)."""
    return {i.id: i.state for i in instances(ec2, cluster, cluster_id=cluster_id)}
