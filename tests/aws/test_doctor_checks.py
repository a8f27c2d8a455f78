"""doctor's AWS checks (``aws``, ``keypair``, ``sshrule``, ``orphans``): each judgement
given its readings (every OK, WARN and FAIL path), each reading against moto's EC2 and STS
(credentials, a key pair present, missing or another key, the SSH rule with and without this
machine's address, resources tagged by the kit that no state here knows: the operator's own
by their ``clusterkit:owner`` tag, another's, and an older kit's with none), and ``down
--provider aws --cluster-id``, the left-billing runbook's command. This machine's public
address is always given (never asked of checkip)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clusterkit import cloud
from clusterkit.core.errors import BadInput, StateError
from clusterkit.core.spec import Spec, parse_spec
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.doctor import CHECKS, Finding, run_doctor, state_files
from clusterkit.doctor import aws_checks as ac
from clusterkit.doctor.report import Report, shell_vars
from clusterkit.doctor.target import Target
from clusterkit.exec.ssh import ensure_key
from clusterkit.providers.aws import preflight, sweep
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.aws.sweep import Tagged
from clusterkit.providers.aws.tags import OWNER_TAG_KEY, is_owner, owner_value
from tests.aws.conftest import CLASSMATE, KEY, MOTO_CALLER, REGION, cluster_tags, make_cluster

PUBLIC = "81.2.69.160"
MOVED = "81.2.69.161"


def _one(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def _at(address: str) -> Any:
    """A checkip that answers ``address`` (never the network)."""
    return lambda url: f"{address}\n"


def _offline(url: str) -> str:
    raise ConnectionError("no route to host")


def _spec(name: str = "alpha", **aws: Any) -> Spec:
    return parse_spec({"provider": "aws", "name": name, "aws": aws})


def _known(home: Path, name: str, cluster_id: str, *, vpc: str = "vpc-1",
           region: str = REGION) -> Target:  # fmt: skip
    """A cluster made here as ``up`` leaves its state folder (Terraform's variables, its id,
    a state holding a resource), known to the home's contexts; down (no cluster.json)."""
    paths = ClusterPaths(home / "clusters" / name)
    tf = AwsProvider.terraform(paths)
    tf.write_vars({"region": region, "cluster_id": cluster_id})
    (tf.work / "cluster-id").write_text(cluster_id + "\n")
    resource = {"mode": "managed", "type": "aws_vpc", "name": "main",
                "instances": [{"attributes": {"id": vpc}}]}  # fmt: skip
    tf.state_file.write_text(json.dumps({"resources": [resource]}))
    Contexts(home).add(name, paths.root)
    return Target(home, _spec(name), name, paths, "aws")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """The kit's home (CLUSTERKIT_HOME): where ``up`` would make a state folder."""
    found = tmp_path / "home"
    monkeypatch.setenv("CLUSTERKIT_HOME", str(found))
    return found


def _before_up(home: Path, **aws: Any) -> Target:
    """No cluster known; the spec ``up`` would read says aws."""
    return Target(home, _spec(**aws))


# -- which targets ----------------------------------------------------------------------------


def test_they_apply_to_an_aws_cluster_or_before_up_to_an_aws_spec(tmp_path):
    assert ac.applies(Target(tmp_path, _spec()))
    assert ac.applies(Target(tmp_path, Spec(), "alpha", kind="aws"))
    assert not ac.applies(Target(tmp_path, Spec()))  # a local spec, no cluster
    assert not ac.applies(Target(tmp_path, _spec(), "c", kind="local"))
    names = [c.name for c in CHECKS if c.when is ac.applies]
    assert names == ["aws", "keypair", "sshrule", "orphans"]
    assert [c.name for c in CHECKS][-4:] == names  # one block, last


# -- aws: credentials and region --------------------------------------------------------------


def test_aws_ok_names_the_account_and_region():
    found = _one(ac.judge_aws(ac.AwsReading(REGION, known_region=True, account="123456789012",
                                            arn="arn:aws:iam::123456789012:user/me")))  # fmt: skip
    assert found.status == "ok"
    assert found.saw == "account 123456789012 (arn:aws:iam::123456789012:user/me), region us-east-1"


@pytest.mark.parametrize(
    ("reading", "status", "said", "fix"),
    [
        (ac.AwsReading(None, why="no AWS region: set aws.region in the spec"), "fail",
         "no AWS region", None),
        (ac.AwsReading("us-east1", known_region=False, closest="us-east-1"), "fail",
         "'us-east1' is not an AWS region; did you mean us-east-1?", "aws.region"),
        (ac.AwsReading(REGION, known_region=True, error="no AWS credentials", kind="none"),
         "fail", "no AWS credentials (region us-east-1)", "`aws configure`"),
        (ac.AwsReading(REGION, known_region=True, kind="refused",
                       error="AWS refused: ExpiredToken: The security token has expired"),
         "fail", "not accepted in us-east-1: AWS refused: ExpiredToken", "get-caller-identity"),
        (ac.AwsReading(REGION, known_region=True, kind="unreachable",
                       error="AWS did not answer: EndpointConnectionError"),
         "warn", "could not be reached", "network"),
    ],
)  # fmt: skip
def test_aws_fails_without_region_or_credentials_and_warns_offline(reading, status, said, fix):
    found = _one(ac.judge_aws(reading))
    assert (found.status, found.runbook) == (status, None)
    assert said in found.saw
    assert fix is None or fix in (found.fix or "")


