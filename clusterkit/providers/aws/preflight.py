"""Before anything is made on AWS: each check fails with one line that says how to fix it.

Credentials and region (STS answers), the key pair (the cluster's public key is readable,
and a key pair of the cluster's name is either absent or the same key), the operator's
address (given or detected; never wider than /16, never 0.0.0.0/0), and Terraform. Then
what the nodes need (:func:`check_capacity`): both instance types offered in a common zone
of the region, and the vCPUs of the nodes to make within the account's EC2 quotas (when
Service Quotas answers; else said, not checked). Spot workers with an idle guard that
terminates are refused (:func:`check_spot_shutdown`).
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.providers.aws import terraform

#: Answers with the caller's public IPv4 address (AWS's own service).
CHECKIP_URL = "https://checkip.amazonaws.com"
#: Another service answering the same way, when AWS's is blocked (its URL).
CHECKIP_ENV = "CLUSTERKIT_CHECKIP_URL"
#: The python3 each image family ships (infra/main.tf's images).
IMAGE_PYTHON = {"debian-12": "3.11", "ubuntu-24.04": "3.12"}
#: The EC2 quotas (Service Quotas codes) the nodes count against, in vCPUs: on-demand and
#: spot instances of the standard families (A, C, D, H, I, M, R, T, Z).
ON_DEMAND_QUOTA = ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")
SPOT_QUOTA = ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests")
STANDARD_FAMILIES = frozenset("acdhimrtz")


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


def checkip_url() -> str:
    """Where this machine's public address is asked: ``$CLUSTERKIT_CHECKIP_URL``, else
    AWS's checkip service."""
    return os.environ.get(CHECKIP_ENV) or CHECKIP_URL


def detect_operator_ip(fetch: Callable[[str], str] | None = None) -> str:
    """This machine's public IPv4 address, asked of :func:`checkip_url` (one line, the
    address)."""
    url = checkip_url()
    if fetch is None:
        import requests

        def fetch(url: str) -> str:
            return requests.get(url, timeout=10).text

    try:
        answer = fetch(url).strip()
        return str(ipaddress.IPv4Address(answer))
    except Exception as exc:
        raise AwsPreflightError(
            f"could not detect this machine's public IP from {url} ({exc}); give it: "
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


def check_spot_shutdown(worker_market: str, idle_action: str | None) -> None:
    """Spot workers must stop, not terminate, when powered off from inside: a persistent spot
    instance that terminates is launched again by its request, outside the kit.
    AwsPreflightError naming both fields otherwise (infra/variables.tf refuses it too)."""
    if worker_market == "spot" and idle_action == "terminate":
        raise AwsPreflightError(
            "aws.worker_market = spot with idle_guard.action = terminate: a spot worker that "
            "terminates itself is launched again by its spot request, outside the kit; set "
            "idle_guard.action: stop (its disk is kept; only the volumes bill), or "
            "aws.worker_market: on-demand"
        )


@dataclass(frozen=True)
class Capacity:
    """What the nodes need of the region: the zones offering both instance types (the first
    is the one Terraform picks), the vCPUs to be made per market, and notes on what could
    not be checked."""

    zones: list[str]
    vcpus: dict[str, int]
    notes: list[str] = field(default_factory=list)

    @property
    def zone(self) -> str:
        return self.zones[0]


def offered_zones(ec2: Any, instance_type: str) -> list[str]:
    """The zones of ``ec2``'s region that offer ``instance_type``, sorted."""
    pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone",
        Filters=[{"Name": "instance-type", "Values": [instance_type]}],
    )
    return sorted({o["Location"] for page in pages for o in page["InstanceTypeOfferings"]})


def _zones(ec2: Any, master_type: str, worker_type: str, region: str) -> list[str]:
    """The zones offering both types; AwsPreflightError naming the field and the fix."""
    found = {}
    for field_name, itype in (("master_instance_type", master_type),
                              ("worker_instance_type", worker_type)):  # fmt: skip
        found[field_name] = offered_zones(ec2, itype)
        if not found[field_name]:
            flag = "--instance-type" if field_name == "master_instance_type" else (
                "--worker-instance-type")  # fmt: skip
            raise AwsPreflightError(
                f"aws.{field_name} = {itype!r} is not offered in any zone of {region}: pick "
                f"another type (aws.{field_name} in the spec, or `up {flag}`), e.g. t3.large, "
                f"or another region (aws.region, `up --region`)"
            )
    both = sorted(set(found["master_instance_type"]) & set(found["worker_instance_type"]))
    if not both:
        raise AwsPreflightError(
            f"no zone of {region} offers both aws.master_instance_type = {master_type!r} "
            f"({', '.join(found['master_instance_type'])}) and aws.worker_instance_type = "
            f"{worker_type!r} ({', '.join(found['worker_instance_type'])}); the nodes share "
            f"one zone: pick types offered together, or another region"
        )
    return both


