"""The AWS checks: credentials and region (``aws``), the cluster's key pair against its SSH
key here (``keypair``), this machine's public address against the master's SSH rule
(``sshrule``), and what carries the kit's tag with no state of this machine knowing it
(``orphans``: left billing after a lost state, told by its ``clusterkit:owner`` tag from
another's cluster in a shared account).

They apply to an AWS cluster the kit knows, in whichever state, and, with none known, to a
spec whose provider is aws (what ``up`` would meet): :func:`applies`. Each reading makes a
few describe calls in the cluster's region (boto3 with short timeouts; nothing is changed)
and ``sshrule`` asks checkip for this machine's address
(:func:`~clusterkit.providers.aws.preflight.checkip_url`); each judgement is pure. A reading
AWS did not answer says why, and its judgement WARNs "not checked" (the ``aws`` line says
what to fix).
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import ipaddress
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from clusterkit.core.errors import ClusterkitError, StateError
from clusterkit.core.state import ClusterPaths, Contexts, paths_for
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.providers.aws import access, pricing, sweep
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws.preflight import AwsPreflightError
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.aws.sweep import Tagged
from clusterkit.providers.aws.tags import ID_TAG_KEY, OWNER_TAG_KEY, TAG_KEY, is_owner, tag_value

#: Seconds to connect and to read, per call (two attempts): an offline laptop waits ~10 s.
TIMEOUT_S = 5
#: Seconds checkip has to answer with this machine's public address.
ADDRESS_TIMEOUT_S = 4.0
#: What bills while it exists (the rest, a VPC and its parts, a key pair, costs nothing).
BILLING = frozenset({"instance", "volume", "address"})
#: A state whose recorded id cannot be read knows every id of its cluster's name.
ANY_ID = "*"
#: Why a check that needs a region has none (the ``aws`` line says how to set one).
NO_REGION = "no AWS region (the aws line says how to set one)"


def applies(target: Target) -> bool:
    """An AWS cluster the kit knows, or, with none, a spec whose provider is aws."""
    return target.kind == "aws" or (target.kind == "none" and target.spec.provider == "aws")


@dataclass(frozen=True)
class Place:
    """Where the target's AWS resources are: the cluster's name, its region (None: set
    nowhere, ``why`` says so), the id its state records (None: none), its state folder (the
    one ``up`` would make, before it), its SSH key, and whether its Terraform state holds
    resources (``made``; false before ``up`` and after ``down``)."""

    cluster: str
    region: str | None
    cluster_id: str | None
    state_dir: Path
    key: Path
    made: bool
    why: str = ""


def place(target: Target) -> Place:
    """The target's :class:`Place`, from its state folder's files alone (no call)."""
    spec = target.spec
    known = target.kind == "aws" and target.paths is not None
    paths = target.paths if known and target.paths is not None else paths_for(spec)
    provider = AwsProvider()
    tf = provider.terraform(paths)
    given = tf.read_vars().get("region") or spec.aws.region
    try:
        region, why = aws_preflight.resolve_region(given), ""
    except AwsPreflightError as exc:
        region, why = None, str(exc)
    state = target.state
    key = state.ssh.key if state is not None and state.ssh is not None else (
        provider.ssh_settings(paths).key)  # fmt: skip
    return Place(target.name or spec.name, region, provider.recorded_id(paths), paths.root,
                 Path(key), tf.has_resources(), why)  # fmt: skip


def client(service: str, region: str) -> Any:
    """A boto3 client of ``service`` in ``region`` with short timeouts and two attempts."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=TIMEOUT_S, read_timeout=TIMEOUT_S,
                    retries={"total_max_attempts": 2, "mode": "standard"})  # fmt: skip
    return boto3.session.Session(region_name=region).client(service, config=config)