def test_aws_is_read_from_sts(aws, home, monkeypatch):
    reading = ac.read_aws(_before_up(home))
    assert (reading.region, reading.known_region, reading.account) == (REGION, True,
                                                                       "123456789012")  # fmt: skip
    assert _one(ac.judge_aws(reading)).status == "ok"
    assert ac.read_aws(_before_up(home, region="eu-west-1")).region == "eu-west-1"  # the spec's
    monkeypatch.setenv("AWS_REGION", "us-east1")  # the spec's pattern would refuse it
    typo = ac.read_aws(_before_up(home))
    assert (typo.known_region, typo.closest) == (False, "us-east-1")  # STS not asked
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    bare = ac.read_aws(_before_up(home))
    assert (bare.kind, bare.error) == ("none", "no AWS credentials")
    assert _one(ac.judge_aws(bare)).status == "fail"
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    nowhere = ac.read_aws(_before_up(home))
    assert nowhere.region is None and nowhere.why.startswith("no AWS region")


# -- keypair ----------------------------------------------------------------------------------


OTHER = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBm9Vu2P3QmB0m5n5wJ2f7hQx3gF8xqkM9GQ1sE2dR7p x"


def _pair(**given: Any) -> ac.KeyPairReading:
    fields: dict[str, Any] = {"key_name": "clusterkit-alpha", "region": REGION,
                              "key_file": "/h/clusters/alpha/ssh/id_ed25519", "made": True,
                              "local_public": KEY, "found": True, "remote_public": KEY,
                              "state_dir": "/h/clusters/alpha"}  # fmt: skip
    return ac.KeyPairReading(**{**fields, **given})


def test_keypair_of_a_made_cluster_ok_when_it_holds_the_local_key():
    found = _one(ac.judge_keypair(_pair()))
    assert found.status == "ok" and ac.fingerprint(KEY) in found.saw
    assert ac.fingerprint(KEY).startswith("SHA256:") and not ac.fingerprint(KEY).endswith("=")
    by_print = _pair(remote_public=None, remote_fingerprint=ac.fingerprint(KEY)[7:] + "=")
    assert ac.same_key(by_print) is True  # EC2's form of an imported ed25519 key
    assert ac.same_key(_pair(remote_public=None, remote_fingerprint="aa:bb")) is False
    assert ac.same_key(_pair(remote_public=None)) is None


@pytest.mark.parametrize(
    ("reading", "status", "runbook", "said"),
    [
        (_pair(local_public=None), "fail", "lost-token-or-key", "SSH key /h/clusters/alpha/ssh/"
         "id_ed25519 is missing"),
        (_pair(remote_public=OTHER), "fail", "lost-token-or-key", "holds another key"),
        (_pair(local_public=None, local_error="ValueError: encrypted"), "warn", None,
         "cannot be read (ValueError: encrypted)"),
        (_pair(found=False, remote_public=None), "warn", None, "is gone"),
        (_pair(unread="no AWS credentials"), "warn", None, "not checked: no AWS credentials"),
    ],
)  # fmt: skip
def test_keypair_of_a_made_cluster_fails_or_warns(reading, status, runbook, said):
    found = _one(ac.judge_keypair(reading))
    assert (found.status, found.runbook) == (status, runbook) and said in found.saw
    if runbook:
        assert found.data == {"FILE": reading.key_file, "STATE_DIR": reading.state_dir}


def test_keypair_before_up():
    absent = _one(ac.judge_keypair(_pair(made=False, found=False, local_public=None)))
    assert absent.status == "ok" and "`up` imports" in absent.saw
    same = _one(ac.judge_keypair(_pair(made=False)))
    assert same.status == "ok" and "this machine's key" in same.saw
    left = _pair(made=False, local_public=None, remote_public=OTHER, tag_cluster="alpha",
                 tag_cluster_id="0123456789ab")  # fmt: skip
    found = _one(ac.judge_keypair(left))
    assert (found.status, found.runbook) == ("fail", "left-billing")
    assert "`up` refuses it" in found.saw and "(not made yet)" in found.saw
    assert found.data == {"CLUSTER": "alpha", "CLUSTER_ID": "0123456789ab", "REGION": REGION}
    by_hand = _one(ac.judge_keypair(_pair(made=False, remote_public=OTHER)))
    assert (by_hand.status, by_hand.runbook, by_hand.data) == ("fail", None, {})
    assert "EC2 console" in (by_hand.fix or "")
    mine = _one(ac.judge_keypair(ac._with(left, tag_owner=MOTO_CALLER, caller=MOTO_CALLER)))
    assert (mine.status, mine.runbook) == ("fail", "left-billing")
    theirs = _one(ac.judge_keypair(ac._with(left, tag_owner=CLASSMATE, caller=MOTO_CALLER)))
    assert (theirs.status, theirs.runbook, theirs.data) == ("fail", None, {})
    assert f"which belongs to {CLASSMATE}, not to you ({MOTO_CALLER})" in theirs.saw
    assert "another name" in (theirs.fix or "") and "down" not in (theirs.fix or "")
    unknown = _one(ac.judge_keypair(ac._with(left, tag_owner=CLASSMATE)))  # caller not read
    assert unknown.runbook == "left-billing"


