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

from clusterkit.core.errors import BadInput, ClusterkitError
from clusterkit.core.lock import cluster_lock
from clusterkit.core.spec import check_name
from clusterkit.core.state import ClusterPaths, Contexts, default_state_dir
from clusterkit.providers.aws import access, accrued, pricing, sweep
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.aws.tags import ID_PATTERN, ID_TAG_KEY


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
                confirm: sweep.Confirm | None = None,
                cluster_id: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Remove the AWS resources tagged with cluster ``name`` in ``region``, with no state
    needed (it was lost, or is on another machine); ClusterkitError names what is left.

    When the default state folder records the cluster's id, another cluster's of the same
    name is left (and said). ``confirm`` is asked the sweep's own questions (what is found by
    the name alone, or outside the recorded VPC); None: the caller has asked "remove
    everything tagged NAME?" already (the CLI does), and that answer stands for them, each
    said. With ``cluster_id``, only what carries that id too (:func:`down_by_id`)."""
    t0 = time.monotonic()
    paths = ClusterPaths(default_state_dir(check_name(name, what="--cluster"), None))

    def asked_before(question: str) -> bool:
        say(f"{question} yes: everything tagged {name} was to go")
        return True

    if cluster_id is not None:
        swept = down_by_id(name, cluster_id, region=region, say=say,
                           confirm=confirm or asked_before)  # fmt: skip
        return {**swept, "elapsed_s": round(time.monotonic() - t0, 2)}
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


def _id_scope(name: str, cluster_id: str, region: str | None) -> tuple[Any, sweep.Scope]:
    """EC2 in ``region`` and the sweep's scope of ``name`` and ``cluster_id`` (its VPC when
    there is one); BadInput as :func:`down_by_id` says."""
    if not ID_PATTERN.fullmatch(cluster_id):
        raise BadInput(f"--cluster-id {cluster_id!r} is not a cluster id: 12 hex characters, "
                       f"as the {ID_TAG_KEY} tag holds (`clusterkit doctor` names it)")  # fmt: skip
    folders = {default_state_dir(name, None), *(p for n, p in Contexts().clusters().items()
                                                 if n == name)}  # fmt: skip
    for folder in sorted(folders):
        if folder.is_dir() and AwsProvider().recorded_id(ClusterPaths(folder)) == cluster_id:
            raise BadInput(f"{cluster_id} is the id of cluster {name!r} whose state is {folder}: "
                           f"take it down with `clusterkit down --cluster {name}`")  # fmt: skip
    ec2 = aws_preflight.session(region).client("ec2")
    vpcs = [t.id for t in sweep.find(ec2, name) if t.kind == "vpc" and t.cluster_id == cluster_id]
    return ec2, sweep.Scope(name, cluster_id, vpcs[0] if len(vpcs) == 1 else None)


def tagged_to_remove(name: str, *, region: str | None,
                     cluster_id: str | None = None) -> list[sweep.Tagged]:  # fmt: skip
    """What :func:`down_by_tag` would remove, listed before it is asked (nothing changed):
    what carries ``name``'s tag (and ``cluster_id``'s) in ``region``, another cluster's of the
    name left out; BadInput as :func:`down_by_id` says."""
    if cluster_id is not None:
        ec2, scope = _id_scope(name, cluster_id, region)
    else:
        paths = ClusterPaths(default_state_dir(check_name(name, what="--cluster"), None))
        ec2 = aws_preflight.session(region).client("ec2")
        scope = AwsProvider().scope(name, paths)
    return sweep.ours(ec2, scope)


def down_by_id(name: str, cluster_id: str, *, region: str | None, say: Callable[[str], None],
               confirm: sweep.Confirm) -> dict[str, Any]:  # fmt: skip
    """Remove what carries cluster ``name``'s tag and ``cluster_id`` in ``region``, by tag
    alone: no state folder is read for it or changed, no Terraform runs (what a lost state
    left, while another cluster of the name, or none, has a state here). What lies in that
    id's VPC goes; anything outside it only with ``confirm``'s yes. BadInput when the id is
    not one, or is the id a state of this machine records for ``name`` (``clusterkit down
    --cluster NAME`` takes that one down, Terraform first); ClusterkitError names what is
    left."""
    ec2, scope = _id_scope(name, cluster_id, region)
    swept = sweep.remove(ec2, scope, say=say, confirm=confirm)
    why = {t.id: reason for t, reason in swept.skipped}
    left = [f"{t} ({why[t.id]})" if t.id in why else str(t) for t in sweep.ours(ec2, scope)]
    if left:
        raise ClusterkitError(
            f"cluster {name!r} ({ID_TAG_KEY}={cluster_id}): still in AWS: {', '.join(left)}; "
            f"remove them in the EC2 console, or run the same command again"
        )
    removed = [str(t) for t in swept.removed]
    what = f"removed {', '.join(removed)}" if removed else "nothing tagged with it was left"
    return {"cluster": name, "cluster_id": cluster_id, "changed": bool(removed),
            "message": f"cluster {name!r} ({ID_TAG_KEY}={cluster_id}) is gone: {what}",
            "removed": removed}  # fmt: skip
