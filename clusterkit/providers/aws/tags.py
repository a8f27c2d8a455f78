"""The tags every AWS resource of a cluster carries: ``clusterkit:cluster = <name>`` and
``clusterkit:cluster-id = <id>``, the id random and made once per cluster by ``up``, so two
clusters of the same name in one account are told apart."""

from __future__ import annotations

import re
import secrets

TAG_KEY = "clusterkit:cluster"
ID_TAG_KEY = "clusterkit:cluster-id"
#: Each instance's role ("master" or "worker"), as infra/nodes.tf tags it.
ROLE_TAG_KEY = "clusterkit:role"
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
