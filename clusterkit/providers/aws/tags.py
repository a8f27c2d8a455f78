"""The tags every AWS resource of a cluster carries: ``clusterkit:cluster = <name>`` and
``clusterkit:cluster-id = <id>``, the id random and made once per cluster by ``up``, so two
clusters of the same name in one account are told apart; and ``clusterkit:owner = <ARN>``,
the AWS identity that made it (STS's caller at ``up``), so that in an account others use too
(a class's) a cluster of the operator's whose state was lost is told from a classmate's.
Resources an older kit made carry no owner tag."""

from __future__ import annotations

import re
import secrets

TAG_KEY = "clusterkit:cluster"
ID_TAG_KEY = "clusterkit:cluster-id"
#: Each instance's role ("master" or "worker"), as infra/nodes.tf tags it.
ROLE_TAG_KEY = "clusterkit:role"
#: The AWS identity (its ARN) that made the cluster, as infra/main.tf tags it.
OWNER_TAG_KEY = "clusterkit:owner"
#: The longest tag value AWS takes (infra/variables.tf checks the owner against it).
TAG_VALUE_MAX = 256
#: An assumed role's ARN: partition, account, role, session name.
ASSUMED_ROLE = re.compile(r"arn:(aws[a-z-]*):sts::(\d{12}):assumed-role/([^/]+)/(.+)")
#: The session name botocore (and the AWS CLI) give a role assumed through a profile's
#: ``role_arn`` that sets no ``role_session_name``: a new one at each login.
GENERATED_SESSION = re.compile(r"botocore-session-\d+")
#: 12 lowercase hex characters (infra/variables.tf checks the same).
ID_PATTERN = re.compile(r"[0-9a-f]{12}")


def new_cluster_id() -> str:
    """A fresh random cluster id (48 bits: 12 hex characters)."""
    return secrets.token_hex(6)


def tag_filter(cluster: str, cluster_id: str | None = None) -> list[dict[str, object]]:
    """The EC2 ``Filters`` that select the resources tagged with the cluster's name and, when
    given, its id (without it, of any id: the sweep tells them apart itself)."""
    found: list[dict[str, object]] = [{"Name": f"tag:{TAG_KEY}", "Values": [cluster]}]
    if cluster_id is not None:
        found.append({"Name": f"tag:{ID_TAG_KEY}", "Values": [cluster_id]})
    return found


def tag_value(tags: list[dict[str, str]] | None, key: str) -> str:
    """The value of tag ``key`` in an EC2 ``Tags`` list; "" when it is not there."""
    return next((t["Value"] for t in tags or [] if t["Key"] == key), "")


def owner_value(arn: str) -> str:
    """The ``clusterkit:owner`` tag for the caller ``arn`` (STS's): the ARN itself; "" (no
    owner tag, as an older kit's) when it is longer than a tag value may be."""
    return arn if 0 < len(arn) <= TAG_VALUE_MAX else ""


def is_owner(tag: str, caller: str) -> bool:
    """Whether an owner tag names ``caller`` (an ARN): the same ARN, or the same assumed role
    (partition, account, role) where both session names are botocore's generated ones, which
    change at each login and so name no one. Another session name (an SSO user's, a
    classmate's) is another owner. False for an empty tag or caller."""
    if not tag or not caller:
        return False
    if tag == caller:
        return True
    ours, theirs = ASSUMED_ROLE.fullmatch(caller), ASSUMED_ROLE.fullmatch(tag)
    if ours is None or theirs is None or ours.groups()[:3] != theirs.groups()[:3]:
        return False
    return all(GENERATED_SESSION.fullmatch(m.group(4)) for m in (ours, theirs))
