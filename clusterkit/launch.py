"""Submitting a job by name with command-line style arguments: what ``clusterkit run`` and the
TUI's job forms both call, so a parameter is checked and a refusal recorded the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clusterkit import catalog, runs
from clusterkit.cluster import Cluster, open_cluster
from clusterkit.errors import ClusterkitError, UnknownJob
from jobs._lib import Param

#: Jobs whose driver submits other runs through this machine's run store.
SUBMITS_RUNS = {"suite", "bench"}


class ParamsRefused(UnknownJob):
    """A parameter was refused before anything ran; ``run_id`` is the failed record kept for it
    (None when no cluster was up to hold one)."""

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id


def submit_job(
    job: str,
    args: Sequence[str],
    *,
    cluster_name: str | None = None,
    metrics_enabled: bool = True,
) -> tuple[Cluster, runs.RunRecord]:
    """Check ``job`` and its ``--name value`` arguments, then submit it to the cluster.

    Raises UnknownJob for a job that does not exist, ParamsRefused for a bad parameter (the
    attempt is recorded as a failed run when a cluster is up), NoCluster when none is up.
    """
    definition = catalog.find_job(job)
    try:
        params = catalog.parse_job_args(definition, args)
    except UnknownJob as exc:
        run_id = None
        try:
            target = open_cluster(cluster_name)
        except ClusterkitError:
            pass
        else:
            run_id = runs.record_refused(target, definition.name, list(args), str(exc)).id
        raise ParamsRefused(str(exc), run_id) from exc
    target = open_cluster(cluster_name)
    if target.is_remote and definition.name in SUBMITS_RUNS:
        raise UnknownJob(
            f"job {definition.name!r} submits runs of its own, which needs the local provider "
            f"for now; on cluster {target.name!r} run its steps one by one "
            f"(`clusterkit jobs` lists them)"
        )
    record = runs.submit(target, definition.name, params, metrics_enabled=metrics_enabled)
    return target, record


def default_text(param: Param) -> str:
    """A parameter's default as it would be typed on the command line ('' for none)."""
    value: Any = param.default
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def args_from_form(job: str, texts: dict[str, str]) -> list[str]:
    """``--name=value`` arguments for the fields whose text differs from the default.

    Values are checked by :func:`submit_job` as typed ones are; an emptied field takes the
    default.
    """
    args: list[str] = []
    for param in catalog.find_job(job).params:
        text = texts.get(param.name, "").strip()
        if text and text != default_text(param):
            args.append(f"--{param.name.replace('_', '-')}={text}")
    return args
