"""``clusterkit cost``: the list price per hour of what the cluster runs now (not a bill),
and the budget ``up`` holds a cluster to (``aws.max_hourly_usd``).

Instance prices are AWS's on-demand list prices (Linux, shared tenancy, per region), asked
of the AWS Price List API when a client is given (:class:`Prices`); when it cannot answer
(no credentials or network, throttled, no such product, an answer not understood) they come
from the table below, with its date, and every figure says which source it used. Spot
workers are priced at the spot price now, from EC2's spot price history (it moves; AWS bills
the price of each period); when it cannot be read, at the on-demand price, an upper bound,
and said. Volumes are priced per GB-month over 730 hours and each public IPv4 address per
hour (AWS bills those since 2024-02-01), both from the table. Taxes, data transfer, free
tier and credits are not in it, nor the surplus CPU credits a T3 instance (unlimited by
default) bills when it runs above its baseline for long.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from clusterkit.core.errors import BadInput, ClusterkitError
from clusterkit.providers.aws.sweep import LIVE_STATES
from clusterkit.providers.aws.tags import tag_filter

PRICE_TABLE_DATE = "2025-06-01"
PRICE_SOURCES = (
    "https://aws.amazon.com/ec2/pricing/on-demand/",
    "https://aws.amazon.com/ebs/pricing/",
    "https://aws.amazon.com/vpc/pricing/",
)
HOURS_PER_MONTH = 730
#: USD per instance-hour, on-demand, Linux. The .xlarge sizes are twice their family's .large
#: (AWS prices t2, t3 and m5 linearly by size). c5.large and r5.large only in the US
#: regions, whose figures agree across the public price lists checked; for eu-west-1 and
#: eu-central-1 those lists disagree, so they are left to the Price List API (or --yes).
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
    "t2.xlarge": {
        "us-east-1": 0.1856,
        "us-east-2": 0.1856,
        "us-west-2": 0.1856,
        "eu-west-1": 0.2016,
        "eu-central-1": 0.2144,
    },
    "t3.xlarge": {
        "us-east-1": 0.1664,
        "us-east-2": 0.1664,
        "us-west-2": 0.1664,
        "eu-west-1": 0.1824,
        "eu-central-1": 0.192,
    },
    "m5.xlarge": {
        "us-east-1": 0.192,
        "us-east-2": 0.192,
        "us-west-2": 0.192,
        "eu-west-1": 0.214,
        "eu-central-1": 0.23,
    },
    "c5.large": {
        "us-east-1": 0.085,
        "us-east-2": 0.085,
        "us-west-2": 0.085,
    },
    "r5.large": {
        "us-east-1": 0.126,
        "us-east-2": 0.126,
        "us-west-2": 0.126,
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
#: Where a price came from: the AWS Price List API, or the table above.
API_SOURCE = "AWS Price List API"
TABLE_SOURCE = f"the kit's table dated {PRICE_TABLE_DATE}"
#: Where a spot price came from (the zone, or the highest of the region's, follows).
SPOT_SOURCE = "EC2 spot price history, now"
#: Said of a spot instance priced at the on-demand price because no spot price was read.
SPOT_FALLBACK = "on-demand price, an upper bound: no spot price read"
#: The Price List API has its endpoint in us-east-1 (and a few others), whatever is priced.
API_REGION = "us-east-1"
#: Seconds to connect and to read, and attempts in all: an offline laptop waits ~10 s at most.
API_TIMEOUT_S = 5
API_ATTEMPTS = 2


@dataclass
class CostLine:
    what: str
    count: float
    unit_price: float
    unit: str
    hourly: float
    source: str = TABLE_SOURCE


@dataclass
class Cost:
    region: str
    lines: list[CostLine] = field(default_factory=list)
    #: Why the Price List API was not used, when it was asked and did not answer.
    notes: list[str] = field(default_factory=list)

    @property
    def hourly(self) -> float:
        return sum(line.hourly for line in self.lines)

    @property
    def source(self) -> str:
        return combined_source((line.what, line.source) for line in self.lines)

    def formula(self) -> str:
        parts = [f"{line.count:g} × ${line.unit_price:g}{line.unit}" for line in self.lines]  # noqa: RUF001
        return " + ".join(parts) + f" = ${self.hourly:.4f}/h" if parts else "$0/h"


def combined_source(priced: Iterable[tuple[str, str]]) -> str:
    """Where the prices of ``priced`` ((what, source) pairs) came from: the one source when
    they share it, else each source with what it priced."""
    by_source: dict[str, list[str]] = {}
    for what, source in priced:
        by_source.setdefault(source, []).append(what)
    if len(by_source) <= 1:
        return next(iter(by_source), TABLE_SOURCE)
    return "; ".join(f"{source} ({', '.join(whats)})" for source, whats in by_source.items())


def _price(table: dict[str, float], region: str, what: str) -> float:
    if region not in table:
        raise ClusterkitError(
            f"no list price for {what} in {region} in the kit's table (dated "
            f"{PRICE_TABLE_DATE}, regions {', '.join(sorted(table))}); see {PRICE_SOURCES[0]}"
        )
    return table[region]


def instance_hourly(instance_type: str, region: str) -> float:
    """The table's price per hour of ``instance_type`` in ``region``; ClusterkitError naming
    what the table has when it has not that one."""
    table = INSTANCE_HOURLY.get(instance_type)
    if table is None:
        raise ClusterkitError(
            f"no list price for {instance_type} in the kit's table (dated {PRICE_TABLE_DATE}, "
            f"types {', '.join(sorted(INSTANCE_HOURLY))}); see {PRICE_SOURCES[0]}"
        )
    return _price(table, region, instance_type)


class PriceUnavailable(Exception):
    """The Price List API gave no usable price; the message says why, to follow the words
    "the AWS Price List API"."""


def price_list_client(session: Any = None) -> Any:
    """A client of the Price List API (endpoint in :data:`API_REGION`) with short timeouts
    and :data:`API_ATTEMPTS` attempts, from ``session`` (default: boto3's)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=API_TIMEOUT_S,
        read_timeout=API_TIMEOUT_S,
        retries={"total_max_attempts": API_ATTEMPTS, "mode": "standard"},
    )
    return (session or boto3.session.Session()).client(
        "pricing", region_name=API_REGION, config=config
    )