def test_keypair_is_read_from_ec2_and_the_private_key(ec2, home):
    made = make_cluster(ec2, "alpha", key_name="clusterkit-other")
    target = _known(home, "alpha", made["cluster_id"])
    key = home / "clusters" / "alpha" / "ssh" / "id_ed25519"
    missing = ac.read_keypair(target)  # no key here, none in EC2
    assert (missing.found, missing.local_public, missing.made) == (False, None, True)
    assert _one(ac.judge_keypair(missing)).runbook == "lost-token-or-key"
    public = ensure_key(key)
    assert ac.public_of(key) == public.rsplit(" ", 1)[0]  # derived from the private key
    gone = ac.read_keypair(target)
    assert _one(ac.judge_keypair(gone)).saw.endswith("at its next apply")
    tags = [{"ResourceType": "key-pair", "Tags": cluster_tags("alpha", made["cluster_id"])}]
    ec2.import_key_pair(KeyName="clusterkit-alpha", PublicKeyMaterial=public.encode(),
                        TagSpecifications=tags)  # fmt: skip
    present = ac.read_keypair(target)
    assert present.found and present.tag_cluster_id == made["cluster_id"]
    assert _one(ac.judge_keypair(present)).status == "ok"
    ec2.delete_key_pair(KeyName="clusterkit-alpha")
    ec2.import_key_pair(KeyName="clusterkit-alpha", PublicKeyMaterial=KEY.encode())
    other = _one(ac.judge_keypair(ac.read_keypair(target)))
    assert (other.status, other.runbook) == ("fail", "lost-token-or-key")
    key.write_text("not a key")
    unreadable = ac.read_keypair(target)
    assert unreadable.local_public is None and unreadable.local_error
    assert _one(ac.judge_keypair(unreadable)).status == "warn"


def test_keypair_before_up_is_read_from_ec2(ec2, home):
    assert _one(ac.judge_keypair(ac.read_keypair(_before_up(home)))).status == "ok"  # none
    made = make_cluster(ec2, "alpha")  # an earlier cluster of the name left its key pair
    found = _one(ac.judge_keypair(ac.read_keypair(_before_up(home))))
    assert (found.status, found.runbook) == ("fail", "left-billing")
    assert found.data["CLUSTER_ID"] == made["cluster_id"]
    assert ac.read_keypair(_before_up(home)).caller is None  # no owner tag: STS not asked


def test_keypair_before_up_of_a_classmates_cluster_says_to_name_yours_otherwise(ec2, home):
    make_cluster(ec2, "alpha", owner=CLASSMATE)
    reading = ac.read_keypair(_before_up(home))
    assert (reading.tag_owner, reading.caller) == (CLASSMATE, MOTO_CALLER)
    found = _one(ac.judge_keypair(reading))
    assert (found.status, found.runbook) == ("fail", None) and CLASSMATE in found.saw


# -- sshrule ----------------------------------------------------------------------------------


def _rule(**given: Any) -> ac.SshRuleReading:
    fields: dict[str, Any] = {"cluster": "alpha", "region": REGION, "made": True,
                              "address": PUBLIC, "group_id": "sg-1",
                              "cidrs": (f"{PUBLIC}/32",)}  # fmt: skip
    return ac.SshRuleReading(**{**fields, **given})


def test_sshrule_ok_when_the_address_is_inside_the_rule():
    found = _one(ac.judge_sshrule(_rule(cidrs=("10.9.0.0/16", "81.2.69.0/24"))))
    assert found.status == "ok" and f"your address {PUBLIC} is inside" in found.saw


def test_sshrule_warns_with_allow_ip_when_the_address_moved():
    found = _one(ac.judge_sshrule(_rule(address=MOVED)))
    assert (found.status, found.runbook) == ("warn", "operator-ip-changed")
    assert f"outside the SSH rule's {PUBLIC}/32 (group sg-1)" in found.saw
    assert "`clusterkit allow-ip`" in (found.fix or "")
    assert found.data == {"CLUSTER": "alpha", "CIDR": f"{MOVED}/32"}


@pytest.mark.parametrize(
    ("reading", "said"),
    [
        (_rule(address=None, address_error="no route to host"), "could not be read (no route"),
        (_rule(cidrs=()), "has no SSH rule"),
        (_rule(group_id=None, group_error="cluster 'alpha' has no master security group"),
         "not checked: cluster 'alpha' has no master"),
        (_rule(unread="no AWS credentials"), "not checked: no AWS credentials"),
    ],
)  # fmt: skip
def test_sshrule_warns_when_it_cannot_compare(reading, said):
    found = _one(ac.judge_sshrule(reading))
    assert (found.status, found.runbook) == ("warn", None) and said in found.saw


