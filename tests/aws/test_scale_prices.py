"""``clusterkit scale`` on AWS says the price per hour before and after, before acting, and
refuses growing past aws.max_hourly_usd unless --yes (:func:`clusterkit.scale._say_prices`).

Offline as the other tests here: moto in front of every call (it has no Price List API, so
the on-demand prices come from the kit's dated table), and EC2's spot price history under
botocore's Stubber. The cluster is the least ``_say_prices`` reads: a state folder whose
Terraform variables are written as ``up`` writes them, and the spec saved in the state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import boto3
import pytest
from botocore.stub import ANY, Stubber

from clusterkit.cluster import Cluster
from clusterkit.core.errors import BadInput
from clusterkit.core.spec import Spec, parse_spec
from clusterkit.core.state import ClusterPaths
from clusterkit.providers.aws import pricing
from clusterkit.providers.aws.pricing import TABLE_SOURCE, OverBudget
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.scale import ScaleReport, _say_prices, _target_spec
from tests.aws.conftest import KEY, REGION
from tests.aws.test_provider import IMAGE

CLUSTER_ID = "0123456789ab"
T2_LARGE = 0.0928  # the table's us-east-1 price (eu-west-1's is $0.1008)
GP3_GB_H = 0.08 / 730
IPV4_H = 0.005
#: The spot price history the stub gives of t3.large: no zone chosen, so the highest.
SPOT_ZONES = {f"{REGION}a": "0.030100", f"{REGION}b": "0.034500"}
SPOT_T3 = 0.0345


def _spec(workers: int, **aws: Any) -> Spec:
    return parse_spec({"name": "alpha", "provider": "aws", "nodes": {"workers": workers},
                       "aws": {"operator_cidr": "81.2.69.160/32", "ami_family": IMAGE,
                               **aws}})  # fmt: skip


def _cluster(home: Path, spec: Spec) -> Cluster:
    """What ``_say_prices`` reads of a cluster made by ``up`` of ``spec`` in us-east-1: its
    paths (the Terraform variables written as the provider writes them) and its state's
    spec."""
    paths = ClusterPaths(home / "clusters" / spec.name)
    variables = AwsProvider.variables(spec, region=REGION, operator_cidr="81.2.69.160/32",
                                      public_key=KEY, cluster_id=CLUSTER_ID)  # fmt: skip
    AwsProvider.terraform(paths).write_vars(variables)
    return cast(Cluster, SimpleNamespace(name=spec.name, paths=paths,
                                         state=SimpleNamespace(spec=spec)))  # fmt: skip


def _report(before: int, after: int) -> ScaleReport:
    return ScaleReport("alpha", "aws", before, after, changed=False, message="")


def _say(cluster: Cluster, workers: int, *, yes: bool = False) -> tuple[ScaleReport, list[str]]:
    said: list[str] = []
    report = _report(cluster.state.spec.nodes.workers, workers)
    _say_prices(AwsProvider(), cluster, _target_spec(cluster.state.spec, workers), report,
                yes=yes, say=said.append)  # fmt: skip
    return report, said


@pytest.fixture
def elsewhere(aws, monkeypatch):
    """The environment's region is not the cluster's: the prices must be the cluster's."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")


def test_growing_one_on_demand_worker_to_three_says_both_prices_first(elsewhere, tmp_path):
    report, said = _say(_cluster(tmp_path, _spec(1)), 3)
    assert said[0] == (
        "price per hour: $0.1939 now (2 × $0.0928/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = "
        "$0.1939/h), $0.3828 with 3 worker(s) (4 × $0.0928/h + 60 × $0.0001096/GB-h + "
        f"1 × $0.005/h = $0.3828/h); {TABLE_SOURCE}"
    )
    assert said[1:] == [f"list price $0.3828/h ({TABLE_SOURCE}): within aws.max_hourly_usd = $0.5"]
    assert report.hourly_usd_before == pytest.approx(2 * T2_LARGE + 30 * GP3_GB_H + IPV4_H)
    assert report.hourly_usd_after == pytest.approx(4 * T2_LARGE + 60 * GP3_GB_H + IPV4_H)