def api_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """The ``get_products`` filters of one on-demand Linux instance type in one region."""
    wanted = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    return [{"Type": "TERM_MATCH", "Field": key, "Value": value} for key, value in wanted.items()]


def parse_price_list(price_list: list[Any], what: str) -> float:
    """The one non-zero USD price per hour in ``price_list`` (``get_products``' PriceList: JSON
    strings, each a product with its terms); PriceUnavailable when there is none, several,
    or the documents are not understood."""
    found: set[float] = set()
    try:
        for item in price_list:
            document = json.loads(item) if isinstance(item, str) else item
            for term in document["terms"]["OnDemand"].values():
                for dimension in term["priceDimensions"].values():
                    usd = float(dimension["pricePerUnit"]["USD"])
                    if dimension.get("unit") == "Hrs" and usd > 0:
                        found.add(usd)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PriceUnavailable(
            f"answered for {what} with a price list not understood ({type(exc).__name__}: "
            f"{str(exc)[:120]})"
        ) from exc
    if not found:
        raise PriceUnavailable(f"has no on-demand Linux price per hour for {what}")
    if len(found) > 1:
        listed = ", ".join(f"${usd:g}" for usd in sorted(found))
        raise PriceUnavailable(f"has several prices per hour for {what} ({listed})")
    return found.pop()


