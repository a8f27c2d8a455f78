"""What a cluster has cost since ``up`` at list prices: its instances' running time, its
volumes' life and its public address's running time, each with its price and the price's
source.

Two records are put together. The kit's power log (:mod:`clusterkit.core.power_log`) holds
the spans in which the kit started and stopped the nodes. EC2 keeps per instance only its
last start (``LaunchTime``), its first (the root volume's ``AttachTime``) and, for a stopped
instance, when it stopped (inside ``StateTransitionReason``): a stop the kit did not make
(the idle guard powers the master off itself) shows only there. So an instance's last run is
EC2's (from ``LaunchTime`` to its stop, or to now), and its earlier runs are the log's spans
before that, from its first start on. A gap neither record covers (a stop nobody logged,
before a later start) is counted as running: the figure is an upper bound, never below the
bill.

Billing: instances per second with 60 s at least per start (Linux); gp3 volumes per GB-hour
from their creation, stopped or not; the public IPv4 address while its instance runs (the
master has no Elastic IP, so its address is released on stop).

:func:`accrue` and the functions it uses are pure (describe_instances-shaped dicts, the log's
events, ``now`` and the prices in); :func:`accrued` is the one that reads EC2 and the log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from clusterkit.core import power_log
from clusterkit.core.errors import ClusterkitError
from clusterkit.core.power_log import PowerEvent
from clusterkit.providers.aws.pricing import Prices, combined_source
from clusterkit.providers.aws.sweep import LIVE_STATES
from clusterkit.providers.aws.tags import ROLE_TAG_KEY, tag_filter, tag_value

#: AWS bills a Linux instance per second, with this minimum per start.
MIN_BILLED_S = 60.0
#: A log span cut short by EC2's LaunchTime by at most this much is that same start, logged
#: a little before EC2 made it (not an earlier run).
SAME_START_S = 300.0
#: The time inside ``StateTransitionReason``: "User initiated (2026-12-01 10:00:00 GMT)"
#: (moto writes UTC).
STOP_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")
#: A worker's Name tag ends in its node name (infra/nodes.tf: clusterkit-NAME-worker-N).
WORKER_NAME = re.compile(r"-(worker-\d+)$")
RUNNING_STATES = ("pending", "running")

Span = tuple[float, float]


@dataclass
class InstanceAccrual:
    """One instance since ``up``: the spans it ran (epoch s), the hours billed for them (per
    second, 60 s at least per start), its price per hour (its own type's; a spot one's at the
    spot price now) and what that came to."""

    instance_id: str
    name: str
    role: str
    instance_type: str
    state: str
    spans: list[Span]
    hours: float
    price: float
    usd: float
    source: str
    market: str = "on-demand"  # or "spot"

    @property
    def label(self) -> str:
        """The node's name (``master``, ``worker-2``), else its role, Name tag or id."""
        return node_label(self.name, self.role) or self.instance_id


@dataclass
class AccruedLine:
    """A figure beside the instances: gp3 (GB-hours) or public IPv4 (hours)."""

    what: str
    quantity: float
    unit: str
    price: float
    usd: float
    source: str