@pytest.mark.parametrize(
    ("given", "status", "said"),
    [
        ({}, "ok", f"`up` opens SSH to your address now, {PUBLIC}/32"),
        ({"address": None, "address_error": "offline"}, "warn", "`up` needs it"),
        ({"spec_cidr": "81.2.69.0/24"}, "ok", "which holds your address"),
        ({"spec_cidr": "81.2.70.0/24"}, "warn", "does not hold your address"),
        ({"spec_cidr": "81.2.70.0/24", "address": None}, "warn", "could not be read"),
    ],
)  # fmt: skip
def test_sshrule_before_up(given, status, said):
    found = _one(ac.judge_sshrule(_rule(made=False, group_id=None, cidrs=(), **given)))
    assert (found.status, found.runbook) == (status, None) and said in found.saw


def test_sshrule_is_read_from_the_master_group(ec2, home):
    made = make_cluster(ec2, "alpha", operator_cidr=f"{PUBLIC}/32")
    target = _known(home, "alpha", made["cluster_id"])
    here = ac.read_sshrule(target, _at(PUBLIC))
    assert (here.group_id, here.cidrs, here.address) == (made["master_sg"], (f"{PUBLIC}/32",),
                                                         PUBLIC)  # fmt: skip
    assert _one(ac.judge_sshrule(here)).status == "ok"
    moved = _one(ac.judge_sshrule(ac.read_sshrule(target, _at(MOVED))))
    assert (moved.runbook, moved.data["CIDR"]) == ("operator-ip-changed", f"{MOVED}/32")
    offline = ac.read_sshrule(target, _offline)
    assert offline.address is None and "no route to host" in offline.address_error
    other = _known(home, "beta", "0123456789ab")  # its state says made; AWS has no group
    assert "has no master security group" in ac.read_sshrule(other, _at(PUBLIC)).group_error


def test_sshrule_before_up_is_read_from_the_spec(aws, home):
    spec_cidr = ac.read_sshrule(_before_up(home, operator_cidr="81.2.70.0/24"), _at(PUBLIC))
    assert (spec_cidr.made, spec_cidr.spec_cidr) == (False, "81.2.70.0/24")
    assert _one(ac.judge_sshrule(spec_cidr)).status == "warn"


def test_the_address_is_asked_where_clusterkit_checkip_url_says(monkeypatch):
    asked: list[str] = []

    def checkip(url: str) -> str:
        asked.append(url)
        return PUBLIC

    monkeypatch.setenv("CLUSTERKIT_CHECKIP_URL", "http://127.0.0.1:9/ip")
    assert ac.read_address(checkip) == (PUBLIC, "")
    assert asked == ["http://127.0.0.1:9/ip"]
    monkeypatch.delenv("CLUSTERKIT_CHECKIP_URL")
    assert preflight.checkip_url() == preflight.CHECKIP_URL
    assert ac.read_address(lambda url: "<html>")[0] is None


# -- orphans ----------------------------------------------------------------------------------


def _tagged(kind: str, rid: str, cluster: str = "alpha", cluster_id: str = "aaaaaaaaaaaa",
            name: str = "") -> Tagged:  # fmt: skip
    return Tagged(kind, rid, name, cluster_id, "", cluster)


def test_what_a_state_knows_by_name_and_id():
    found = [_tagged("instance", "i-1"), _tagged("instance", "i-2", cluster_id="bbbbbbbbbbbb"),
             _tagged("vpc", "vpc-1", cluster="ghost"), _tagged("volume", "vol-1", cluster_id=""),
             _tagged("subnet", "subnet-1", cluster_id="bbbbbbbbbbbb")]  # fmt: skip
    known = [ac.KnownState("alpha", "aaaaaaaaaaaa", REGION, "/s/alpha"),
             ac.KnownState("ghost", None, None, "/s/ghost")]  # fmt: skip
    groups = ac.unknown(found, known)
    assert [[t.id for t in g] for g in groups] == [["i-2", "subnet-1"], ["vpc-1"], ["vol-1"]]
    older = ac.KnownState("alpha", "", REGION, "/s/a")  # an older kit's: no id tag
    assert [t.id for t in ac.unknown(found, [older])[0]] == ["i-1"]
    damaged = ac.KnownState("alpha", ac.ANY_ID, REGION, "/s/a")
    assert [g[0].cluster for g in ac.unknown(found, [damaged])] == ["ghost"]


def test_orphans_ok_when_every_tagged_resource_is_known():
    found = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), seen=14)))
    assert found.status == "ok" and found.saw.startswith("14 resources tagged clusterkit:cluster")


def test_orphans_fail_listing_what_bills_with_its_price():
    items = (_tagged("instance", "i-2", name="master"), _tagged("volume", "vol-2"),
             _tagged("vpc", "vpc-2"))  # fmt: skip
    left = ac.Leftover(REGION, "alpha", "bbbbbbbbbbbb", items, 0.0928,
                       "the kit's table dated 2025-06-01")  # fmt: skip
    found = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 3, (left,))))
    assert (found.status, found.runbook) == ("fail", "left-billing")
    assert found.saw == ("cluster 'alpha' (clusterkit:cluster-id=bbbbbbbbbbbb) in us-east-1, known "
                         "to no state here, owner unknown (no clusterkit:owner: made by an older "
                         "kit): instance: i-2 (master); volume: vol-2; vpc: vpc-2; $0.0928/h at "
                         "list prices (the kit's table dated 2025-06-01)")  # fmt: skip
    assert found.data == {"CLUSTER": "alpha", "REGION": REGION, "CLUSTER_ID": "bbbbbbbbbbbb"}
    assert "--cluster-id bbbbbbbbbbbb --region us-east-1" in (found.fix or "")