def api_instance_hourly(client: Any, instance_type: str, region: str) -> float:
    """The on-demand Linux price per hour of ``instance_type`` in ``region``, asked of the
    Price List API through ``client``; PriceUnavailable saying why on any failure."""
    try:
        answer = client.get_products(
            ServiceCode="AmazonEC2", Filters=api_filters(instance_type, region), MaxResults=100
        )
    except Exception as exc:  # no credentials or network, throttled, refused: the table answers
        raise PriceUnavailable(
            f"could not be asked ({type(exc).__name__}: {str(exc)[:160]})"
        ) from exc
    return parse_price_list(answer.get("PriceList", []), f"{instance_type} in {region}")


class Prices:
    """The prices of one region, each with its source. An instance type's price comes from
    the Price List API when ``client`` is given and it answers (asked once per type), else
    from the kit's table (why is kept in :attr:`notes`); gp3 and public IPv4 from the table.
    A spot instance's from EC2's spot price history through ``ec2`` (asked once per type and
    zone), else the on-demand price (an upper bound, noted). ClusterkitError when no source
    has an instance type's price."""

    def __init__(self, region: str, client: Any = None, ec2: Any = None) -> None:
        self.region = region
        self.client = client
        self.ec2 = ec2
        self.notes: list[str] = []
        self._instances: dict[str, tuple[float, str]] = {}
        self._spot: dict[tuple[str, str | None], tuple[float, str]] = {}

    @classmethod
    def asking_aws(cls, region: str, session: Any = None) -> Prices:
        """Prices that ask the Price List API first, through ``session``'s credentials, and
        EC2 for spot prices."""
        try:
            prices = cls(region, price_list_client(session))
        except Exception as exc:  # a broken profile: the table answers, and says why
            prices = cls(region)
            prices.notes.append(f"the AWS Price List API could not be asked: {exc}")
        try:
            prices.ec2 = ec2_client(region, session)
        except Exception as exc:  # no spot price: the on-demand one, said when it is used
            prices.notes.append(f"EC2 could not be asked for spot prices: {exc}")
        return prices

    def use_ec2(self, ec2: Any) -> Prices:
        """These prices, asking ``ec2`` for spot prices unless they have a client already."""
        if self.ec2 is None:
            self.ec2 = ec2
        return self

    def instance(self, instance_type: str) -> tuple[float, str]:
        """(USD per hour, source) of ``instance_type``, on-demand."""
        if instance_type not in self._instances:
            self._instances[instance_type] = self._instance(instance_type)
        return self._instances[instance_type]

    def _instance(self, instance_type: str) -> tuple[float, str]:
        why = ""
        if self.client is not None:
            try:
                return api_instance_hourly(self.client, instance_type, self.region), API_SOURCE
            except PriceUnavailable as exc:
                why = f"the AWS Price List API {exc}"
        try:
            price = instance_hourly(instance_type, self.region)
        except ClusterkitError as exc:
            raise ClusterkitError(f"{exc}; {why}" if why else str(exc)) from exc
        if why:
            self.notes.append(f"{instance_type} priced from {TABLE_SOURCE}: {why}")
        return price, TABLE_SOURCE

    def spot(self, instance_type: str, zone: str | None = None) -> tuple[float, str]:
        """(USD per hour, source) of a spot ``instance_type`` now, in ``zone`` (None: the
        highest of the region's zones); the on-demand price when EC2 gives none (noted)."""
        key = (instance_type, zone)
        if key not in self._spot:
            self._spot[key] = self._spot_price(instance_type, zone)
        return self._spot[key]

    def _spot_price(self, instance_type: str, zone: str | None) -> tuple[float, str]:
        from clusterkit.providers.aws import spot

        why = "EC2 was not asked"
        if self.ec2 is not None:
            try:
                price, where = spot.current_price(self.ec2, instance_type, zone)
                return price, f"{SPOT_SOURCE} ({where})"
            except Exception as exc:  # no network, refused, no price: on-demand, said
                why = f"{type(exc).__name__}: {str(exc)[:160]}"
        price, source = self.instance(instance_type)
        self.notes.append(f"spot {instance_type} priced at the on-demand price ({source}), an "
                          f"upper bound: no spot price was read ({why})")  # fmt: skip
        return price, f"{source}; {SPOT_FALLBACK}"

    def gp3_gb_hour(self) -> tuple[float, str]:
        """(USD per GB-hour of gp3, source)."""
        return _price(GP3_GB_MONTH, self.region, "gp3") / HOURS_PER_MONTH, TABLE_SOURCE

    def public_ipv4_hour(self) -> tuple[float, str]:
        """(USD per hour of one public IPv4 address, source)."""
        return PUBLIC_IPV4_HOURLY, TABLE_SOURCE


