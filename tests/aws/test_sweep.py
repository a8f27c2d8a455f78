"""The sweep after `terraform destroy`: what carries the cluster's name and id is found,
named and removed in dependency order; another cluster's (another name, or the same name and
another id) and untagged resources are left alone; what is outside the recorded VPC, or found
by the name alone (no id recorded), goes only with the operator's yes."""

from __future__ import annotations

from typing import Any

import pytest

from clusterkit.providers.aws import sweep
from clusterkit.providers.aws.tags import ID_TAG_KEY
from tests.aws.conftest import cluster_tags, make_cluster, yes_recording


def _scope(made: dict[str, str], name: str = "alpha") -> sweep.Scope:
    """The scope `down` gives the sweep for a cluster whose state is here."""
    return sweep.Scope(name, made["cluster_id"], made["vpc"])


def _running(ec2: Any, *ids: str) -> list[str]:
    reservations = ec2.describe_instances(InstanceIds=list(ids))["Reservations"]
    return [i["State"]["Name"] for r in reservations for i in r["Instances"]]


def test_find_lists_every_kind_in_removal_order(ec2):
    made = make_cluster(ec2, "alpha")
    found = sweep.find(ec2, "alpha")
    kinds = [t.kind for t in found]
    assert kinds == sorted(kinds, key=sweep.KINDS.index)
    assert {t.id for t in found if t.kind == "instance"} == {made["master"], made["worker"]}
    assert {t.id for t in found if t.kind == "security-group"} == {
        made["master_sg"],
        made["members_sg"],
    }
    assert [t.id for t in found if t.kind == "vpc"] == [made["vpc"]]
    for kind in ("key-pair", "route-table", "internet-gateway", "subnet", "volume"):
        assert kind in kinds, kind
    assert len([t for t in found if t.kind == "route-table"]) == 2  # not the VPC's main one
    assert "instance " + made["master"] + " (master)" in [str(t) for t in found]
    assert {t.cluster_id for t in found} == {made["cluster_id"]}
    in_vpc = {t.vpc for t in found if t.kind not in ("key-pair", "volume", "address")}
    assert in_vpc == {made["vpc"]}  # every kind that lives in a VPC knows which


def test_remove_leaves_nothing_tagged_and_spares_the_rest(ec2):
    made = make_cluster(ec2, "alpha")
    other = make_cluster(ec2, "beta")
    untagged = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    said: list[str] = []
    swept = sweep.remove(ec2, _scope(made), say=said.append, wait_s=30)
    assert sweep.find(ec2, "alpha") == []
    assert {t.kind for t in swept.removed} >= {"instance", "security-group", "subnet", "vpc"}
    assert (swept.spared, swept.skipped) == ([], [])
    assert any(line.startswith("terminating ") for line in said)
    beta = sweep.find(ec2, "beta")
    assert other["vpc"] in {t.id for t in beta} and len(beta) >= 12
    assert untagged in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}


def test_remove_with_nothing_tagged_does_nothing(ec2):
    swept = sweep.remove(ec2, sweep.Scope("ghost", "0123456789ab"), say=lambda _: None)
    assert swept.removed == []


def test_an_unremovable_resource_is_said_and_found_again(ec2):
    """A resource AWS refuses to delete is named; the second find still lists it."""
    made = make_cluster(ec2, "alpha")
    # an untagged subnet someone added by hand keeps the VPC in use
    ec2.create_subnet(VpcId=made["vpc"], CidrBlock="10.0.9.0/24")
    said: list[str] = []
    sweep.remove(ec2, _scope(made), say=said.append, wait_s=30)
    left = {t.kind for t in sweep.find(ec2, "alpha")}
    assert "vpc" in left
    assert any(line.startswith("could not remove vpc ") for line in said)


# --- two clusters of one name ------------------------------------------------------------


def test_a_same_name_cluster_with_another_id_is_spared_and_said(ec2):
    ours = make_cluster(ec2, "alpha")
    theirs = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-elsewhere")
    assert ours["cluster_id"] != theirs["cluster_id"]
    before = {t.id for t in sweep.find(ec2, "alpha") if t.cluster_id == theirs["cluster_id"]}
    assert len(before) >= 12 and theirs["vpc"] in before
    said: list[str] = []
    swept = sweep.remove(ec2, _scope(ours), say=said.append, wait_s=30)
    left = sweep.find(ec2, "alpha")
    assert {t.id for t in left} == before  # all of theirs, none of ours
    assert {t.cluster_id for t in left} == {theirs["cluster_id"]}
    assert _running(ec2, theirs["master"], theirs["worker"]) == ["running", "running"]
    assert set(_running(ec2, ours["master"], ours["worker"])) == {"terminated"}
    assert ours["vpc"] not in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}
    assert {t.id for t, _ in swept.spared} == before
    why = (
        f"its {ID_TAG_KEY} is {theirs['cluster_id']}, not this cluster's "
        f"{ours['cluster_id']}: another cluster named 'alpha'"
    )
    assert f"left vpc {theirs['vpc']} (clusterkit-alpha): {why}" in said
    assert sum(line.startswith("left ") for line in said) == len(before)