def test_shrinking_says_the_prices_and_checks_no_budget(elsewhere, tmp_path):
    """Three workers are over a $0.25 budget: going down to one is never refused for it."""
    report, said = _say(_cluster(tmp_path, _spec(3, max_hourly_usd=0.25)), 1)
    assert said == [
        "price per hour: $0.3828 now (4 × $0.0928/h + 60 × $0.0001096/GB-h + 1 × $0.005/h = "
        "$0.3828/h), $0.1939 with 1 worker(s) (2 × $0.0928/h + 30 × $0.0001096/GB-h + "
        f"1 × $0.005/h = $0.1939/h); {TABLE_SOURCE}"
    ]
    assert (report.hourly_usd_before, report.hourly_usd_after) == (
        pytest.approx(0.3828, abs=5e-5), pytest.approx(0.1939, abs=5e-5))  # fmt: skip


def test_spot_workers_are_priced_at_the_spot_price_now(elsewhere, tmp_path, monkeypatch):
    ec2 = boto3.client("ec2", region_name=REGION)
    monkeypatch.setattr(pricing, "ec2_client", lambda region, session=None: ec2)
    history = [{"AvailabilityZone": zone, "InstanceType": "t3.large",
                "ProductDescription": "Linux/UNIX", "SpotPrice": usd,
                "Timestamp": datetime.now(UTC) - timedelta(minutes=5)}
               for zone, usd in SPOT_ZONES.items()]  # fmt: skip
    asked = {"InstanceTypes": ["t3.large"], "ProductDescriptions": ["Linux/UNIX"],
             "StartTime": ANY}  # fmt: skip
    cluster = _cluster(tmp_path, _spec(1, worker_instance_type="t3.large", worker_market="spot"))
    with Stubber(ec2) as stub:
        for _ in range(3):  # the price now, after, and the budget's check of after
            stub.add_response("describe_spot_price_history",
                              {"SpotPriceHistory": history, "NextToken": ""}, asked)  # fmt: skip
        report, said = _say(cluster, 3)
        stub.assert_no_pending_responses()
    spot_source = "EC2 spot price history, now (highest of 2 zones)"
    sources = (f"{TABLE_SOURCE} (t2.large instance (master), GB of gp3, public IPv4); "
               f"{spot_source} (t3.large spot instance (workers))")  # fmt: skip
    assert said[0] == (
        "price per hour: $0.1356 now (1 × $0.0928/h + 1 × $0.0345/h + 30 × $0.0001096/GB-h + "
        "1 × $0.005/h = $0.1356/h), $0.2079 with 3 worker(s) (1 × $0.0928/h + 3 × $0.0345/h "
        f"+ 60 × $0.0001096/GB-h + 1 × $0.005/h = $0.2079/h); {sources}"
    )
    assert said[1] == f"list price $0.2079/h ({sources}): within aws.max_hourly_usd = $0.5"
    assert report.hourly_usd_before == pytest.approx(T2_LARGE + SPOT_T3 + 30 * GP3_GB_H + IPV4_H)
    assert report.hourly_usd_after == pytest.approx(T2_LARGE + 3 * SPOT_T3 + 60 * GP3_GB_H + IPV4_H)


#: Nine t2.large on-demand, 9 * 15 GB of gp3 and one public IPv4: over the default $0.50.
EIGHT_ON_DEMAND = 9 * T2_LARGE + 135 * GP3_GB_H + IPV4_H


def test_growing_past_the_budget_is_refused_unless_yes(elsewhere, tmp_path):
    cluster = _cluster(tmp_path, _spec(1))
    said: list[str] = []
    report = _report(1, 8)
    with pytest.raises(OverBudget) as info:
        _say_prices(AwsProvider(), cluster, _target_spec(cluster.state.spec, 8), report,
                    yes=False, say=said.append)  # fmt: skip
    message = str(info.value)
    assert isinstance(info.value, BadInput)  # exit code 2
    assert message.startswith("the cluster would cost $0.8550 per hour at list prices")
    assert "over aws.max_hourly_usd = $0.5: pass --yes to accept the price" in message
    assert "set aws.max_hourly_usd" not in message  # a made cluster: --yes is the way on
    # both prices were said before the refusal
    assert said == [
        "price per hour: $0.1939 now (2 × $0.0928/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = "
        "$0.1939/h), $0.8550 with 8 worker(s) (9 × $0.0928/h + 135 × $0.0001096/GB-h + "
        f"1 × $0.005/h = $0.8550/h); {TABLE_SOURCE}"
    ]
    assert report.hourly_usd_after == pytest.approx(EIGHT_ON_DEMAND)

    accepted, said = _say(cluster, 8, yes=True)
    assert accepted.hourly_usd_after == pytest.approx(EIGHT_ON_DEMAND)
    assert said[1] == (f"list price $0.8550/h ({TABLE_SOURCE}): over, accepted by --yes, "
                       "aws.max_hourly_usd = $0.5")  # fmt: skip