def ec2_client(region: str, session: Any = None) -> Any:
    """An EC2 client of ``region`` with the Price List client's short timeouts and attempts,
    from ``session`` (default: boto3's)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=API_TIMEOUT_S,
        read_timeout=API_TIMEOUT_S,
        retries={"total_max_attempts": API_ATTEMPTS, "mode": "standard"},
    )
    return (session or boto3.session.Session()).client("ec2", region_name=region, config=config)


def _prices_of(region: str, prices: Prices | None) -> Prices:
    if prices is None:
        return Prices(region)
    if prices.region != region:
        raise ValueError(f"prices of {prices.region} given to price a cluster in {region}")
    return prices


def estimate(
    *,
    region: str,
    master_type: str,
    worker_type: str,
    workers: int,
    volume_gb: int,
    worker_market: str = "on-demand",
    zone: str | None = None,
    public_ips: int = 1,
    prices: Prices | None = None,
) -> Cost:
    """The list price per hour of a cluster not yet made (what `up` would start), or of a
    made one at another worker count: the master on-demand at ``master_type``, ``workers``
    workers at ``worker_type``, on-demand or spot (``worker_market``: the spot price now in
    ``zone``, None: the highest of the region's zones). ``prices`` default: the kit's table
    only (spot workers then at the on-demand price, said)."""
    prices = _prices_of(region, prices)
    gp3, gp3_source = prices.gp3_gb_hour()
    ipv4, ipv4_source = prices.public_ipv4_hour()
    gb = (1 + workers) * volume_gb
    lines = _node_lines(prices, master_type, worker_type, workers, worker_market, zone)
    lines += [
        CostLine("GB of gp3", gb, round(gp3, 7), "/GB-h", gb * gp3, gp3_source),
        CostLine("public IPv4", public_ips, ipv4, "/h", public_ips * ipv4, ipv4_source),
    ]
    return Cost(region, lines, notes=list(dict.fromkeys(prices.notes)))


def _node_lines(prices: Prices, master_type: str, worker_type: str, workers: int,
                market: str, zone: str | None) -> list[CostLine]:  # fmt: skip
    """The instances' lines of an estimate: one when every node is the same on-demand type,
    else the master's and the workers'."""
    each, source = prices.instance(master_type)
    if master_type == worker_type and market == "on-demand":
        nodes = 1 + workers
        return [CostLine(f"{master_type} instance", nodes, each, "/h", nodes * each, source)]
    master = CostLine(f"{master_type} instance (master)", 1, each, "/h", each, source)
    if market == "spot":
        price, where = prices.spot(worker_type, zone)
        what = f"{worker_type} spot instance (workers)"
    else:
        price, where = prices.instance(worker_type)
        what = f"{worker_type} instance (workers)"
    return [master, CostLine(what, workers, price, "/h", workers * price, where)]


def running(
    ec2: Any, cluster: str, region: str, *, cluster_id: str | None = None,
    prices: Prices | None = None,
) -> Cost:  # fmt: skip
    """The list price per hour of the cluster's resources as they are now: running
    instances (each at its own type; a spot one at the spot price of its zone, asked of
    ``ec2``), every volume (stopped instances keep theirs), public addresses. With
    ``cluster_id``, only those carrying it (not another cluster's of the same name).
    ``prices`` default: the kit's table only."""
    prices = _prices_of(region, prices).use_ec2(ec2)
    cost = Cost(region)
    tags = tag_filter(cluster, cluster_id)
    by_kind: dict[tuple[str, str | None], int] = {}
    public = 0
    for reservation in ec2.describe_instances(
        Filters=[*tags, {"Name": "instance-state-name", "Values": LIVE_STATES}]
    )["Reservations"]:
        for inst in reservation["Instances"]:
            if inst["State"]["Name"] in ("pending", "running"):
                kind = _kind(inst)
                by_kind[kind] = by_kind.get(kind, 0) + 1
            public += 1 if inst.get("PublicIpAddress") else 0
    public += sum(
        1 for a in ec2.describe_addresses(Filters=tags)["Addresses"] if not a.get("InstanceId")
    )  # an idle Elastic IP bills too
    for (itype, zone), count in sorted(by_kind.items(), key=lambda k: (k[0][0], k[0][1] or "")):
        if zone is None:
            price, source = prices.instance(itype)
            what = f"{itype} instance"
        else:
            price, source = prices.spot(itype, zone or None)
            what = f"{itype} spot instance"
        cost.lines.append(CostLine(what, count, price, "/h", count * price, source))
    gb = sum(
        v["Size"]
        for v in ec2.describe_volumes(Filters=tags)["Volumes"]
        if v.get("VolumeType") == "gp3"
    )
    if gb:
        per_gb_h, source = prices.gp3_gb_hour()
        cost.lines.append(
            CostLine("GB of gp3", gb, round(per_gb_h, 7), "/GB-h", gb * per_gb_h, source)
        )
    if public:
        ipv4, source = prices.public_ipv4_hour()
        cost.lines.append(CostLine("public IPv4", public, ipv4, "/h", public * ipv4, source))
    cost.notes = list(dict.fromkeys(prices.notes))
    return cost


def _kind(instance: dict[str, Any]) -> tuple[str, str | None]:
    """How ``instance`` (describe_instances' shape) is priced: (its type, None) on-demand;
    (its type, its zone, "" when unknown) spot."""
    if instance.get("InstanceLifecycle") != "spot":
        return instance["InstanceType"], None
    return instance["InstanceType"], instance.get("Placement", {}).get("AvailabilityZone", "")


class OverBudget(BadInput):
    """A cluster's list price per hour is over its spec's ``aws.max_hourly_usd``."""


def within_budget(cost: Cost, limit: float) -> bool:
    """Whether ``cost`` per hour is at most ``limit`` USD (a hundredth of a cent spared)."""
    return cost.hourly <= limit + 1e-6


def check_budget(cost: Cost, limit: float, *, yes: bool, spec_editable: bool = True) -> None:
    """Nothing when ``cost`` per hour is within ``limit`` (the spec's aws.max_hourly_usd) or
    ``yes`` accepts it; OverBudget naming the price, the limit, the field and the ways on (a
    higher aws.max_hourly_usd, for a cluster not made yet: ``spec_editable``; or --yes)."""
    if yes or within_budget(cost, limit):
        return
    enough = math.ceil(cost.hourly * 100) / 100
    raise_it = (f"set aws.max_hourly_usd to {enough:.2f} or more in the spec, or "
                if spec_editable else "")  # fmt: skip
    raise OverBudget(
        f"the cluster would cost ${cost.hourly:.4f} per hour at list prices ({cost.formula()}; "
        f"{cost.source}), over aws.max_hourly_usd = ${limit:g}: {raise_it}pass --yes to "
        "accept the price"
    )


def budget_unknown(exc: ClusterkitError, *, yes: bool, say: Callable[[str], None]) -> None:
    """When a cluster cannot be priced (a region or type the kit's table lacks, and no Price
    List API answer): with ``yes``, said, and nothing stops; else OverBudget with the reason
    and --yes."""
    if not yes:
        raise OverBudget(f"{exc}; so aws.max_hourly_usd cannot be checked: pass --yes to go "
                         "on without a price")  # fmt: skip
    say(f"no list price ({exc}); going on without the budget check (--yes)")