@dataclass
class Accrued:
    """What the cluster has cost from ``since`` (its ``up``, epoch s; None when neither the
    log nor EC2 says) to ``now``; ``skipped`` are the log's unreadable lines, ``notes`` what
    was guessed."""

    region: str
    since: float | None
    now: float
    instances: list[InstanceAccrual] = field(default_factory=list)
    extras: list[AccruedLine] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def usd(self) -> float:
        return sum(i.usd for i in self.instances) + sum(e.usd for e in self.extras)

    @property
    def source(self) -> str:
        priced = [(f"{i.instance_type}{' spot' if i.market == 'spot' else ''} instance",
                   i.source) for i in self.instances]  # fmt: skip
        priced += [(e.what, e.source) for e in self.extras]
        return combined_source(dict.fromkeys(priced))

    def formula(self) -> str:
        """E.g. "master t2.large 1.50 h × $0.0928/h + ... = $0.2088"; a spot instance's type
        is followed by "spot"."""  # noqa: RUF002
        parts = [f"{i.label} {i.instance_type}{' spot' if i.market == 'spot' else ''} "
                 f"{i.hours:.2f} h × ${i.price:g}/h"  # noqa: RUF001
                 for i in self.instances]  # fmt: skip
        parts += [f"{e.what} {e.quantity:.2f} {e.unit} × ${e.price:g}/{e.unit}"  # noqa: RUF001
                  for e in self.extras]  # fmt: skip
        return " + ".join(parts) + f" = ${self.usd:.4f}" if parts else "$0"

    def as_dict(self) -> dict[str, Any]:
        """The figure as JSON: every field (each instance with its node ``label``, e.g.
        ``worker-2``), plus the total, the formula and the source."""
        since = None if self.since is None else _iso(self.since)
        found = asdict(self)
        for line, instance in zip(found["instances"], self.instances, strict=True):
            line["label"] = instance.label
        return {**found, "since_iso": since, "now_iso": _iso(self.now),
                "usd": round(self.usd, 4), "formula": self.formula(),
                "source": self.source}  # fmt: skip


def node_label(name: str, role: str) -> str:
    """A node's name from its Name tag (``clusterkit-alpha-worker-2`` is ``worker-2``), else
    its role, else the Name tag itself."""
    found = WORKER_NAME.search(name)
    return found[1] if found else (role or name)


def price_of(instance: dict[str, Any], prices: Prices) -> tuple[float, str, str]:
    """(USD per hour, source, market) of ``instance`` (describe_instances' shape): its own
    type's on-demand price, or a spot instance's spot price in its zone."""
    itype = instance["InstanceType"]
    if instance.get("InstanceLifecycle") == "spot":
        zone = instance.get("Placement", {}).get("AvailabilityZone") or None
        return (*prices.spot(itype, zone), "spot")
    return (*prices.instance(itype), "on-demand")


def epoch(value: datetime | str | float | None) -> float | None:
    """``value`` (a datetime as boto3 gives it, naive meaning UTC; an ISO string; epoch s) as
    epoch seconds; None for None or a string that is not a time."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def stop_time(instance: dict[str, Any]) -> float | None:
    """When EC2 says ``instance`` stopped (the time in its ``StateTransitionReason``), or
    None when it does not say."""
    found = STOP_TIME.search(instance.get("StateTransitionReason") or "")
    if found is None:
        return None
    return datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def first_start(instance: dict[str, Any]) -> float | None:
    """When ``instance`` first started: its volumes' first ``AttachTime`` (kept across stop
    and start), else its ``LaunchTime``."""
    attached = [epoch(m.get("Ebs", {}).get("AttachTime"))
                for m in instance.get("BlockDeviceMappings", [])]  # fmt: skip
    known = [at for at in attached if at is not None]
    return min(known) if known else epoch(instance.get("LaunchTime"))


def current_life(events: list[PowerEvent]) -> list[PowerEvent]:
    """The events of the latest cluster this state folder held: from its last ``up`` (``up``
    is written only when a cluster is made, so an earlier one whose ``down`` went unlogged
    is not counted) on; [] when the log has no ``up``."""
    ups = [index for index, entry in enumerate(events) if entry.event == "up"]
    return events[ups[-1] :] if ups else []


def _last_run_end(instance: dict[str, Any], launch: float, log_spans: list[Span],
                  now: float) -> tuple[float, str]:  # fmt: skip
    """When the instance's last run ended (now when it runs), and a note when guessed."""
    if instance["State"]["Name"] in RUNNING_STATES:
        return now, ""
    stopped = stop_time(instance)
    if stopped is not None:
        return min(max(stopped, launch), now), ""
    guess = next((end for _, end in log_spans if end >= launch), now)
    note = (f"{instance['InstanceId']} is {instance['State']['Name']} and EC2 gives no stop "
            f"time: its last run is counted to the kit's log's stop, or to now")  # fmt: skip
    return guess, note