def unanswered(exc: Exception) -> str:
    """Why AWS gave no answer, in a few words: no credentials, its refusal (code and
    message), or what kept it from being reached."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS refused: {error.get('Code', '?')}: {error.get('Message', '')}"[:240]
    return f"AWS did not answer: {type(exc).__name__}: {exc}"[:240]


def _aws_errors() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError)


def read_caller(regions: Iterable[str]) -> tuple[str | None, str]:
    """(the ARN STS names as the caller, "") asked in the first of ``regions`` that answers;
    (None, why) when none does."""
    why = NO_REGION
    for region in regions:
        try:
            return str(client("sts", region).get_caller_identity()["Arn"]), ""
        except _aws_errors() as exc:
            why = unanswered(exc)
    return None, why


# -- aws: credentials and region --------------------------------------------------------------


@dataclass(frozen=True)
class AwsReading:
    """The region (None: set nowhere, ``why`` says so), whether botocore lists it as an EC2
    region (None: not looked at) and the closest it lists, and STS's answer: the account and
    ARN, or ``error`` with its ``kind`` ("none": no credentials; "refused": AWS said no, e.g.
    an expired key; "unreachable")."""

    region: str | None
    why: str = ""
    known_region: bool | None = None
    closest: str | None = None
    account: str | None = None
    arn: str | None = None
    error: str = ""
    kind: str = ""


def read_aws(target: Target) -> AwsReading:
    where = place(target)
    if where.region is None:
        return AwsReading(None, why=where.why)
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    session = boto3.session.Session()
    listed = {r for p in session.get_available_partitions()
              for r in session.get_available_regions("ec2", partition_name=p)}  # fmt: skip
    if listed and where.region not in listed:
        closest = difflib.get_close_matches(where.region, sorted(listed), n=1)
        return AwsReading(where.region, known_region=False, closest=next(iter(closest), None))
    try:
        who = client("sts", where.region).get_caller_identity()
    except NoCredentialsError as exc:
        return AwsReading(where.region, known_region=True, error=unanswered(exc), kind="none")
    except ClientError as exc:
        return AwsReading(where.region, known_region=True, error=unanswered(exc), kind="refused")
    except BotoCoreError as exc:
        return AwsReading(where.region, known_region=True, error=unanswered(exc),
                          kind="unreachable")  # fmt: skip
    return AwsReading(where.region, known_region=True, account=str(who["Account"]),
                      arn=str(who["Arn"]))  # fmt: skip


def judge_aws(reading: AwsReading) -> list[Finding]:
    """FAIL: no region, one botocore does not list (with the closest it does), no
    credentials, or credentials AWS refuses; WARN: STS could not be reached; OK: the account
    and ARN STS names, and the region."""
    region = reading.region
    if region is None:
        return [fail("aws", reading.why)]
    if reading.known_region is False:
        meant = f"; did you mean {reading.closest}?" if reading.closest else ""
        return [fail("aws", f"region {region!r} is not an AWS region{meant}",
                     fix="set aws.region in the spec (or AWS_REGION) to one of `aws ec2 "
                         "describe-regions`")]  # fmt: skip
    if reading.kind == "none":
        return [fail("aws", f"no AWS credentials (region {region})",
                     fix="`aws configure`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                         "or AWS_PROFILE")]  # fmt: skip
    if reading.kind == "refused":
        return [fail("aws", f"the credentials are not accepted in {region}: {reading.error}",
                     fix="check them with `aws sts get-caller-identity`; renew them (`aws "
                         "configure`, or `aws sso login`)")]  # fmt: skip
    if reading.error:
        return [warn("aws", f"AWS could not be reached from here ({region}): {reading.error}",
                     fix="check this machine's network, then run doctor again")]  # fmt: skip
    return [ok("aws", f"account {reading.account} ({reading.arn}), region {region}")]


# -- keypair ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPairReading:
    """The cluster's key pair (``key_name``, infra/nodes.tf's ``clusterkit-NAME``) as EC2
    has it in ``region``: ``found``, its public key and fingerprint, the cluster name, id and
    owner its tags carry (with the caller's ARN to hold the owner against, read only then:
    None, not read); and the cluster's SSH key here (``key_file``): the public half of the
    private key (None: no such file, or ``local_error`` says why it could not be read).
    ``made``: the cluster's Terraform state holds resources (else: before ``up``).
    ``unread``: why EC2 was not asked or did not answer."""

    key_name: str
    region: str
    key_file: str
    made: bool
    local_public: str | None = None
    local_error: str = ""
    found: bool = False
    remote_public: str | None = None
    remote_fingerprint: str = ""
    tag_cluster: str = ""
    tag_cluster_id: str = ""
    state_dir: str = ""
    unread: str = ""
    tag_owner: str = ""
    caller: str | None = None


def public_of(private_key: Path) -> str:
    """The OpenSSH public key line (``ssh-ed25519 AAAA...``) of an unencrypted private key
    file (OpenSSH or PEM); ValueError or OSError when it cannot be read as one."""
    from cryptography.hazmat.primitives import serialization

    data = private_key.read_bytes()
    key: Any
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None)
    line: bytes = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                serialization.PublicFormat.OpenSSH)  # fmt: skip
    return line.decode()


def fingerprint(public_line: str) -> str:
    """OpenSSH's fingerprint of a public key line: ``SHA256:`` and the digest in base64."""
    blob = aws_preflight.key_blob(public_line)[1]
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def aws_fingerprints(public_line: str) -> set[str]:
    """The fingerprints EC2 may show for this key imported: an ed25519 key's SHA-256 in
    base64, an RSA key's MD5 of its DER form in hex pairs."""
    kind, blob = aws_preflight.key_blob(public_line)
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode()
    found = {digest, digest.rstrip("=")}
    if kind == "ssh-rsa":
        from cryptography.hazmat.primitives import serialization

        der = serialization.load_ssh_public_key(public_line.encode()).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        found.add(":".join(f"{b:02x}" for b in hashlib.md5(der).digest()))
    return found


