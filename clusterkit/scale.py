"""``clusterkit scale --workers N``: grow or shrink a running remote cluster, in the manner of
Flintrock's add-slaves / remove-slaves and EMR's resize.

Growing: the provider makes only the new workers (a rehearsal's namespaces, Terraform's apply
of the new count on AWS, which also replaces spot workers AWS reclaimed), the playbooks run
on the master and the new workers only (the others' facts come from the cluster's fact
cache), and ``scale`` returns once Spark and Ray list every worker ALIVE.

Shrinking: the highest-numbered workers go. Refused while a run is going unless ``force``
(then the runs are cancelled, each record saying why). The leaving workers are drained first
(:mod:`clusterkit.services.drain`: Spark's decommissioning, HDFS's, Ray's drain), their units
stopped, then the provider removes them and the playbooks bring the master up to date (its
/etc/hosts, the idle guard's list of workers).

Before acting, on AWS, the list price per hour before and after is said (and growing past
``aws.max_hourly_usd`` is refused unless ``yes``). ``scale`` holds the cluster's lock; the
saved state and spec say the new count once the nodes changed, so a failure after that is
mended by ``clusterkit provision`` (or by scaling back).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clusterkit import power
from clusterkit.cluster import Cluster, open_cluster, services_for
from clusterkit.core.errors import BadInput, ClusterkitError
from clusterkit.core.files import write_text_atomic
from clusterkit.core.inventory import Node
from clusterkit.core.lock import cluster_lock, state_lock
from clusterkit.core.spec import MAX_WORKERS, Spec
from clusterkit.core.state import Contexts, storage_root_for
from clusterkit.exec.runner import CommandRunner
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws import pricing
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.services import drain
from clusterkit.services.health import is_hdfs
from clusterkit.services.playbooks import NODE_RAY_TOKEN, PlaybookServices
from clusterkit.services.units import start_units, stop_units

Progress = Callable[[str], None]
#: How long ``scale`` waits for Spark and Ray to list every worker once provisioned.
HEALTH_TIMEOUT_S = 300.0


def _quiet(_: str) -> None:
    return None


@dataclass
class ScaleReport:
    cluster: str
    provider: str
    workers_before: int
    workers_after: int
    changed: bool
    message: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)  # reclaimed spot workers made again
    hourly_usd_before: float | None = None
    hourly_usd_after: float | None = None
    provisioned: dict[str, int] = field(default_factory=dict)  # tasks changed, by host
    elapsed_s: float = 0.0


def check_count(workers: int) -> int:
    """``workers`` when a cluster may have that many; BadInput naming the bounds otherwise."""
    if not 1 <= workers <= MAX_WORKERS:
        raise BadInput(
            f"--workers {workers}: a cluster has 1 to {MAX_WORKERS} workers (nodes.workers); "
            "`clusterkit down` removes a whole cluster"
        )
    return workers


def scale(name: str | None = None, *, workers: int, force: bool = False, yes: bool = False,
          say: Progress = _quiet, timeout_s: float = HEALTH_TIMEOUT_S) -> ScaleReport:  # fmt: skip
    """Give the cluster ``workers`` workers (see the module). BadInput for a count out of
    bounds or a local cluster; NoCluster when it is down or stopped; RunsActive when
    shrinking with runs going and no ``force``."""
    check_count(workers)
    t0 = time.monotonic()
    name, paths = Contexts().resolve(name)
    with cluster_lock(paths.root, "scale"):
        cluster = open_cluster(name)
        try:
            return _scale_locked(cluster, workers, force=force, yes=yes, say=say,
                                 timeout_s=timeout_s, t0=t0)  # fmt: skip
        finally:
            cluster.close()


def _target_spec(spec: Spec, workers: int) -> Spec:
    data = spec.model_dump()
    data["nodes"]["workers"] = workers
    return Spec.model_validate(data)


def _scale_locked(cluster: Cluster, workers: int, *, force: bool, yes: bool, say: Progress,
                  timeout_s: float, t0: float) -> ScaleReport:  # fmt: skip
    state, provider = cluster.state, cluster.provider
    if state.provider == "local" or not isinstance(cluster.services, PlaybookServices):
        raise BadInput(
            f"cluster {cluster.name!r} is local: this machine is its one worker, so it cannot "
            "be scaled; a rehearsal (`up --provider netns --workers N`) or an AWS cluster can"
        )
    before = list(state.inventory.workers())
    reclaimed = provider.reclaimed_workers(cluster.name, cluster.paths) if isinstance(
        provider, AwsProvider) else []  # fmt: skip
    kept = {n.name for n in before[:workers]}
    report = ScaleReport(cluster.name, state.provider, len(before), workers, changed=False,
                         message="", replaced=[n for n in reclaimed if n in kept])  # fmt: skip
    if workers == len(before) and not reclaimed:
        report.message = (
            f"cluster {cluster.name!r} has {workers} worker(s) already; nothing changed"
        )
        return report
    target = _target_spec(state.spec, workers)
    if isinstance(provider, AwsProvider):
        _say_prices(provider, cluster, target, report, yes=yes, say=say)
    leaving = before[workers:]
    if leaving:
        power.settle_runs(cluster, force=force, say=say, verb="scale")
        drained = [n for n in leaving if n.name not in reclaimed]  # a reclaimed one is off
        _drain(cluster, drained, force=force, say=say)
        try:
            power.settle_runs(cluster, force=force, say=say, verb="scale")  # sent meanwhile
        except ClusterkitError:
            _undrain(cluster, [cluster.runner(n) for n in drained], say=say)
            raise
    storage = None if "://" in (target.storage.root or "") else storage_root_for(
        target.storage.root, cluster.paths)  # fmt: skip
    try:
        inventory = provider.resize(target, cluster.paths, storage=storage, say=say)
    except ClusterkitError as exc:
        if not leaving:
            raise
        raise ClusterkitError(
            f"{exc}; {', '.join(n.name for n in leaving)} were drained and their services "
            f"stopped, not removed: `clusterkit scale --workers {workers}` again removes them, "
            "`clusterkit provision` puts them back to work"
        ) from exc
    with state_lock(cluster.paths.root):
        state.spec, state.inventory = target, inventory
        state.save(cluster.paths)
    write_text_atomic(cluster.paths.spec_file,
                      yaml.safe_dump(target.model_dump(), sort_keys=False))  # fmt: skip
    known = {n.name for n in before}
    report.added = [n.name for n in inventory.workers() if n.name not in known]
    report.removed = [n.name for n in leaving]
    grown = Cluster(state, cluster.paths, provider, services_for(provider, cluster.name,
                                                                cluster.paths))  # fmt: skip
    try:
        _after_resize(grown, report, say=say, timeout_s=timeout_s)
    except ClusterkitError as exc:
        raise ClusterkitError(
            f"{exc}; cluster {cluster.name!r} now has {workers} worker node(s): `clusterkit "
            f"provision` tries the playbooks again, `clusterkit scale --workers {len(before)}` "
            "goes back"
        ) from exc
    finally:
        grown.close()
    grown.record_lock(say=say)
    report.changed = True
    report.elapsed_s = round(time.monotonic() - t0, 2)
    what = [f"{verb} {', '.join(names)}" for verb, names in (
        ("added", report.added), ("removed", report.removed),
        ("replaced reclaimed", report.replaced)) if names]  # fmt: skip
    report.message = f"cluster {cluster.name!r} has {workers} worker(s) ({'; '.join(what)})"
    return report


def _after_resize(cluster: Cluster, report: ScaleReport, *, say: Progress,
                  timeout_s: float) -> None:  # fmt: skip
    """The playbooks on the master and the new (or replaced) workers only, then health."""
    assert isinstance(cluster.services, PlaybookServices)
    if report.removed and is_hdfs(cluster.state.storage_root):
        drain.forget_datanodes(cluster.driver())
    limit = ["master", *report.added, *report.replaced]
    say(f"provisioning {', '.join(limit)} (the other workers are left as they are)")
    done = cluster.services.provision(cluster.state, cluster.paths, say=say, limit=limit)
    report.provisioned = {host: done.changed.get(host, 0) for host in sorted(done.ok)}
    power.wait_healthy(cluster, say=say, timeout_s=timeout_s)


def _say_prices(provider: AwsProvider, cluster: Cluster, target: Spec, report: ScaleReport,
                *, yes: bool, say: Progress) -> None:  # fmt: skip
    """The list price per hour now and after (AWS); growing past the budget refused unless
    ``yes``."""
    region = provider.terraform(cluster.paths).read_vars().get("region")
    growing = target.nodes.workers > cluster.state.spec.nodes.workers
    try:
        now = provider.estimate(cluster.state.spec, region)
        after = provider.estimate(target, region)
    except aws_preflight.AwsPreflightError:
        raise  # no region: its own message says how to give one
    except ClusterkitError as exc:  # neither the Price List API nor the table has a price
        if growing:
            pricing.budget_unknown(exc, yes=yes, say=say)  # refused unless --yes
        else:
            say(f"no list price ({exc}); shrinking goes on")
        return
    report.hourly_usd_before, report.hourly_usd_after = now.hourly, after.hourly
    say(f"price per hour: ${now.hourly:.4f} now ({now.formula()}), ${after.hourly:.4f} with "
        f"{target.nodes.workers} worker(s) ({after.formula()}); {after.source}")  # fmt: skip
    if growing:
        provider.check_budget(target, yes=yes, region=region, made=True, say=say)


def _undrain(cluster: Cluster, runners: list[CommandRunner], *, say: Progress) -> None:
    """Back to work after a drain that failed: the exclude file emptied, each leaving node's
    Spark worker and Ray node started again (a decommissioned or drained one takes no work),
    units stopped started. Best effort: what fails here is said, the first error stays."""
    try:
        if is_hdfs(cluster.state.storage_root):
            drain.forget_datanodes(cluster.driver())
        for runner in runners:
            runner.run(["systemctl", "restart", "clusterkit-spark-worker", "clusterkit-ray"],
                       check=False)  # fmt: skip
        start_units(runners, say=say)
    except ClusterkitError as exc:
        say(f"could not put every leaving worker back to work ({exc}): `clusterkit provision` "
            "does")  # fmt: skip


def _drain(cluster: Cluster, leaving: list[Node], *, force: bool, say: Progress) -> None:
    """Spark, HDFS and Ray let go of ``leaving`` before they go; their units stopped. A
    drain that fails stops the scale, unless ``force`` (then it is said, and the nodes go)."""
    runners = [cluster.runner(node) for node in leaving]
    hosts = [node.address for node in leaving]
    state = cluster.state
    steps: list[tuple[str, Callable[[], Any]]] = [
        (
            "Spark",
            lambda: drain.decommission_spark(runners, read_rows=cluster.read_health, say=say),
        ),
    ]
    if is_hdfs(state.storage_root):
        steps.append(("HDFS", lambda: drain.decommission_datanodes(cluster.driver(), hosts,
                                                                   say=say)))  # fmt: skip
    steps.append(("Ray", lambda: drain.drain_ray(
        cluster.driver(), drain.ray_node_ids(cluster.read_health(), hosts),
        ray=str(Path(state.node_python).parent / "ray"),
        gcs_address=state.endpoints.ray_address, token_file=NODE_RAY_TOKEN, say=say)))  # fmt: skip
    steps.append(("their units", lambda: stop_units(runners, say=say)))
    for what, step in steps:
        try:
            step()
        except ClusterkitError as exc:
            if not force:
                _undrain(cluster, runners, say=say)
                raise ClusterkitError(
                    f"{what} could not let go of {', '.join(n.name for n in leaving)}: {exc}; "
                    "nothing was removed (`clusterkit scale --force` removes them anyway)"
                ) from exc
            say(f"{what}: {exc} (going on: --force)")