def test_a_same_name_cluster_of_an_older_kit_is_spared(ec2):
    """Resources with the name and no id at all are not this cluster's either."""
    ours = make_cluster(ec2, "alpha")
    older = make_cluster(ec2, "alpha", cluster_id="", key_name="clusterkit-alpha-old")
    swept = sweep.remove(ec2, _scope(ours), say=lambda _: None, wait_s=30)
    assert {t.cluster_id for t in sweep.find(ec2, "alpha")} == {""}
    assert older["vpc"] in {t.id for t, _ in swept.spared}
    assert all(f"its {ID_TAG_KEY} is (none)" in why for _, why in swept.spared)


# --- outside the recorded VPC ------------------------------------------------------------


def _stray_group(ec2: Any, made: dict[str, str]) -> tuple[str, str]:
    """A security group with the cluster's name and id, in an untagged VPC of its own."""
    elsewhere = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    tags = [*cluster_tags("alpha", made["cluster_id"]), {"Key": "Name", "Value": "stray"}]
    group = ec2.create_security_group(
        GroupName="stray",
        Description="tagged like the cluster, outside its VPC",
        VpcId=elsewhere,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags}],
    )["GroupId"]
    return elsewhere, group


def _groups(ec2: Any) -> set[str]:
    return {g["GroupId"] for g in ec2.describe_security_groups()["SecurityGroups"]}


@pytest.mark.parametrize("answer", [None, False])
def test_outside_the_recorded_vpc_is_left_without_a_yes(ec2, answer):
    made = make_cluster(ec2, "alpha")
    elsewhere, stray = _stray_group(ec2, made)
    asked: list[str] = []

    def confirm(question: str) -> bool:
        asked.append(question)
        return bool(answer)

    said: list[str] = []
    swept = sweep.remove(
        ec2, _scope(made), say=said.append, confirm=None if answer is None else confirm, wait_s=30
    )
    assert stray in _groups(ec2)
    assert [t.id for t in sweep.find(ec2, "alpha")] == [stray]  # the rest of ours went
    why = f"in {elsewhere}, outside the cluster's VPC {made['vpc']}; not confirmed"
    assert [(t.id, reason) for t, reason in swept.skipped] == [(stray, why)]
    assert f"left security-group {stray} (stray): {why}" in said
    assert len(asked) == (0 if answer is None else 1)


def test_outside_the_recorded_vpc_goes_with_a_yes(ec2):
    made = make_cluster(ec2, "alpha")
    elsewhere, stray = _stray_group(ec2, made)
    asked: list[str] = []
    swept = sweep.remove(
        ec2, _scope(made), say=lambda _: None, confirm=yes_recording(asked), wait_s=30
    )
    assert stray not in _groups(ec2)
    assert stray in {t.id for t in swept.removed}
    assert sweep.find(ec2, "alpha") == []
    assert asked == [
        f"cluster 'alpha': remove security-group {stray} (stray) (in {elsewhere}, outside the "
        f"cluster's VPC {made['vpc']})?"
    ]  # one question, for what is in doubt only
    assert elsewhere in {v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"]}  # not tagged


def test_with_no_vpc_recorded_everything_in_a_vpc_is_asked(ec2):
    made = make_cluster(ec2, "alpha")
    scope = sweep.Scope("alpha", made["cluster_id"], None)
    swept = sweep.remove(ec2, scope, say=lambda _: None, wait_s=30)
    kinds = {t.kind for t in swept.removed}
    assert kinds <= {"key-pair", "volume", "address"}  # they live in no VPC
    assert made["vpc"] in {t.id for t, _ in swept.skipped}
    assert all(f"in {made['vpc']}, outside a recorded VPC" in why for _, why in swept.skipped)


# --- no id recorded ------------------------------------------------------------------------


def test_with_no_id_recorded_nothing_goes_by_name_alone_without_a_yes(ec2):
    made = make_cluster(ec2, "alpha")
    before = sweep.find(ec2, "alpha")
    said: list[str] = []
    swept = sweep.remove(ec2, sweep.Scope("alpha", None, made["vpc"]), say=said.append)
    assert swept.removed == [] and len(swept.skipped) == len(before)
    assert sweep.find(ec2, "alpha") == before
    assert all("found by its name alone: no cluster id is recorded" in w for _, w in swept.skipped)
    assert all(line.startswith("left ") for line in said)


def test_with_no_id_recorded_the_yes_names_the_ids_found(ec2):
    made = make_cluster(ec2, "alpha")
    asked: list[str] = []
    swept = sweep.remove(
        ec2,
        sweep.Scope("alpha", None, made["vpc"]),
        say=lambda _: None,
        confirm=yes_recording(asked),
        wait_s=30,
    )
    assert sweep.find(ec2, "alpha") == [] and swept.skipped == []
    assert len(asked) == 1
    assert f"vpc {made['vpc']} (clusterkit-alpha) [{ID_TAG_KEY}={made['cluster_id']}]" in asked[0]


def test_an_older_kits_cluster_asks_and_spares_what_carries_an_id(ec2):
    """Scope id "": what an older kit made carries no id; anything with one is another's."""
    older = make_cluster(ec2, "alpha", cluster_id="")
    newer = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-new")
    scope = sweep.Scope("alpha", "", older["vpc"])
    refused = sweep.remove(ec2, scope, say=lambda _: None)
    assert refused.removed == [] and len(sweep.find(ec2, "alpha")) == 2 * len(refused.spared)
    assert all("made by an older kit, which tagged no cluster id" in w for _, w in refused.skipped)
    sweep.remove(ec2, scope, say=lambda _: None, confirm=lambda q: True, wait_s=30)
    assert {t.cluster_id for t in sweep.find(ec2, "alpha")} == {newer["cluster_id"]}