def same_key(reading: KeyPairReading) -> bool | None:
    """Whether EC2's key pair is the local key: by the public keys, else by EC2's
    fingerprint; None when neither can be compared."""
    if reading.local_public is None:
        return None
    try:
        if reading.remote_public:
            ours = aws_preflight.key_blob(reading.local_public)
            return aws_preflight.key_blob(reading.remote_public) == ours
        if reading.remote_fingerprint:
            return reading.remote_fingerprint in aws_fingerprints(reading.local_public)
    except ValueError:
        return None
    return None


def read_keypair(target: Target) -> KeyPairReading:
    where = place(target)
    key_name = f"clusterkit-{where.cluster}"
    local, local_error = None, ""
    if where.key.exists():
        try:
            local = public_of(where.key)
        except (OSError, ValueError, TypeError) as exc:
            local_error = f"{type(exc).__name__}: {exc}"
    base = KeyPairReading(key_name, where.region or "?", str(where.key), where.made, local,
                          local_error, state_dir=str(where.state_dir))  # fmt: skip
    if where.region is None:
        return _with(base, unread=NO_REGION)
    from botocore.exceptions import ClientError

    try:
        found = client("ec2", where.region).describe_key_pairs(
            KeyNames=[key_name], IncludePublicKey=True)["KeyPairs"]  # fmt: skip
    except ClientError as exc:
        if "NotFound" in exc.response.get("Error", {}).get("Code", ""):
            return base
        return _with(base, unread=unanswered(exc))
    except _aws_errors() as exc:
        return _with(base, unread=unanswered(exc))
    if not found:
        return base
    pair = found[0]
    owner = tag_value(pair.get("Tags"), OWNER_TAG_KEY)
    caller = read_caller([where.region])[0] if owner and not where.made else None
    return _with(base, found=True, remote_public=pair.get("PublicKey") or None,
                 remote_fingerprint=pair.get("KeyFingerprint", ""),
                 tag_cluster=tag_value(pair.get("Tags"), TAG_KEY),
                 tag_cluster_id=tag_value(pair.get("Tags"), ID_TAG_KEY), tag_owner=owner,
                 caller=caller)  # fmt: skip


def _with(reading: KeyPairReading, **changes: Any) -> KeyPairReading:
    from dataclasses import replace

    return replace(reading, **changes)


def _shown(public_line: str | None, fallback: str = "") -> str:
    """A key as a message names it: its fingerprint, else ``fallback``."""
    if public_line:
        try:
            return fingerprint(public_line)
        except ValueError:
            pass
    return fallback or "?"


