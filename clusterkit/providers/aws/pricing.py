"""``clusterkit cost``: the list price per hour of what the cluster runs now (not a bill).

Prices are AWS's public on-demand list prices (Linux, per region) from the table below, with
its date; running instances are priced per hour, volumes per GB-month over 730 hours, and
each public IPv4 address per hour (AWS bills those since 2024-02-01). Taxes, data transfer,
free tier and credits are not in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws.sweep import LIVE_STATES
from clusterkit.providers.aws.tags import tag_filter

PRICE_TABLE_DATE = "2025-06-01"
PRICE_SOURCES = (
    "https://aws.amazon.com/ec2/pricing/on-demand/",
    "https://aws.amazon.com/ebs/pricing/",
    "https://aws.amazon.com/vpc/pricing/",
)
HOURS_PER_MONTH = 730
#: USD per instance-hour, on-demand, Linux
INSTANCE_HOURLY: dict[str, dict[str, float]] = {
    "t2.large": {
        "us-east-1": 0.0928,
        "us-east-2": 0.0928,
        "us-west-2": 0.0928,
        "eu-west-1": 0.1008,
        "eu-central-1": 0.1072,
    },
    "t3.large": {
        "us-east-1": 0.0832,
        "us-east-2": 0.0832,
        "us-west-2": 0.0832,
        "eu-west-1": 0.0912,
        "eu-central-1": 0.096,
    },
    "m5.large": {
        "us-east-1": 0.096,
        "us-east-2": 0.096,
        "us-west-2": 0.096,
        "eu-west-1": 0.107,
        "eu-central-1": 0.115,
    },
}
#: USD per GB-month of gp3 storage (the baseline 3,000 IOPS and 125 MB/s are included)
GP3_GB_MONTH: dict[str, float] = {
    "us-east-1": 0.08,
    "us-east-2": 0.08,
    "us-west-2": 0.08,
    "eu-west-1": 0.088,
    "eu-central-1": 0.0952,
}
PUBLIC_IPV4_HOURLY = 0.005


@dataclass
class CostLine:
    what: str
    count: float
    unit_price: float
    unit: str
    hourly: float


@dataclass
class Cost:
    region: str
    lines: list[CostLine] = field(default_factory=list)

    @property
    def hourly(self) -> float:
        return sum(line.hourly for line in self.lines)

    def formula(self) -> str:
        parts = [f"{line.count:g} × ${line.unit_price:g}{line.unit}" for line in self.lines]  # noqa: RUF001
        return " + ".join(parts) + f" = ${self.hourly:.4f}/h" if parts else "$0/h"


def _price(table: dict[str, float], region: str, what: str) -> float:
    if region not in table:
        raise ClusterkitError(
            f"no list price for {what} in {region} in the kit's table (dated "
            f"{PRICE_TABLE_DATE}, regions {', '.join(sorted(table))}); see {PRICE_SOURCES[0]}"
        )
    return table[region]


def instance_hourly(instance_type: str, region: str) -> float:
    table = INSTANCE_HOURLY.get(instance_type)
    if table is None:
        raise ClusterkitError(
            f"no list price for {instance_type} in the kit's table (dated {PRICE_TABLE_DATE}, "
            f"types {', '.join(sorted(INSTANCE_HOURLY))}); see {PRICE_SOURCES[0]}"
        )
    return _price(table, region, instance_type)


def estimate(
    *, region: str, instance_type: str, nodes: int, volume_gb: int, public_ips: int = 1
) -> Cost:
    """The list price per hour of a cluster not yet made (what `up` would start)."""
    gp3 = _price(GP3_GB_MONTH, region, "gp3") / HOURS_PER_MONTH
    return Cost(
        region,
        [
            CostLine(
                f"{instance_type} instance",
                nodes,
                instance_hourly(instance_type, region),
                "/h",
                nodes * instance_hourly(instance_type, region),
            ),
            CostLine(
                "GB of gp3", nodes * volume_gb, round(gp3, 7), "/GB-h", nodes * volume_gb * gp3
            ),
            CostLine(
                "public IPv4", public_ips, PUBLIC_IPV4_HOURLY, "/h", public_ips * PUBLIC_IPV4_HOURLY
            ),
        ],
    )


def running(ec2: Any, cluster: str, region: str, *, cluster_id: str | None = None) -> Cost:
    """The list price per hour of the cluster's resources as they are now: running
    instances, every volume (stopped instances keep theirs), public addresses. With
    ``cluster_id``, only those carrying it (not another cluster's of the same name)."""
    cost = Cost(region)
    tags = tag_filter(cluster, cluster_id)
    by_type: dict[str, int] = {}
    public = 0
    for reservation in ec2.describe_instances(
        Filters=[*tags, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    )["Reservations"]:
        for inst in reservation["Instances"]:
            if inst["State"]["Name"] in ("pending", "running"):
                by_type[inst["InstanceType"]] = by_type.get(inst["InstanceType"], 0) + 1
            public += 1 if inst.get("PublicIpAddress") else 0
    public += sum(
        1 for a in ec2.describe_addresses(Filters=tags)["Addresses"] if not a.get("InstanceId")
    )  # an idle Elastic IP bills too
    for itype, count in sorted(by_type.items()):
        price = instance_hourly(itype, region)
        cost.lines.append(CostLine(f"{itype} instance", count, price, "/h", count * price))
    gb = sum(
        v["Size"]
        for v in ec2.describe_volumes(Filters=tags)["Volumes"]
        if v.get("VolumeType") == "gp3"
    )
    if gb:
        per_gb_h = _price(GP3_GB_MONTH, region, "gp3") / HOURS_PER_MONTH
        cost.lines.append(CostLine("GB of gp3", gb, round(per_gb_h, 7), "/GB-h", gb * per_gb_h))
    if public:
        cost.lines.append(
            CostLine("public IPv4", public, PUBLIC_IPV4_HOURLY, "/h", public * PUBLIC_IPV4_HOURLY)
        )
    return cost