def instance_spans(instance: dict[str, Any], log_spans: list[Span],
                   *, now: float) -> tuple[list[Span], list[str]]:  # fmt: skip
    """The spans ``instance`` ran (epoch s, in order) and notes on what was guessed: EC2's
    last run, and before it the log's spans from the instance's first start on. A log span
    that holds EC2's last start is cut there; begun less than :data:`SAME_START_S` before it,
    it is that start itself (the kit logs it a little before EC2 makes it) and dropped."""
    iid = instance["InstanceId"]
    launch = epoch(instance.get("LaunchTime"))
    first = first_start(instance)
    if launch is None:
        return _clip(log_spans, first, now), [f"{iid} has no LaunchTime: the log's spans alone"]
    end, note = _last_run_end(instance, launch, log_spans, now)
    notes = [note] if note else []
    earlier: list[Span] = []
    for start, stop in _clip(log_spans, first, now):
        if stop > launch:  # the span holds EC2's last start
            if launch - start <= SAME_START_S:
                continue
            notes.append(f"{iid}: the kit's log has it running from {_iso(start)} and EC2 "
                         f"started it again at {_iso(launch)}; the stop between was not "
                         f"logged, so all of it is counted")  # fmt: skip
            stop = launch
        earlier.append((start, stop))
    return [*earlier, (launch, max(launch, end))], notes


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


def _clip(spans: Iterable[Span], low: float | None, high: float) -> list[Span]:
    """``spans`` cut to [low, high], the empty ones dropped."""
    clipped = [(max(s, low) if low is not None else s, min(e, high)) for s, e in spans]
    return [(s, e) for s, e in clipped if e > s]


def billed_hours(spans: list[Span]) -> float:
    """Hours billed for ``spans``: per second, :data:`MIN_BILLED_S` at least each."""
    return sum(max(MIN_BILLED_S, end - start) for start, end in spans) / 3600


def running_hours(spans: list[Span]) -> float:
    return sum(end - start for start, end in spans) / 3600


def has_public_ipv4(instance: dict[str, Any]) -> bool:
    """Whether ``instance`` holds a public IPv4 address while it runs: it has one now, or it
    is the master (a stopped master's address is released, and given again on start)."""
    role = tag_value(instance.get("Tags"), ROLE_TAG_KEY)
    return bool(instance.get("PublicIpAddress")) or role == "master"


def since_up(life: list[PowerEvent], instances: list[dict[str, Any]],
             volumes: list[dict[str, Any]]) -> float | None:  # fmt: skip
    """When the cluster was made: the first of its ``up`` in the log, its first instance
    start and its first volume's creation (the log's ``up`` may be written after EC2 made
    them); None when none of them says."""
    known = [life[0].at] if life else []
    known += [at for at in (first_start(i) for i in instances) if at is not None]
    known += [at for at in (epoch(v.get("CreateTime")) for v in volumes) if at is not None]
    return min(known) if known else None


def _master_first(instance: dict[str, Any]) -> tuple[bool, int, str, str]:
    """The order of the figure's lines: the master, then the workers by number."""
    tags = instance.get("Tags")
    label = node_label(tag_value(tags, "Name"), tag_value(tags, ROLE_TAG_KEY))
    number = int(label.rsplit("-", 1)[1]) if WORKER_NAME.search(f"-{label}") else 0
    return (not label.endswith("master"), number, label, instance["InstanceId"])