def judge_keypair(reading: KeyPairReading) -> list[Finding]:
    """Of a cluster made here: FAIL (lost-token-or-key; FILE, STATE_DIR) when its SSH key is
    missing, or EC2's key pair holds another key; WARN when the key cannot be read, or the
    key pair is gone (Terraform makes it again at its next apply); OK when they match.
    Before ``up``: OK when there is no key pair of the name, or it holds this machine's key;
    FAIL when it holds another (``up`` refuses it): left-billing (CLUSTER, REGION,
    CLUSTER_ID of its tags) when the kit's tags say whose and its owner tag is not another
    identity's than the caller's (a classmate's cluster of the same name: the fix is another
    name), else a fix by hand."""
    r = reading
    named = f"EC2 key pair {r.key_name} in {r.region}"
    if r.unread:
        return [warn("keypair", f"not checked: {r.unread}")]
    same = same_key(r)
    if r.made:
        data = {"FILE": r.key_file, "STATE_DIR": r.state_dir}
        if r.local_public is None and not r.local_error:
            return [fail("keypair", f"the cluster's SSH key {r.key_file} is missing: the kit "
                                    "cannot log in to its nodes", "lost-token-or-key",
                         "the runbook's SSH key part", data)]  # fmt: skip
        if r.local_public is None:
            return [warn("keypair", f"the cluster's SSH key {r.key_file} cannot be read "
                                    f"({r.local_error}): {named} not compared")]  # fmt: skip
        if not r.found:
            return [
                warn(
                    "keypair",
                    f"{named} is gone: the nodes keep the key they were made "
                    "with; Terraform makes it again at its next apply",
                    fix="nothing to do unless nodes are to be made (`clusterkit scale`)",
                )
            ]
        if same is False:
            return [fail("keypair", f"{named} holds another key "
                                    f"({_shown(r.remote_public, r.remote_fingerprint)}) than "
                                    f"the cluster's SSH key {r.key_file} "
                                    f"({_shown(r.local_public)}): nodes made from it will "
                                    "not let the kit in", "lost-token-or-key",
                         "the runbook's SSH key part", data)]  # fmt: skip
        compared = "" if same else " (EC2 gave neither key nor fingerprint to compare)"
        return [ok("keypair", f"{named} holds the cluster's SSH key {r.key_file} "
                              f"({_shown(r.local_public)}){compared}")]  # fmt: skip
    if not r.found:
        return [ok("keypair", f"no {named} yet: `up` imports the cluster's key "
                              f"({r.key_file})")]  # fmt: skip
    if same is not False and r.local_public is not None:
        return [ok("keypair", f"{named} holds this machine's key {r.key_file} "
                              f"({_shown(r.local_public)})")]  # fmt: skip
    mine = r.key_file if r.local_public is not None else f"{r.key_file} (not made yet)"
    saw = (f"{named} exists with another key ({_shown(r.remote_public, r.remote_fingerprint)})"
           f" than {mine}: `up` refuses it")  # fmt: skip
    if not (r.tag_cluster and r.tag_cluster_id):
        return [fail("keypair", f"{saw}; it carries no {ID_TAG_KEY} tag",
                     fix="if nothing uses it, delete it (EC2 console, Key pairs), or name the "
                         "cluster otherwise")]  # fmt: skip
    if r.tag_owner and r.caller and not is_owner(r.tag_owner, r.caller):
        return [fail("keypair", f"{saw}; it is cluster {r.tag_cluster!r}'s "
                                f"({ID_TAG_KEY}={r.tag_cluster_id}), which belongs to "
                                f"{r.tag_owner}, not to you ({r.caller})",
                     fix="give your cluster another name (the spec's `name`): that cluster is "
                         "not yours to remove")]  # fmt: skip
    data = {"CLUSTER": r.tag_cluster, "CLUSTER_ID": r.tag_cluster_id, "REGION": r.region}
    return [fail("keypair", f"{saw}; left by cluster {r.tag_cluster!r} "
                            f"({ID_TAG_KEY}={r.tag_cluster_id})", "left-billing",
                 "the runbook removes what that cluster left", data)]  # fmt: skip


# -- sshrule ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SshRuleReading:
    """This machine's public address (None: not read, ``address_error`` says why) and what
    it is held against: the SSH rules' CIDRs of the cluster's master group (``made``; no
    group: ``group_error`` says why), or before ``up`` the spec's ``aws.operator_cidr``
    (None: ``up`` opens SSH to the address it detects). ``unread``: why EC2 was not asked or
    did not answer."""

    cluster: str
    region: str
    made: bool
    address: str | None
    address_error: str = ""
    group_id: str | None = None
    group_error: str = ""
    cidrs: tuple[str, ...] = ()
    spec_cidr: str | None = None
    unread: str = ""