def test_orphans_warn_when_nothing_left_bills_and_an_older_kits_go_by_hand():
    free = ac.Leftover(REGION, "ghost", "cccccccccccc", (_tagged("vpc", "vpc-3", "ghost"),))
    found = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 1, (free,))))
    assert (found.status, found.runbook) == ("warn", "left-billing")
    assert found.saw.endswith("nothing of it bills")
    older = ac.Leftover(REGION, "alpha", "", (_tagged("instance", "i-9", cluster_id=""),), None,
                        "it carries no clusterkit:cluster-id")  # fmt: skip
    known = (ac.KnownState("alpha", "aaaaaaaaaaaa", REGION, "/s/alpha"),)
    by_hand = _one(ac.judge_orphans(ac.OrphansReading((REGION,), known, 1, (older,))))
    assert by_hand.status == "fail" and "price unknown" in by_hand.saw
    assert "CLUSTER_ID" not in by_hand.data and "EC2 console" in (by_hand.fix or "")
    unknown_name = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 1, (older,))))
    assert "--provider aws --cluster alpha --region" in (unknown_name.fix or "")
    unread = _one(ac.judge_orphans(ac.OrphansReading((), (), unread="no AWS region")))
    assert (unread.status, unread.saw) == ("warn", "not checked: no AWS region")


def test_orphans_in_a_shared_account_say_to_check_they_are_yours_and_quote_the_fix():
    first = ac.Leftover(REGION, "alpha", "bbbbbbbbbbbb", (_tagged("vpc", "vpc-2"),))
    alone = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 1, (first,))))
    assert "check these are yours" not in alone.saw
    theirs = ac.Leftover(REGION, "it's; rm -rf ~", "", (_tagged("vpc", "vpc-3", "x", ""),))
    found = ac.judge_orphans(ac.OrphansReading((REGION,), (), 2, (first, theirs)))
    assert len(found) == 2
    assert all("2 clusters are known to no state here (a shared account?): check these are "
               "yours before removing them" in f.saw for f in found)  # fmt: skip
    assert "--cluster 'it'\"'\"'s; rm -rf ~' --region us-east-1`" in (found[1].fix or "")


def test_orphans_a_region_unanswered_warns_beside_what_the_others_show():
    left = ac.Leftover(REGION, "alpha", "bbbbbbbbbbbb", (_tagged("instance", "i-2"),), 0.1, "t")
    failed = (("eu-west-1", "AWS refused: UnauthorizedOperation: no"),)
    found = ac.judge_orphans(ac.OrphansReading(("eu-west-1", REGION), (), 1, (left,),
                                               failed=failed))  # fmt: skip
    assert [(f.status, f.runbook) for f in found] == [("warn", None), ("fail", "left-billing")]
    assert found[0].saw == "not checked in eu-west-1: AWS refused: UnauthorizedOperation: no"
    clean = ac.judge_orphans(ac.OrphansReading(("eu-west-1", REGION), (), 7, failed=failed))
    assert [f.status for f in clean] == ["warn", "ok"]
    assert clean[1].saw.startswith("7 resources tagged clusterkit:cluster in us-east-1, none")
    every = ac.judge_orphans(ac.OrphansReading(("eu-west-1",), (), failed=failed))
    assert [f.status for f in every] == ["warn"]


SESSION = "arn:aws:sts::123456789012:assumed-role/admin/botocore-session-{}"


def test_an_owner_tag_names_the_caller_by_its_arn_or_a_generated_session_of_its_role():
    assert is_owner(MOTO_CALLER, MOTO_CALLER)
    assert not is_owner(CLASSMATE, MOTO_CALLER) and not is_owner("", MOTO_CALLER)
    assert not is_owner(MOTO_CALLER, "")
    # a profile's role_arn with no role_session_name: botocore names each login anew
    assert is_owner(SESSION.format(1764806400), SESSION.format(1764892800))
    # an SSO user's (or a classmate's) session name is who they are
    sso = "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Student_0a1b/{}"
    assert not is_owner(sso.format("ana@example.edu"), sso.format("bea@example.edu"))
    assert not is_owner(SESSION.format(1), SESSION.format(2).replace("/admin/", "/other/"))
    assert not is_owner(SESSION.format(1), SESSION.format(2).replace("123456789012", "1" * 12))
    assert not is_owner(SESSION.format(1), sso.format("botocore-session-2"))  # another role
    assert owner_value(MOTO_CALLER) == MOTO_CALLER
    assert owner_value("arn:aws:iam::123456789012:user/" + "x" * 230) == ""  # over 256: no tag
    assert ac.whose((MOTO_CALLER,), MOTO_CALLER) == "own"
    assert ac.whose((CLASSMATE, MOTO_CALLER), MOTO_CALLER) == "own"
    assert ac.whose((CLASSMATE,), MOTO_CALLER) == "other"
    assert ac.whose((), MOTO_CALLER) == "unknown" and ac.whose((CLASSMATE,), None) == "unknown"


