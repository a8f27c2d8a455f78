"""Before anything is made on AWS: each check fails with one line that says how to fix it.

Credentials and region (STS answers), the key pair (the cluster's public key is readable,
and a key pair of the cluster's name is either absent or the same key), the operator's
address (given or detected; never wider than /16, never 0.0.0.0/0), and Terraform.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws import terraform

#: Answers with the caller's public IPv4 address (AWS's own service).
CHECKIP_URL = "https://checkip.amazonaws.com"
#: The python3 each image family ships (infra/main.tf's images).
IMAGE_PYTHON = {"debian-12": "3.11", "ubuntu-24.04": "3.12"}


class AwsPreflightError(ClusterkitError):
    """A check before `up --provider aws` failed; the message says how to fix it."""


@dataclass(frozen=True)
class AwsContext:
    """What the checks found: who and where, the operator's CIDR and the Terraform used."""

    account: str
    arn: str
    region: str
    operator_cidr: str
    terraform: str


def resolve_region(given: str | None) -> str:
    """The region, first set of: ``given`` (the spec's aws.region, or what the cluster
    recorded), AWS_REGION, AWS_DEFAULT_REGION, the profile's config (AWS_PROFILE or the
    default one). botocore reads AWS_DEFAULT_REGION only, so the kit looks itself.
    AwsPreflightError naming them all when none is set."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    for value in (given, os.environ.get("AWS_REGION"), os.environ.get("AWS_DEFAULT_REGION")):
        if value and value.strip():
            return value.strip()
    try:
        profile = boto3.session.Session().region_name
    except ProfileNotFound as exc:
        raise AwsPreflightError(
            f"{exc}: set AWS_PROFILE to a profile of `aws configure list-profiles`, or unset it"
        ) from exc
    if not profile:
        raise AwsPreflightError(
            "no AWS region: set aws.region in the spec, or AWS_REGION or AWS_DEFAULT_REGION "
            "(e.g. export AWS_REGION=us-east-1), or `aws configure set region us-east-1`"
        )
    return str(profile)


def session(region: str | None) -> Any:
    """A boto3 session in :func:`resolve_region` of ``region``, given to boto3 explicitly
    (every client made from it is in that region); AwsPreflightError when no region is set
    anywhere."""
    import boto3

    return boto3.session.Session(region_name=resolve_region(region))


def check_credentials(sess: Any) -> tuple[str, str]:
    """(account, ARN) from STS; AwsPreflightError naming the fix when there are none."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        who = sess.client("sts").get_caller_identity()
    except NoCredentialsError as exc:
        raise AwsPreflightError(
            "no AWS credentials: run `aws configure` (or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE)"
        ) from exc
    except (ClientError, BotoCoreError) as exc:
        raise AwsPreflightError(
            f"AWS did not accept the credentials in region {sess.region_name}: {exc}; check "
            f"them with `aws sts get-caller-identity`"
        ) from exc
    return str(who["Account"]), str(who["Arn"])


def key_blob(public_key_line: str) -> tuple[str, bytes]:
    """(type, key bytes) of an OpenSSH public key line; ValueError when it is not one."""
    parts = public_key_line.split()
    if len(parts) < 2 or not parts[0].startswith(("ssh-", "ecdsa-")):
        raise ValueError("not an OpenSSH public key line (ssh-ed25519 AAAA...)")
    return parts[0], base64.b64decode(parts[1], validate=True)