def read_address(fetch: Callable[[str], str] | None = None) -> tuple[str | None, str]:
    """(this machine's public IPv4 address, "") or (None, why), asked of checkip within
    :data:`ADDRESS_TIMEOUT_S` (``fetch``: how a URL is read, for the tests)."""
    if fetch is None:
        import requests

        def fetch(url: str) -> str:
            return requests.get(url, timeout=ADDRESS_TIMEOUT_S).text

    try:
        return aws_preflight.detect_operator_ip(fetch), ""
    except AwsPreflightError as exc:
        return None, str(exc.__cause__ or exc)[:200]


def read_sshrule(target: Target, fetch: Callable[[str], str] | None = None) -> SshRuleReading:
    where = place(target)
    address, why = read_address(fetch)
    base = SshRuleReading(where.cluster, where.region or "?", where.made, address, why)
    if not where.made:
        return _rule_with(base, spec_cidr=target.spec.aws.operator_cidr)
    if where.region is None:
        return _rule_with(base, unread=NO_REGION)
    ec2 = client("ec2", where.region)
    try:
        group = access.master_group(ec2, where.cluster, where.cluster_id or None)
        rules = access.ssh_rules(ec2, group)
    except ClusterkitError as exc:  # no such group (a failed `up`; removed by hand)
        return _rule_with(base, group_error=str(exc))
    except _aws_errors() as exc:
        return _rule_with(base, unread=unanswered(exc))
    return _rule_with(base, group_id=group, cidrs=tuple(str(r["CidrIpv4"]) for r in rules))


def _rule_with(reading: SshRuleReading, **changes: Any) -> SshRuleReading:
    from dataclasses import replace

    return replace(reading, **changes)


def inside(address: str, cidrs: Iterable[str]) -> bool:
    """Whether ``address`` is in any of ``cidrs`` (one that does not parse holds none)."""
    ip = ipaddress.ip_address(address)
    for cidr in cidrs:
        try:
            if ip in ipaddress.ip_network(cidr, strict=False):
                return True
        except ValueError:
            continue
    return False


def judge_sshrule(reading: SshRuleReading) -> list[Finding]:
    """Of a cluster made here: OK when this machine's address is inside the master's SSH
    rule; WARN (operator-ip-changed; CLUSTER, CIDR: the address as /32) when it is outside,
    suggesting ``clusterkit allow-ip``; WARN when there is no group or rule, or the address
    could not be read. Before ``up``: OK when ``up`` will open SSH to this address (detected,
    or inside ``aws.operator_cidr``); WARN when the spec's CIDR does not hold it, or it
    cannot be detected and the spec gives none (``up`` would fail)."""
    r = reading
    if r.unread:
        return [warn("sshrule", f"not checked: {r.unread}")]
    if not r.made:
        return _before_up(r)
    if r.group_id is None:
        return [warn("sshrule", f"not checked: {r.group_error}")]
    rule = ", ".join(r.cidrs)
    if r.address is None:
        return [
            warn(
                "sshrule",
                f"your public address could not be read ({r.address_error}): "
                f"the SSH rule ({rule or 'none'}) is not compared",
                fix="if SSH to the master times out, `clusterkit allow-ip YOUR.IP/32`",
            )
        ]
    if not r.cidrs:
        closed = f"the master's group {r.group_id} has no SSH rule: SSH to the cluster is closed"
        return [warn("sshrule", closed, fix="`clusterkit up` restores it")]
    if inside(r.address, r.cidrs):
        return [ok("sshrule", f"your address {r.address} is inside the SSH rule's {rule} "
                              f"(group {r.group_id})")]  # fmt: skip
    return [warn("sshrule", f"your address {r.address} is outside the SSH rule's {rule} "
                            f"(group {r.group_id}): SSH to the master times out",
                 "operator-ip-changed", f"`clusterkit allow-ip` opens it to {r.address}/32 instead",
                 {"CLUSTER": r.cluster, "CIDR": f"{r.address}/32"})]  # fmt: skip