def vcpus_of(ec2: Any, instance_types: list[str]) -> dict[str, int]:
    """The default vCPUs of each of ``instance_types``, from describe_instance_types."""
    answer = ec2.describe_instance_types(InstanceTypes=sorted(set(instance_types)))
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"])
            for t in answer["InstanceTypes"]}  # fmt: skip


def standard(instance_type: str) -> bool:
    """Whether ``instance_type`` counts against the standard-family quotas."""
    return instance_type[:1] in STANDARD_FAMILIES


def vcpus_in_use(ec2: Any) -> dict[str, int]:
    """vCPUs of the account's pending and running standard-family instances in ``ec2``'s
    region (each type's default vCPUs), by market ("on-demand", "spot"): what the quotas
    count already."""
    counts: dict[tuple[str, str], int] = {}
    states = [{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    for page in ec2.get_paginator("describe_instances").paginate(Filters=states):
        for reservation in page["Reservations"]:
            for inst in reservation["Instances"]:
                if standard(inst["InstanceType"]):
                    market = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
                    key = (inst["InstanceType"], market)
                    counts[key] = counts.get(key, 0) + 1
    each = vcpus_of(ec2, [itype for itype, _ in counts]) if counts else {}
    used = {"on-demand": 0, "spot": 0}
    for (itype, market), count in counts.items():
        used[market] += count * each.get(itype, 0)
    return used


def quota_value(quotas: Any, code: str) -> float:
    """The account's value of EC2 quota ``code`` (Service Quotas); any error is the caller's."""
    return float(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])


def _needed(master_type: str, worker_type: str, workers: int, worker_market: str,
            vcpus: dict[str, int], *, new_master: bool) -> dict[str, int]:  # fmt: skip
    """vCPUs of the nodes to make, by market (standard families only)."""
    need = {"on-demand": 0, "spot": 0}
    if new_master and standard(master_type):
        need["on-demand"] += vcpus[master_type]
    if standard(worker_type):
        need["spot" if worker_market == "spot" else "on-demand"] += workers * vcpus[worker_type]
    return need


def check_capacity(ec2: Any, quotas: Any, *, master_type: str, worker_type: str,
                   workers: int, worker_market: str, new_master: bool = True,
                   new_workers: int | None = None) -> Capacity:  # fmt: skip
    """Both instance types offered in a common zone, and the vCPUs of the nodes to make
    (the master when ``new_master``; ``new_workers`` workers, default ``workers``) within
    the account's quotas beside what runs already. AwsPreflightError naming the field and
    the fix; a quota Service Quotas (``quotas``) does not give is noted, not checked."""
    region = getattr(getattr(ec2, "meta", None), "region_name", "the region")
    zones = _zones(ec2, master_type, worker_type, region)
    vcpus = vcpus_of(ec2, [master_type, worker_type])
    adding = workers if new_workers is None else new_workers
    need = _needed(master_type, worker_type, adding, worker_market, vcpus, new_master=new_master)
    notes = [f"{t} is not a standard-family type: its vCPU quota is not checked"
             for t in dict.fromkeys([master_type, worker_type]) if not standard(t)]  # fmt: skip
    used: dict[str, int] | None = None
    for market, (code, title) in (("on-demand", ON_DEMAND_QUOTA), ("spot", SPOT_QUOTA)):
        if not need[market]:
            continue
        try:
            limit = quota_value(quotas, code)
            used = vcpus_in_use(ec2) if used is None else used
        except Exception as exc:  # no Service Quotas answer (permissions, moto): said
            notes.append(f"quota not checked: {title} ({code}) could not be read "
                         f"({type(exc).__name__}: {str(exc)[:120]})")  # fmt: skip
            continue
        if used[market] + need[market] > limit:
            raise AwsPreflightError(_over_quota(market, code, title, limit, used[market],
                                                need[market], workers, worker_type,
                                                vcpus[worker_type], region))  # fmt: skip
    return Capacity(zones, need, notes)


def _over_quota(market: str, code: str, title: str, limit: float, used: int, need: int,
                workers: int, worker_type: str, each: int, region: str) -> str:  # fmt: skip
    spot = " spot" if market == "spot" else ""
    return (
        f"nodes.workers = {workers} of aws.worker_instance_type = {worker_type!r} ({each} "
        f"vCPUs each{spot}) needs {need} more {market} vCPUs, and the account's quota "
        f'"{title}" ({code}) in {region} is {limit:g} with {used} in use: lower '
        f"nodes.workers (`--workers`), pick a smaller aws.worker_instance_type, or ask AWS "
        f"for more (Service Quotas console, quota {code})"
    )