def accrue(
    instances: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    events: list[PowerEvent],
    *,
    now: float,
    prices: Prices,
    skipped: Iterable[str] = (),
) -> Accrued:
    """The cluster's cost from its ``up`` to ``now``: ``instances`` and ``volumes`` as
    describe_instances / describe_volumes give them, ``events`` the kit's power log (in time
    order). Pure: nothing is read but what is given (``prices`` may ask the Price List API)."""
    life = current_life(events)
    log_spans = power_log.running_intervals(life, now)
    since = since_up(life, instances, volumes)
    found = Accrued(prices.region, since, now, skipped=list(skipped))
    if not life:
        found.notes.append("the kit's power log has no `up` of this cluster: its instances' "
                           "runs are EC2's last ones only")  # fmt: skip
    public_hours = 0.0
    for inst in sorted(instances, key=_master_first):
        spans, notes = instance_spans(inst, log_spans, now=now)
        found.notes += notes
        price, source, market = price_of(inst, prices)
        hours = billed_hours(spans)
        found.instances.append(InstanceAccrual(
            inst["InstanceId"], tag_value(inst.get("Tags"), "Name"),
            tag_value(inst.get("Tags"), ROLE_TAG_KEY), inst["InstanceType"],
            inst["State"]["Name"], spans, hours, price, hours * price, source,
            market))  # fmt: skip
        public_hours += running_hours(spans) if has_public_ipv4(inst) else 0.0
    gb_hours = _volume_gb_hours(volumes, since, now)
    if gb_hours:
        per_gb_h, source = prices.gp3_gb_hour()
        found.extras.append(AccruedLine("gp3", gb_hours, "GB-h", round(per_gb_h, 7),
                                        gb_hours * per_gb_h, source))  # fmt: skip
    if public_hours:
        ipv4, source = prices.public_ipv4_hour()
        found.extras.append(AccruedLine("public IPv4", public_hours, "h", ipv4,
                                        public_hours * ipv4, source))  # fmt: skip
    if any(i.market == "spot" for i in found.instances):
        found.notes.append("spot instances are priced at their spot price now for all the "
                           "time they ran; AWS bills the spot price of each period")  # fmt: skip
    found.notes += prices.notes
    found.notes = list(dict.fromkeys(found.notes))
    return found


def _volume_gb_hours(volumes: list[dict[str, Any]], since: float | None, now: float) -> float:
    """GB-hours of the gp3 ``volumes``, each from its creation (else ``since``) to ``now``."""
    total = 0.0
    for volume in volumes:
        made = epoch(volume.get("CreateTime")) or since
        if volume.get("VolumeType") == "gp3" and made is not None:
            total += volume["Size"] * max(0.0, now - made) / 3600
    return total


def unlogged_stop(instances: list[dict[str, Any]], events: list[PowerEvent]) -> float | None:
    """When EC2 says every node stopped while the kit's log says they run (the idle guard
    stopped them): the latest stop time, for ``start`` to record as a ``stop`` before it
    starts them; None when the log says stopped already, a node runs, or EC2 gives no time."""
    life = current_life(events)
    if not life or not instances or life[-1].event in power_log.STOPPING:
        return None
    if any(i["State"]["Name"] not in ("stopping", "stopped") for i in instances):
        return None
    times = [stop_time(i) for i in instances]
    known = [at for at in times if at is not None]
    return max(known) if known and len(known) == len(times) else None


def describe(ec2: Any, cluster: str, *, cluster_id: str | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """The cluster's instances (not terminated) and volumes as EC2 describes them, by its
    tags (and id, when given)."""
    from botocore.exceptions import BotoCoreError, ClientError

    tags = tag_filter(cluster, cluster_id)
    states = {"Name": "instance-state-name", "Values": LIVE_STATES}
    try:
        pages = ec2.get_paginator("describe_instances").paginate(Filters=[*tags, states])
        instances = [i for page in pages for r in page["Reservations"] for i in r["Instances"]]
        volumes = [v for page in ec2.get_paginator("describe_volumes").paginate(Filters=tags)
                   for v in page["Volumes"]]  # fmt: skip
    except (ClientError, BotoCoreError) as exc:
        raise ClusterkitError(f"cluster {cluster!r}: EC2 could not be asked for its instances "
                              f"and volumes: {exc}") from exc  # fmt: skip
    return instances, volumes


def accrued(ec2: Any, cluster: str, state_dir: Path, *, prices: Prices,
            cluster_id: str | None = None, now: float | None = None) -> Accrued:  # fmt: skip
    """What cluster ``cluster`` has cost since its ``up``: EC2 read through ``ec2``, the
    kit's power log from ``state_dir``."""
    instances, volumes = describe(ec2, cluster, cluster_id=cluster_id)
    events, skipped = power_log.read(state_dir)
    return accrue(instances, volumes, events, now=time.time() if now is None else now,
                  prices=prices.use_ec2(ec2), skipped=skipped)  # fmt: skip