def _before_up(r: SshRuleReading) -> list[Finding]:
    if r.spec_cidr:
        if r.address is None:
            return [warn("sshrule", f"`up` opens SSH to aws.operator_cidr = {r.spec_cidr}; your "
                                    f"public address could not be read to compare "
                                    f"({r.address_error})")]  # fmt: skip
        if inside(r.address, [r.spec_cidr]):
            return [ok("sshrule", f"`up` opens SSH to aws.operator_cidr = {r.spec_cidr}, which "
                                  f"holds your address {r.address}")]  # fmt: skip
        return [warn("sshrule", f"aws.operator_cidr = {r.spec_cidr} does not hold your address "
                                f"{r.address}: `up` would open SSH to a range you are not in",
                     fix=f"set aws.operator_cidr: {r.address}/32 in the spec (or null: `up` "
                         "detects your address)")]  # fmt: skip
    if r.address is None:
        return [warn("sshrule", f"your public address could not be read ({r.address_error}): "
                                "`up` needs it to open SSH to you",
                     fix="give it: aws.operator_cidr: YOUR.IP/32 in the spec")]  # fmt: skip
    return [ok("sshrule", f"`up` opens SSH to your address now, {r.address}/32")]


# -- orphans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownState:
    """A state folder of this machine and the AWS resources it knows: those tagged with its
    cluster's name and the id it records ("": an older kit's, which tagged none;
    :data:`ANY_ID`: its id file cannot be read, so any; None: nothing was applied from it,
    so none), in its recorded region (None: none)."""

    name: str
    cluster_id: str | None
    region: str | None
    state_dir: str

    def knows(self, item: Tagged) -> bool:
        return (self.cluster_id is not None and item.cluster == self.name
                and self.cluster_id in (ANY_ID, item.cluster_id))  # fmt: skip


@dataclass(frozen=True)
class Leftover:
    """What one cluster (its name and id; "" for an older kit's) left in a region that no
    state here knows, in removal order; its list price per hour now (None: not priced,
    ``price_note`` says why; else where the prices came from); the owner tags its resources
    carry (ARNs, each once; none for an older kit's)."""

    region: str
    cluster: str
    cluster_id: str
    resources: tuple[Tagged, ...]
    hourly: float | None = None
    price_note: str = ""
    owners: tuple[str, ...] = ()

    @property
    def billing(self) -> bool:
        return any(t.kind in BILLING for t in self.resources)


@dataclass(frozen=True)
class OrphansReading:
    """The regions looked in, the states of this machine, how many tagged resources were
    seen there, and what no state knows. ``unread``: why not looked at all; ``failed``: the
    regions AWS did not answer in (region, why), the others read all the same. ``caller``:
    the ARN STS names as the caller, whose owner tag marks the operator's own clusters (None:
    not read, ``caller_error`` says why; "" then when nothing left carries an owner tag, so
    STS was not asked)."""

    regions: tuple[str, ...]
    known: tuple[KnownState, ...]
    seen: int = 0
    leftovers: tuple[Leftover, ...] = ()
    unread: str = ""
    failed: tuple[tuple[str, str], ...] = ()
    caller: str | None = None
    caller_error: str = ""


def known_states(home: Path) -> list[KnownState]:
    """Every state folder of the kit's ``home``: those ``contexts.json`` names (one that
    cannot be read names none: the ``cluster`` check says so) and those under
    ``home/clusters``, with the id and region each records."""
    folders: dict[Path, str] = {}
    try:
        for name, folder in Contexts(home).clusters().items():
            folders.setdefault(folder.resolve(), name)
    except StateError:
        pass
    under = home / "clusters"
    if under.is_dir():
        for folder in sorted(under.iterdir()):
            if folder.is_dir():
                folders.setdefault(folder.resolve(), folder.name)
    return [_known(name, ClusterPaths(folder)) for folder, name in folders.items()]


def _known(name: str, paths: ClusterPaths) -> KnownState:
    provider = AwsProvider()
    try:
        cluster_id = provider.recorded_id(paths)
    except ClusterkitError:  # a damaged id file: the state check's to say
        cluster_id = ANY_ID
    try:
        region = provider.terraform(paths).read_vars().get("region")
    except (OSError, StateError):  # a damaged file: the state check's to say
        region = None
    return KnownState(name, cluster_id, str(region) if region else None, str(paths.root))