def _left(cluster: str, cluster_id: str, *owners: str, kind: str = "instance") -> ac.Leftover:
    items = (_tagged(kind, f"{kind[:3]}-{cluster}", cluster, cluster_id),
             _tagged("vpc", f"vpc-{cluster}", cluster, cluster_id))  # fmt: skip
    return ac.Leftover(REGION, cluster, cluster_id, items, 0.0928, "t", owners)


def test_orphans_of_your_own_lost_cluster_fail_with_the_runbook_and_its_down():
    own = _left("alpha", "bbbbbbbbbbbb", MOTO_CALLER)
    found = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 2, (own,), caller=MOTO_CALLER)))
    assert (found.status, found.runbook) == ("fail", "left-billing")
    assert found.saw.startswith(
        f"cluster 'alpha' (clusterkit:cluster-id=bbbbbbbbbbbb) in us-east-1, yours "
        f"({OWNER_TAG_KEY}={MOTO_CALLER}) and known to no state here (its state was lost): "
        "instance: ins-alpha"
    )
    assert found.data == {"CLUSTER": "alpha", "REGION": REGION, "CLUSTER_ID": "bbbbbbbbbbbb"}
    assert "`clusterkit down --provider aws --cluster alpha --cluster-id bbbbbbbbbbbb" in (
        found.fix or "")  # fmt: skip
    free = _left("alpha", "bbbbbbbbbbbb", MOTO_CALLER, kind="subnet")
    quiet = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 2, (free,), caller=MOTO_CALLER)))
    assert (quiet.status, quiet.runbook) == ("warn", "left-billing")
    # the same cluster tagged by another identity too (made again by another): still yours
    both = _left("alpha", "bbbbbbbbbbbb", CLASSMATE, MOTO_CALLER)
    mixed = _one(ac.judge_orphans(ac.OrphansReading((REGION,), (), 2, (both,), caller=MOTO_CALLER)))
    assert (
        mixed.status == "fail" and f"some of it is tagged {OWNER_TAG_KEY}={CLASSMATE}" in mixed.saw
    )


def test_orphans_of_another_owner_are_ok_named_theirs_and_never_offered_to_down():
    theirs = _left("beta", "cccccccccccc", CLASSMATE)
    reading = ac.OrphansReading((REGION,), (), 2, (theirs,), caller=MOTO_CALLER)
    found = _one(ac.judge_orphans(reading))
    assert (found.status, found.runbook, found.fix, found.data) == ("ok", None, None, {})
    assert f"in us-east-1 belongs to {CLASSMATE}, not to you ({MOTO_CALLER})" in found.saw
    assert found.saw.endswith("not yours to remove: ask its owner if it should not be there")
    assert "clusterkit down" not in found.saw and "check these are yours" not in found.saw
    # beside your own and an older kit's: --vars gives your own, never theirs
    own = _left("alpha", "bbbbbbbbbbbb", MOTO_CALLER)
    older = _left("gamma", "", kind="volume")
    every = ac.judge_orphans(ac.OrphansReading((REGION,), (), 6, (theirs, own, older),
                                               caller=MOTO_CALLER))  # fmt: skip
    assert [(f.status, f.runbook) for f in every] == [("ok", None), ("fail", "left-billing"),
                                                      ("fail", "left-billing")]  # fmt: skip
    text = shell_vars(Report(every, 0.1), "left-billing") or ""
    assert "CLUSTER=alpha" in text and "beta" not in text
    alone = shell_vars(Report([every[0]], 0.1), "left-billing")
    assert alone is None  # another's only: the runbook's steps have nothing to act on


def test_orphans_with_no_owner_tag_keep_todays_judgement_and_say_the_owner_is_unknown():
    older = _left("gamma", "", kind="volume")
    theirs = _left("beta", "cccccccccccc", CLASSMATE)
    found = ac.judge_orphans(ac.OrphansReading((REGION,), (), 4, (older, theirs),
                                               caller=MOTO_CALLER))  # fmt: skip
    assert [(f.status, f.runbook) for f in found] == [("fail", "left-billing"), ("ok", None)]
    assert f"owner unknown (no {OWNER_TAG_KEY}: made by an older kit)" in found[0].saw
    assert "2 clusters are known to no state here (a shared account?)" in found[0].saw
    assert "--provider aws --cluster gamma --region us-east-1" in (found[0].fix or "")
    # an owner tag, but who you are could not be read: not told either way
    unread = ac.OrphansReading((REGION,), (), 2, (theirs,), caller_error="no AWS credentials")
    blind = _one(ac.judge_orphans(unread))
    assert (blind.status, blind.runbook) == ("fail", "left-billing")
    assert (f"owner unknown (tagged {OWNER_TAG_KEY}={CLASSMATE} but who you are could not be "
            "read (no AWS credentials))") in blind.saw  # fmt: skip


