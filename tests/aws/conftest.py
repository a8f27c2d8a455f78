"""moto's in-memory EC2 and STS: the aws provider's boto3 code runs against them."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from clusterkit.providers.aws.tags import ID_TAG_KEY, OWNER_TAG_KEY, new_cluster_id

REGION = "us-east-1"
#: The ARN moto's STS names as the caller (the operator, in these tests).
MOTO_CALLER = "arn:aws:sts::123456789012:user/moto"
#: A classmate in the same account.
CLASSMATE = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Student_0a1b/bea@example.edu"


@pytest.fixture
def aws(monkeypatch) -> Iterator[None]:
    """Fake credentials and region (never real ones), and moto in front of every call."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    with mock_aws():
        yield


@pytest.fixture
def ec2(aws) -> Any:
    return boto3.client("ec2", region_name=REGION)


def cluster_tags(name: str, cluster_id: str, owner: str = "") -> list[dict[str, str]]:
    """The tags infra/ puts on every resource (no id tag when ``cluster_id`` is "", no owner
    tag when ``owner`` is "": an older kit's)."""
    tags = [
        {"Key": "clusterkit:cluster", "Value": name},
        {"Key": "ManagedBy", "Value": "clusterkit"},
    ]
    if cluster_id:
        tags.append({"Key": ID_TAG_KEY, "Value": cluster_id})
    return [*tags, {"Key": OWNER_TAG_KEY, "Value": owner}] if owner else tags


def yes_recording(asked: list[str]) -> Callable[[str], bool]:
    """A confirm callback that says yes to every question, recording each in ``asked``."""

    def confirm(question: str) -> bool:
        asked.append(question)
        return True

    return confirm


def make_cluster(
    ec2: Any,
    name: str,
    *,
    operator_cidr: str = "198.51.100.7/32",
    cluster_id: str | None = None,
    key_name: str | None = None,
    owner: str = "",
) -> dict[str, str]:
    """What infra/ makes, made with boto3 the same way (tags, groups, routes, nodes).
    ``cluster_id``: None, a fresh one; "", no id tag (what an older kit made). ``key_name``:
    default ``clusterkit-NAME`` (a second cluster of the same name in the region needs
    another). ``owner``: the clusterkit:owner tag ("": none, as an older kit made)."""
    cluster_id = new_cluster_id() if cluster_id is None else cluster_id
    key_name = key_name or f"clusterkit-{name}"
    tags = cluster_tags(name, cluster_id, owner)

    def spec(kind: str, label: str) -> list[dict[str, Any]]:
        return [{"ResourceType": kind, "Tags": [*tags, {"Key": "Name", "Value": label}]}]

    vpc = ec2.create_vpc(
        CidrBlock="10.0.0.0/16", TagSpecifications=spec("vpc", f"clusterkit-{name}")
    )
    vpc_id = vpc["Vpc"]["VpcId"]
    igw = ec2.create_internet_gateway(TagSpecifications=spec("internet-gateway", name))
    igw_id = igw["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    public = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.1.0/24", TagSpecifications=spec("subnet", "public")
    )["Subnet"]["SubnetId"]
    private = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.2.0/24", TagSpecifications=spec("subnet", "private")
    )["Subnet"]["SubnetId"]
    members = ec2.create_security_group(
        GroupName=f"clusterkit-{name}-members",
        Description="members",
        VpcId=vpc_id,
        TagSpecifications=spec("security-group", "members"),
    )["GroupId"]
    master_sg = ec2.create_security_group(
        GroupName=f"clusterkit-{name}-master",
        Description="master",
        VpcId=vpc_id,
        TagSpecifications=spec("security-group", "master"),
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=members,
        IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": members}]}],
    )
    ec2.authorize_security_group_ingress(
        GroupId=master_sg,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [
                    {"CidrIp": operator_cidr, "Description": "SSH from the operator only"}
                ],
            },
            {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "10.0.2.0/24"}]},
        ],
    )
    ec2.import_key_pair(
        KeyName=key_name,
        PublicKeyMaterial=KEY.encode(),
        TagSpecifications=spec("key-pair", name),
    )
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    root = [
        {
            "DeviceName": "/dev/xvda",
            "Ebs": {"VolumeSize": 15, "VolumeType": "gp3", "Encrypted": True},
        }
    ]
    master = ec2.run_instances(
        ImageId=ami,
        InstanceType="t2.large",
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=root,
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": public,
                "AssociatePublicIpAddress": True,
                "Groups": [members, master_sg],
            }
        ],
        KeyName=key_name,
        TagSpecifications=[*spec("instance", "master"), *spec("volume", "master")],
    )
    worker = ec2.run_instances(
        ImageId=ami,
        InstanceType="t2.large",
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=root,
        SubnetId=private,
        SecurityGroupIds=[members],
        KeyName=key_name,
        TagSpecifications=[*spec("instance", "worker"), *spec("volume", "worker")],
    )
    master_id = master["Instances"][0]["InstanceId"]
    eni = master["Instances"][0]["NetworkInterfaces"][0]["NetworkInterfaceId"]
    public_rt = ec2.create_route_table(
        VpcId=vpc_id, TagSpecifications=spec("route-table", "public")
    )
    public_rt_id = public_rt["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=public_rt_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw_id)
    ec2.associate_route_table(RouteTableId=public_rt_id, SubnetId=public)
    private_rt = ec2.create_route_table(
        VpcId=vpc_id, TagSpecifications=spec("route-table", "private")
    )
    private_rt_id = private_rt["RouteTable"]["RouteTableId"]
    ec2.create_route(
        RouteTableId=private_rt_id, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni
    )
    ec2.associate_route_table(RouteTableId=private_rt_id, SubnetId=private)
    return {
        "vpc": vpc_id,
        "master": master_id,
        "worker": worker["Instances"][0]["InstanceId"],
        "master_sg": master_sg,
        "members_sg": members,
        "cluster_id": cluster_id,
    }


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGnyt0sR2N7wHLE3AJ6XKZTwKU6Rw1nTQ2TGZl0oE1Vb clusterkit"