def unknown(found: Iterable[Tagged], known: Iterable[KnownState]) -> list[list[Tagged]]:
    """The resources of ``found`` that no state of ``known`` knows, grouped by cluster name
    and id (in order of first appearance; each group in ``found``'s order)."""
    states = list(known)
    groups: dict[tuple[str, str], list[Tagged]] = {}
    for item in found:
        if not any(state.knows(item) for state in states):
            groups.setdefault((item.cluster, item.cluster_id), []).append(item)
    return list(groups.values())


def _price(ec2: Any, region: str, cluster: str, cluster_id: str) -> tuple[float | None, str]:
    """The list price per hour of what carries ``cluster`` and ``cluster_id`` (the kit's
    table; a spot instance at EC2's spot price), and its source; (None, why) when not."""
    if not cluster_id:
        return None, f"it carries no {ID_TAG_KEY} to tell it from others of its name"
    try:
        cost = pricing.running(ec2, cluster, region, cluster_id=cluster_id)
    except ClusterkitError as exc:
        return None, str(exc)[:200]
    except _aws_errors() as exc:
        return None, unanswered(exc)
    return cost.hourly, cost.source


def read_orphans(target: Target) -> OrphansReading:
    where = place(target)
    known = known_states(target.home)
    regions = tuple(dict.fromkeys(r for r in (where.region, *(k.region for k in known)) if r))
    if not regions:
        return OrphansReading((), tuple(known), unread=where.why or NO_REGION)
    seen, groups, failed = 0, [], []
    for region in regions:
        ec2 = client("ec2", region)
        try:
            found = sweep.find(ec2, None)
        except _aws_errors() as exc:  # said; the other regions are still read
            failed.append((region, unanswered(exc)))
            continue
        seen += len(found)
        groups += [(region, ec2, group) for group in unknown(found, known)]
    owned = any(t.owner for _, _, group in groups for t in group)
    caller, caller_error = read_caller(regions) if owned else (None, "")  # asked when it tells
    leftovers = []
    for region, ec2, group in groups:
        cluster, cluster_id = group[0].cluster, group[0].cluster_id
        owners = tuple(dict.fromkeys(t.owner for t in group if t.owner))
        if whose(owners, caller) == "other":  # not the operator's bill: not priced
            hourly, note = None, "another's cluster, not priced"
        else:
            hourly, note = _price(ec2, region, cluster, cluster_id)
        leftovers.append(Leftover(region, cluster, cluster_id, tuple(group), hourly, note,
                                  owners))  # fmt: skip
    return OrphansReading(regions, tuple(known), seen, tuple(leftovers), failed=tuple(failed),
                          caller=caller, caller_error=caller_error)  # fmt: skip


Whose = Literal["own", "other", "unknown"]


def whose(owners: Iterable[str], caller: str | None) -> Whose:
    """Whose a leftover cluster is, by the owner tags of its resources: "own" when one names
    the caller (:func:`~clusterkit.providers.aws.tags.is_owner`), "other" when they name only
    other identities, "unknown" when they carry none (an older kit's) or the caller is not
    known."""
    tags = [o for o in owners if o]
    if not tags or caller is None:
        return "unknown"
    return "own" if any(is_owner(o, caller) for o in tags) else "other"


def listing(resources: Iterable[Tagged]) -> str:
    """``instance: i-1 (master), i-2 (worker); vpc: vpc-1`` (kinds in the given order)."""
    kinds: dict[str, list[str]] = {}
    for t in resources:
        kinds.setdefault(t.kind, []).append(t.id + (f" ({t.name})" if t.name else ""))
    return "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in kinds.items())