class _Refusing:
    """An EC2 client of a region that refuses every call."""

    def __getattr__(self, name: str) -> Any:
        from botocore.exceptions import ClientError

        def call(**_: Any) -> Any:
            error = {"Error": {"Code": "UnauthorizedOperation", "Message": "not here"}}
            raise ClientError(error, name)

        return call


def test_orphans_read_the_other_regions_when_one_does_not_answer(ec2, home, monkeypatch):
    """The cluster's region refuses; a state here records another, where a lost cluster
    left its nodes: the refusal is said and the leftovers are still found."""
    target = _known(home, "alpha", "aaaaaaaaaaaa", region="eu-west-1")
    _known(home, "beta", "cccccccccccc")  # in us-east-1
    lost = make_cluster(ec2, "gamma")
    real = ac.client
    monkeypatch.setattr(ac, "client", lambda service, region: (
        _Refusing() if region == "eu-west-1" else real(service, region)))  # fmt: skip
    reading = ac.read_orphans(target)
    assert reading.regions == ("eu-west-1", REGION)
    assert [region for region, _ in reading.failed] == ["eu-west-1"]
    assert "UnauthorizedOperation" in reading.failed[0][1]
    assert [(left.cluster, left.cluster_id) for left in reading.leftovers] == [
        ("gamma", lost["cluster_id"])]  # fmt: skip
    found = ac.judge_orphans(reading)
    assert [(f.status, f.data.get("CLUSTER")) for f in found] == [("warn", None),
                                                                  ("fail", "gamma")]  # fmt: skip
    assert "eu-west-1" in found[0].saw


def test_a_damaged_tfvars_is_named_by_every_check_and_by_the_state_check(ec2, home):
    target = _known(home, "alpha", "aaaaaaaaaaaa")
    (home / "clusters" / "alpha" / "spec.yaml").write_text("provider: aws\nname: alpha\n")
    damaged = home / "clusters" / "alpha" / "terraform" / "cluster.tfvars.json"
    damaged.write_text('{"region": "us-ea')
    with pytest.raises(StateError, match=r"cluster\.tfvars\.json does not parse .*"
                                         r"restore-after-crash\.md"):  # fmt: skip
        AwsProvider.terraform(ClusterPaths(home / "clusters" / "alpha")).read_vars()
    damaged.write_text("[1, 2]")
    with pytest.raises(StateError, match="a JSON list, not an object"):
        AwsProvider.terraform(ClusterPaths(home / "clusters" / "alpha")).read_vars()
    damaged.write_text('{"region": "us-ea')
    assert target.paths is not None and damaged in state_files.json_files(target.paths)
    state = state_files.judge_state(state_files.read_state(target))
    named = [(f.status, f.runbook) for f in state if f.data.get("FILE") == str(damaged)]
    assert named == [("fail", "restore-after-crash")], state
    report = run_doctor(None, home=home, checks=[c for c in CHECKS if c.when is ac.applies])
    found = {f.check: f for f in report.findings}
    assert list(found) == ["aws", "keypair", "sshrule", "orphans"]
    for finding in found.values():
        assert finding.status == "warn" and str(damaged) in finding.saw, finding


def test_orphans_are_read_from_every_tag_and_priced(ec2, home):
    """A cluster known here, an earlier one of its name whose state was lost, and an
    instance tagged by the kit that no state knows: the last two are listed, priced."""
    known = make_cluster(ec2, "alpha")
    target = _known(home, "alpha", known["cluster_id"], vpc=known["vpc"])
    lost = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-old")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ghost = ec2.run_instances(ImageId=ami, InstanceType="t3.large", MinCount=1, MaxCount=1,
                              TagSpecifications=[{"ResourceType": "instance",
                                                  "Tags": cluster_tags("ghost", "dddddddddddd")}]
                              )["Instances"][0]["InstanceId"]  # fmt: skip
    reading = ac.read_orphans(target)
    assert reading.regions == (REGION,) and reading.seen > 20
    by_cluster = {(left.cluster, left.cluster_id): left for left in reading.leftovers}
    assert set(by_cluster) == {("alpha", lost["cluster_id"]), ("ghost", "dddddddddddd")}
    old = by_cluster["alpha", lost["cluster_id"]]
    assert {lost["master"], lost["worker"], lost["vpc"]} <= {t.id for t in old.resources}
    assert not {known["master"], known["vpc"]} & {t.id for t in old.resources}
    assert old.hourly is not None and old.hourly > 2 * 0.0928  # two t2.large, volumes, an IP
    assert [t.id for t in by_cluster["ghost", "dddddddddddd"].resources] == [ghost]
    assert by_cluster["ghost", "dddddddddddd"].hourly == pytest.approx(0.0832 + 0.005)  # and its IP
    found = ac.judge_orphans(reading)
    assert [(f.status, f.data["CLUSTER"]) for f in found] == [("fail", "alpha"), ("fail", "ghost")]
    assert f"instance: {ghost}" in found[1].saw


