"""Cloud-only verbs on a cluster the aws provider made: ``allow-ip``, ``cost``, and ``down``
by tag with no state.

``allow-ip`` and ``cost`` find the cluster through its state folder (its Terraform variables
hold the region, its id file the cluster id that tells it from another of the same name); all
three talk to EC2 with boto3; the CLI calls these, never boto3 itself.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.lock import cluster_lock
from clusterkit.core.spec import check_name
from clusterkit.core.state import ClusterPaths, Contexts, default_state_dir
from clusterkit.providers.aws import access, accrued, pricing, sweep
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws.provider import AwsProvider


def _aws_cluster(name: str | None) -> tuple[str, ClusterPaths, dict[str, Any]]:
    """(name, paths, the Terraform variables of its last apply); ClusterkitError when the
    cluster is not an AWS one."""
    name, paths = Contexts().resolve(name)
    variables = AwsProvider.terraform(paths).read_vars()
    if not variables:
        raise ClusterkitError(
            f"cluster {name!r} was not made by the aws provider (no Terraform variables in "
            f"{paths.root / 'terraform'}); allow-ip and cost are for AWS clusters"
        )
    return name, paths, variables


def allow_ip(name: str | None, cidr: str | None, *, fetch: Any = None) -> dict[str, Any]:
    """Point the cluster's SSH rule at ``cidr`` (checked), or at this machine's address now;
    the Terraform variables follow, so the next apply keeps it."""
    name, paths, variables = _aws_cluster(name)
    new = aws_preflight.operator_cidr(cidr, fetch=fetch, field="allow-ip's CIDR")
    ec2 = aws_preflight.session(variables["region"]).client("ec2")
    cluster_id = AwsProvider().recorded_id(paths) or None  # an older kit's: by name
    change = access.allow_ip(ec2, name, new, cluster_id=cluster_id)
    AwsProvider.terraform(paths).write_vars({**variables, "operator_cidr": new})
    return {"cluster": name, **asdict(change), "changed": change.changed}


def cost(name: str | None, *, now: float | None = None) -> dict[str, Any]:
    """The list price per hour of what the cluster runs now, and what it has cost since its
    ``up`` (:mod:`.accrued`: EC2 and the kit's power log; ``now`` default: the clock), each
    with its formula and where its prices came from (the Price List API, else the table)."""
    name, paths, variables = _aws_cluster(name)
    region = variables["region"]
    sess = aws_preflight.session(region)
    ec2 = sess.client("ec2")
    cluster_id = AwsProvider().recorded_id(paths) or None  # an older kit's: by name
    prices = pricing.Prices.asking_aws(region, sess)
    found = pricing.running(ec2, name, region, cluster_id=cluster_id, prices=prices)
    spent = accrued.accrued(ec2, name, paths.root, prices=prices, cluster_id=cluster_id,
                            now=now)  # fmt: skip
    return {
        "cluster": name,
        "region": region,
        "lines": [asdict(line) for line in found.lines],
        "hourly_usd": round(found.hourly, 4),
        "formula": found.formula(),
        "price_table_date": pricing.PRICE_TABLE_DATE,
        "sources": list(pricing.PRICE_SOURCES),
        "source": found.source,
        "accrued_usd": round(spent.usd, 4),
        "accrued_formula": spent.formula(),
        "accrued": spent.as_dict(),
        "notes": list(dict.fromkeys(prices.notes)),
    }


def down_by_tag(name: str, *, region: str | None, say: Callable[[str], None],
                confirm: sweep.Confirm | None = None) -> dict[str, Any]:  # fmt: skip
    """Remove the AWS resources tagged with cluster ``name`` in ``region``, with no state
    needed (it was lost, or is on another machine); ClusterkitError names what is left.

    When the default state folder records the cluster's id, another cluster's of the same
    name is left (and said). ``confirm`` is asked the sweep's own questions (what is found by
    the name alone, or outside the recorded VPC); None: the caller has asked "remove
    everything tagged NAME?" already (the CLI does), and that answer stands for them, each
    said."""
    t0 = time.monotonic()
    paths = ClusterPaths(default_state_dir(check_name(name, what="--cluster"), None))

    def asked_before(question: str) -> bool:
        say(f"{question} yes: everything tagged {name} was to go")
        return True

    # a state folder of that name here: its lock, so no `up` of it runs meanwhile
    guard = cluster_lock(paths.root, "down") if paths.root.is_dir() else contextlib.nullcontext()
    with guard:
        removed = AwsProvider().remove(name, paths, say=say, region=region,
                                       confirm=confirm or asked_before)  # fmt: skip
        paths.state_file.unlink(missing_ok=True)
    what = f"removed {', '.join(removed)}" if removed else "nothing tagged with it was left"
    message = f"cluster {name!r} is down: {what}"
    return {"cluster": name, "changed": bool(removed), "message": message, "removed": removed,
            "elapsed_s": round(time.monotonic() - t0, 2)}  # fmt: skip