def check_key_pair(sess: Any, *, key_name: str, public_key: Path, managed: bool) -> str:
    """The public key's text. A key pair called ``key_name`` may exist only when it is the
    same key, or this cluster's own Terraform state holds it (``managed``)."""
    try:
        text = public_key.read_text().strip()
        ours = key_blob(text)
    except (OSError, ValueError) as exc:
        raise AwsPreflightError(
            f"cannot read the cluster's SSH public key {public_key}: {exc}; delete it and its "
            f"private key ({public_key.with_suffix('')}) to have a new pair made"
        ) from exc
    from botocore.exceptions import ClientError

    ec2 = sess.client("ec2")
    try:
        found = ec2.describe_key_pairs(KeyNames=[key_name], IncludePublicKey=True)["KeyPairs"]
    except ClientError as exc:
        if "NotFound" in exc.response.get("Error", {}).get("Code", ""):
            return text
        raise AwsPreflightError(f"reading EC2 key pair {key_name}: {exc}") from exc
    if not found or managed:
        return text
    if key_blob(found[0].get("PublicKey", "")) != ours:
        fingerprint = found[0].get("KeyFingerprint", "?")
        cluster = key_name.removeprefix("clusterkit-")
        raise AwsPreflightError(
            f"EC2 key pair {key_name!r} in {sess.region_name} exists with another key "
            f"({fingerprint}); it is left from an earlier cluster of this name: remove it "
            f"with `clusterkit down --provider aws --cluster {cluster}`"
        )
    return text


def detect_operator_ip(fetch: Callable[[str], str] | None = None) -> str:
    """This machine's public IPv4 address, asked of AWS's checkip service."""
    if fetch is None:
        import requests

        def fetch(url: str) -> str:
            return requests.get(url, timeout=10).text

    try:
        answer = fetch(CHECKIP_URL).strip()
        return str(ipaddress.IPv4Address(answer))
    except Exception as exc:
        raise AwsPreflightError(
            f"could not detect this machine's public IP from {CHECKIP_URL} ({exc}); give it: "
            f"aws.operator_cidr: 81.2.69.160/32 in the spec (allow-ip: the CIDR argument)"
        ) from exc


def operator_cidr(
    given: str | None,
    *,
    fetch: Callable[[str], str] | None = None,
    field: str = "aws.operator_cidr",
) -> str:
    """The CIDR SSH is opened to: ``given`` (checked; errors name ``field``, where it came
    from), else the detected address as /32."""
    if not given:
        return f"{detect_operator_ip(fetch)}/32"
    try:
        net = ipaddress.IPv4Network(given, strict=False)
    except ValueError as exc:
        raise AwsPreflightError(
            f"{field} = {given!r} is not an IPv4 CIDR block (e.g. 81.2.69.160/32)"
        ) from exc
    if net.prefixlen < 16:
        raise AwsPreflightError(
            f"{field} = {given!r} opens SSH to {net.num_addresses:,} addresses; give "
            f"your own address as /32 (or your campus range, /16 at the widest)"
        )
    if not net.is_global:
        raise AwsPreflightError(
            f"{field} = {given!r} is not a public address; AWS sees your public IP "
            f"(`curl {CHECKIP_URL}`)"
        )
    return str(net)


def check_image_python(ami_family: str, control_python: str) -> None:
    """Ray needs the same Python on the nodes as here: the image's python3 must match."""
    theirs = IMAGE_PYTHON[ami_family]
    if theirs != control_python:
        other = [f for f, v in IMAGE_PYTHON.items() if v == control_python]
        fix = f"set aws.ami_family: {other[0]}" if other else f"run clusterkit from Python {theirs}"
        raise AwsPreflightError(
            f"aws.ami_family = {ami_family!r} runs Python {theirs} and this machine runs "
            f"{control_python}; Ray needs the same on every node: {fix}"
        )


def check(
    *,
    region: str | None,
    key_name: str,
    public_key: Path,
    managed: bool,
    operator: str | None,
    ami_family: str,
    control_python: str,
    fetch: Callable[[str], str] | None = None,
) -> AwsContext:
    """Every check in order, the first failure raised; the context for Terraform."""
    check_image_python(ami_family, control_python)
    tf = terraform.engine()
    sess = session(region)
    account, arn = check_credentials(sess)
    check_key_pair(sess, key_name=key_name, public_key=public_key, managed=managed)
    cidr = operator_cidr(operator, fetch=fetch)
    return AwsContext(
        account=account, arn=arn, region=sess.region_name, operator_cidr=cidr, terraform=tf
    )