def test_orphans_are_read_with_their_owners_and_the_caller(ec2, home):
    """Your lost cluster, a classmate's and an older kit's (no owner tag), none known here:
    the caller is moto's, each group carries its owner tags, the classmate's is not priced."""
    mine = make_cluster(ec2, "alpha", owner=MOTO_CALLER)
    theirs = make_cluster(ec2, "beta", owner=CLASSMATE)
    older = make_cluster(ec2, "gamma", cluster_id="")
    reading = ac.read_orphans(_before_up(home))
    assert (reading.caller, reading.caller_error) == (MOTO_CALLER, "")
    by_cluster = {left.cluster: left for left in reading.leftovers}
    assert {name: left.owners for name, left in by_cluster.items()} == {
        "alpha": (MOTO_CALLER,), "beta": (CLASSMATE,), "gamma": ()}  # fmt: skip
    assert by_cluster["alpha"].hourly is not None and by_cluster["alpha"].hourly > 0.0928
    assert by_cluster["beta"].hourly is None
    assert by_cluster["beta"].price_note == "another's cluster, not priced"
    assert {t.owner for t in by_cluster["beta"].resources} == {CLASSMATE}
    found = {f.data.get("CLUSTER", f.saw.split("'")[1]): f for f in ac.judge_orphans(reading)}
    assert [(name, f.status, f.runbook) for name, f in found.items()] == [
        ("alpha", "fail", "left-billing"), ("beta", "ok", None),
        ("gamma", "fail", "left-billing")]  # fmt: skip
    assert found["alpha"].data["CLUSTER_ID"] == mine["cluster_id"]
    assert theirs["master"] in found["beta"].saw and older["master"] in found["gamma"].saw
    assert "owner unknown" in found["gamma"].saw


def test_orphans_say_so_when_the_caller_cannot_be_read(ec2, home, monkeypatch):
    make_cluster(ec2, "beta", owner=CLASSMATE)
    real = ac.client
    monkeypatch.setattr(ac, "client", lambda service, region: (
        _Refusing() if service == "sts" else real(service, region)))  # fmt: skip
    reading = ac.read_orphans(_before_up(home))
    assert reading.caller is None and "UnauthorizedOperation" in reading.caller_error
    found = _one(ac.judge_orphans(reading))
    assert (found.status, found.runbook) == ("fail", "left-billing")
    assert "who you are could not be read" in found.saw


def test_orphans_before_up_look_in_the_specs_region_with_no_state(ec2, home):
    make_cluster(ec2, "alpha")
    reading = ac.read_orphans(_before_up(home))
    assert [left.cluster for left in reading.leftovers] == ["alpha"]
    assert reading.known == ()
    assert (reading.caller, reading.caller_error) == (None, "")  # no owner tag: STS not asked


def test_run_doctor_on_an_aws_cluster_runs_the_four_in_order(ec2, home, monkeypatch):
    made = make_cluster(ec2, "alpha", operator_cidr=f"{PUBLIC}/32")
    _known(home, "alpha", made["cluster_id"], vpc=made["vpc"])
    (home / "clusters" / "alpha" / "spec.yaml").write_text("provider: aws\nname: alpha\n")
    monkeypatch.setattr(ac, "read_address", lambda fetch=None: (MOVED, ""))
    report = run_doctor(None, home=home, checks=[c for c in CHECKS if c.when is ac.applies])
    found = {f.check: f for f in report.findings}
    assert list(found) == ["aws", "keypair", "sshrule", "orphans"]
    assert found["aws"].status == "ok" and found["orphans"].status == "ok"
    assert found["sshrule"].runbook == "operator-ip-changed"
    assert found["keypair"].runbook == "lost-token-or-key"  # no SSH key in this state folder


# -- down --provider aws --cluster-id ---------------------------------------------------------


def test_down_by_id_removes_only_that_ids_resources(ec2, home):
    known = make_cluster(ec2, "alpha")
    _known(home, "alpha", known["cluster_id"], vpc=known["vpc"])
    lost = make_cluster(ec2, "alpha", key_name="clusterkit-alpha-old")
    with pytest.raises(BadInput, match=r"is the id of cluster 'alpha' whose state is .*"
                                       r"`clusterkit down --cluster alpha`"):  # fmt: skip
        cloud.down_by_tag("alpha", region=REGION, say=print, cluster_id=known["cluster_id"])
    with pytest.raises(BadInput, match=r"--cluster-id 'nope' is not a cluster id"):
        cloud.down_by_tag("alpha", region=REGION, say=print, cluster_id="nope")
    said: list[str] = []
    done = cloud.down_by_tag("alpha", region=REGION, say=said.append,
                             cluster_id=lost["cluster_id"])  # fmt: skip
    assert done["changed"] and f"instance {lost['master']} (master)" in done["removed"]
    left = sweep.find(ec2, "alpha")
    assert left and {t.cluster_id for t in left} == {known["cluster_id"]}
    assert not any("outside" in line for line in said)  # all in that id's VPC: nothing asked
    assert (home / "clusters" / "alpha" / "terraform" / "cluster-id").exists()  # untouched


def test_the_command_takes_cluster_id_only_with_provider_aws(home, capsys):
    from clusterkit import cli

    assert cli.main(["down", "--cluster-id", "0123456789ab"]) == 2
    assert "--cluster-id goes with --provider aws --cluster NAME" in capsys.readouterr().err