def judge_orphans(reading: OrphansReading) -> list[Finding]:
    """Per cluster (name and id) that left resources no state here knows, by whose its owner
    tag (``clusterkit:owner``) says it is (:func:`whose`):

    - the caller's own (a state of theirs lost): FAIL when any of them bills (an instance, a
      volume, an address), WARN when none does; the line lists them by kind and id with their
      list price per hour, names left-billing and carries CLUSTER, REGION and CLUSTER_ID (none
      for an older kit's, which tagged no id: the fix is by hand then);
    - another identity's (a classmate's in a shared account, live or not): OK, saying whose
      ("belongs to ARN"), unpriced, with no runbook, fix or variables: not the operator's to
      remove, the line says to ask its owner;
    - unknown (no owner tag: an older kit's; or the caller could not be read): as the
      caller's own, saying the owner is unknown; with several clusters left, each line says
      to check they are yours first.

    A region AWS did not answer in: WARN naming it, beside what the others showed. OK when
    every tagged resource seen is known to a state here."""
    r = reading
    if r.unread:
        return [warn("orphans", f"not checked: {r.unread}")]
    found = [warn("orphans", f"not checked in {region}: {why}") for region, why in r.failed]
    unanswered_in = {region for region, _ in r.failed}
    where = ", ".join(region for region in r.regions if region not in unanswered_in)
    if not r.leftovers:
        if where:
            found.append(ok("orphans", f"{r.seen} resources tagged {TAG_KEY} in {where}, none "
                                       "but what a state here knows"))  # fmt: skip
        return found
    names_here = {k.name for k in r.known if k.cluster_id is not None}
    clusters = len({(left.cluster, left.cluster_id) for left in r.leftovers})
    for left in r.leftovers:
        named = (f"cluster {left.cluster!r} ({ID_TAG_KEY}={left.cluster_id})" if left.cluster_id
                 else f"cluster {left.cluster!r} (no {ID_TAG_KEY}: an older kit's)")  # fmt: skip
        price = (f"${left.hourly:.4f}/h at list prices ({left.price_note})"
                 if left.hourly is not None else f"price unknown: {left.price_note}")  # fmt: skip
        bills = price if left.billing else "nothing of it bills"
        listed = f"{listing(left.resources)}; {bills}"
        owners = ", ".join(left.owners)
        judged_whose = whose(left.owners, r.caller)
        if judged_whose == "other":
            found.append(ok("orphans", f"{named} in {left.region} belongs to {owners}, not "
                                       f"to you ({r.caller}), and no state here knows it: "
                                       f"{listed}; not yours to remove: ask its owner if it "
                                       "should not be there"))  # fmt: skip
            continue
        if judged_whose == "own":
            saw = (f"{named} in {left.region}, yours ({OWNER_TAG_KEY}={r.caller}) and known to "
                   f"no state here (its state was lost): {listed}")  # fmt: skip
            also = [o for o in left.owners if r.caller is not None and not is_owner(o, r.caller)]
            if also:
                saw += f"; some of it is tagged {OWNER_TAG_KEY}={', '.join(also)}"
        else:
            owner = (f"tagged {OWNER_TAG_KEY}={owners} but who you are could not be read "
                     f"({r.caller_error})" if owners
                     else f"no {OWNER_TAG_KEY}: made by an older kit")  # fmt: skip
            saw = (f"{named} in {left.region}, known to no state here, owner unknown ({owner}): "
                   f"{listed}")  # fmt: skip
            if clusters > 1:
                saw += (f"; {clusters} clusters are known to no state here (a shared "
                        "account?): check these are yours before removing them")  # fmt: skip
        found.append(_lost(left, saw, names_here))
    return found


def _lost(left: Leftover, saw: str, names_here: set[str]) -> Finding:
    """The left-billing finding of a cluster that may be the operator's: FAIL when any of
    it bills, else WARN; the ``down`` that removes it, or by hand when it cannot be told by
    the kit from a cluster of its name known here."""
    data = {"CLUSTER": left.cluster, "REGION": left.region}
    name, region = shlex.quote(left.cluster), shlex.quote(left.region)
    if left.cluster_id:
        data["CLUSTER_ID"] = left.cluster_id
        fix = (
            f"`clusterkit down --provider aws --cluster {name} --cluster-id "
            f"{shlex.quote(left.cluster_id)} --region {region}` lists them and asks first"
        )
    elif left.cluster in names_here:
        fix = (
            "remove them in the EC2 console: with no id they cannot be told by the kit "
            f"from the cluster {left.cluster!r} known here"
        )
    else:
        fix = (
            f"`clusterkit down --provider aws --cluster {name} --region {region}` "
            "lists them and asks first"
        )
    judged = fail if left.billing else warn
    return judged("orphans", saw, "left-billing", fix, data)
