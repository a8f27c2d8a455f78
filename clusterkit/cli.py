"""The ``clusterkit`` command. Thin: parse, call the core, print (human or --json).

``main()`` maps the kit's errors to exit codes: 0 ok, 1 failed, 2 bad input or usage, and
prints one line (``error: ...``) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar
from urllib.parse import urlsplit

import click
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Column, Table
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from clusterkit import catalog, cloud, lifecycle, operate, power
from clusterkit.cluster import (
    Cluster,
    ParamsRefused,
    Rerun,
    open_cluster,
    open_or_why,
    opened,
    rerun_job,
    run_store,
    submit_job,
)
from clusterkit.core.errors import BadInput, ClusterkitError, NoCluster, RunNotFound
from clusterkit.core.fmt import human_bytes, human_seconds
from clusterkit.core.jobspec import Job, Param
from clusterkit.core.records import RunRecord, now_iso
from clusterkit.core.spec import (
    MAX_WORKERS,
    SPEC_FILENAME,
    default_spec_text,
    load_spec,
    named_spec,
)
from clusterkit.core.state import CLUSTER_ENV, Contexts
from clusterkit.core.versions import kit_commit, kit_version
from clusterkit.doctor import CHECKS, RUNBOOKS, render_lines, run_doctor, shell_vars, with_drift
from clusterkit.doctor.report import UNSET
from clusterkit.runs.compare import check_checksums
from clusterkit.runs.launcher import Runs
from clusterkit.runs.store import RunStore
from clusterkit.runs.tails import LogTail, progress
from clusterkit.scale import scale as scale_cluster
from clusterkit.scripts import plan_script, submit_script

# The panels of `clusterkit --help`, in this order (a command's is its rich_help_panel).
# `doctor` goes in DIAGNOSE (or CLUSTER); a panel without commands is not shown.
CLUSTER, JOBS, NODES, AWS, DIAGNOSE = "Cluster", "Jobs and runs", "Nodes", "AWS", "Diagnose"
PANELS = (CLUSTER, JOBS, NODES, AWS, DIAGNOSE)
#: a command that passes the words it does not know on (a job's parameters, a script's args)
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


class _Panels(TyperGroup):
    """Lists the commands panel by panel, in :data:`PANELS`' order; in a panel, in the order
    they are defined here."""

    def list_commands(self, ctx: Any) -> list[str]:
        def rank(name: str) -> int:
            panel = getattr(self.commands[name], "rich_help_panel", None)
            return PANELS.index(panel) if panel in PANELS else len(PANELS)

        return sorted(super().list_commands(ctx), key=rank)


app = typer.Typer(
    cls=_Panels,
    help="A reproducible Spark + Ray cluster kit with honest, recorded job runs.",
    epilog=f"{CLUSTER_ENV} picks the cluster when --cluster is not given (over `clusterkit "
    f"use`); CLUSTERKIT_SPEC names the spec file `up` reads; CLUSTERKIT_HOME is the kit's "
    "home (~/.clusterkit). `clusterkit run JOB --help` lists a job's parameters.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion, --show-completion (bash, zsh, fish)
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
# soft_wrap: an error is one line, and a node's output line keeps its prefix, at any width
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _cluster_names(incomplete: str) -> list[str]:
    """Shell completion of a cluster's name: the known clusters."""
    with contextlib.suppress(ClusterkitError):
        return [name for name in Contexts().clusters() if name.startswith(incomplete)]
    return []


def _job_names(incomplete: str) -> list[str]:
    """Shell completion of a job's name: the catalog's jobs."""
    return [job.name for job in catalog.list_jobs() if job.name.startswith(incomplete)]


ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help=f"act on this cluster (default: ${CLUSTER_ENV}, else the current one)",
        autocompletion=_cluster_names,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON on stdout")]


class SparkSession(StrEnum):
    warm = "warm"
    classic = "classic"


SparkSessionOpt = Annotated[
    SparkSession,
    typer.Option(
        "--spark-session",
        help="warm: the cluster's Spark Connect server (no start-up); classic: a Spark "
        "application of the run's own (the RDD API, a comparison)",
    ),
]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _line(text: str) -> None:
    """One line on stdout, never wrapped (it holds addresses, rule ids, formulas)."""
    out.print(text, soft_wrap=True, markup=False)


def _say(message: str) -> None:
    err.print(f"[dim]·[/dim] {message}")


def _version_text() -> str:
    """``clusterkit X.Y.Z``, with the commit when the kit runs from a git checkout."""
    commit = kit_commit()
    return f"clusterkit {kit_version()}" + (f" (commit {commit})" if commit else "")


def _print_version(value: bool) -> None:
    if value:
        _line(_version_text())
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="print the version and exit", is_eager=True, callback=_print_version
        ),
    ] = False,
) -> None:
    pass


@app.command(rich_help_panel=CLUSTER)
def init(
    folder: Annotated[
        Path | None,
        typer.Argument(
            help="with --class: where to write the spec and examples/ (default: .)",
            metavar="DIR",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        Path | None,
        typer.Option(
            help=f"where to write the spec (default: $CLUSTERKIT_SPEC, else {SPEC_FILENAME})"
        ),
    ] = None,
    for_class: Annotated[
        bool,
        typer.Option(
            "--class",
            help="also write examples/ to hand out: the steps, two scripts, the versions pinned",
        ),
    ] = False,
    force: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Write a commented default cluster spec (clusterkit.yaml); with --class, also the
    examples/ folder an instructor hands out."""
    if for_class:
        from clusterkit.classroom import write_class

        written = write_class(folder or Path("."), spec=path, force=force)
        names = ", ".join(p.name for p in written.files)
        _line(f"wrote {written.spec} and {written.examples}/ ({names}): hand them out; the "
              f"steps are in {written.examples / 'README.md'}")  # fmt: skip
        return
    if folder is not None:
        raise BadInput(f"{folder}: a folder is for --class; the spec's own path is --path")
    path = path or named_spec() or Path(SPEC_FILENAME)
    if path.exists() and not force:
        raise ClusterkitError(f"{path} exists; pass --force to replace it")
    path.write_text(default_spec_text())
    out.print(f"wrote {path}: edit it, then `clusterkit up --spec {path}`")


@app.command(rich_help_panel=CLUSTER)
def up(
    spec_path: Annotated[
        Path | None,
        typer.Option(
            "--spec",
            help=f"the spec file (default: $CLUSTERKIT_SPEC, else "
            f"./{SPEC_FILENAME} if there is one)",
        ),
    ] = None,
    provider: Annotated[str | None, typer.Option(help="override the spec's provider")] = None,
    name: Annotated[str | None, typer.Option(help="override the spec's cluster name")] = None,
    dry_run: Annotated[bool, typer.Option(help="check the spec and this machine only")] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="a failed cloud up removes what it made, unasked; a list price over "
            "aws.max_hourly_usd is accepted",
        ),
    ] = False,
    idle_minutes: Annotated[
        int | None,
        typer.Option(
            help="the idle guard acts after N minutes idle (overrides idle_guard.idle_minutes)",
            min=1,
        ),
    ] = None,
    no_idle_guard: Annotated[
        bool, typer.Option("--no-idle-guard", help="no idle guard on this cluster")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(help=f"how many workers, 1 to {MAX_WORKERS} (overrides nodes.workers)"),
    ] = None,
    region: Annotated[str | None, typer.Option(help="AWS: the region (aws.region)")] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="AWS: every node's EC2 type (aws.*_instance_type)")
    ] = None,
    worker_instance_type: Annotated[
        str | None, typer.Option(help="AWS: the workers' EC2 type (aws.worker_instance_type)")
    ] = None,
    spot_workers: Annotated[
        bool, typer.Option("--spot-workers", help="AWS: the workers are spot instances")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the cluster (default: a real Spark + Ray cluster on this machine). The options
    override the spec for this cluster, and its saved spec keeps them."""
    if no_idle_guard and idle_minutes is not None:
        raise BadInput("give --idle-minutes or --no-idle-guard, not both")
    guard = 0 if no_idle_guard else idle_minutes
    overrides = {
        "idle_guard.idle_minutes": guard,
        "nodes.workers": workers,
        "aws.region": region,
        "aws.master_instance_type": instance_type,
        "aws.worker_instance_type": worker_instance_type or instance_type,
        "aws.worker_market": "spot" if spot_workers else None,
    }
    spec = load_spec(spec_path, provider=provider, name=name, **overrides)
    if dry_run:
        _print_plan(lifecycle.up_check(spec), as_json=as_json)
        return
    report = lifecycle.up(spec, say=_say, confirm=_remove_after_failure(yes), accept_price=yes)
    if as_json:
        _print_json(asdict(report))
    else:
        out.print(f"{report.message} ({report.elapsed_s:.1f} s)")
        for key, url in report.endpoints.items():
            out.print(f"  {key:<17} {url}")
    chosen = os.environ.get(CLUSTER_ENV)
    if chosen:  # what `clusters` says too: the commands after this one act on that cluster
        other = f", not {spec.name}: unset it to act on {spec.name}" if chosen != spec.name else ""
        _say(f"{CLUSTER_ENV}={chosen} picks the cluster in this shell{other}")


def _print_plan(plan: dict[str, Any], *, as_json: bool) -> None:
    """What ``up --dry-run`` found, in one or two lines (or the whole plan as JSON)."""
    if as_json:
        _print_json(plan)
    elif "hourly_usd" in plan:  # a cloud: its account, and what it would cost
        _line(
            f"spec OK; AWS account {plan['account']} in {plan['region']}; SSH would be open "
            f"to {plan['operator_cidr']} only; Terraform: {plan['terraform']}"
        )
        budget = f"aws.max_hourly_usd = ${plan['max_hourly_usd']:g}"
        verdict = (f"within {budget}" if plan["within_budget"]
                   else f"over {budget}: `up` refuses it unless --yes")  # fmt: skip
        _line(f"list price: {plan['formula']} (AWS on-demand; {plan['price_source']}); "
              f"{verdict}; nothing made")  # fmt: skip
    elif "services" in plan:  # installed on the nodes by the playbooks
        out.print(f"spec OK; provider {plan['provider']} can run here; {plan['services']}; "
                  f"nothing started")  # fmt: skip
    else:
        out.print(
            f"spec OK; Java {plan['java_major']} at {plan['java_home']}; ports free; "
            f"Spark worker {plan['sizing']['worker_cores']} cores "
            f"{plan['sizing']['worker_memory_mb']} MiB; nothing started"
        )


def _remove_after_failure(yes: bool) -> Any:
    """What a failed or interrupted ``up`` asks before removing a cloud's resources: with
    --yes or no terminal, remove."""

    def confirm(question: str) -> bool:
        if yes or not sys.stdin.isatty():
            return True
        return bool(typer.confirm(question, default=True))

    return confirm


def _asker(yes: bool) -> Callable[[str], bool] | None:
    """How a command asks before removing what may not be this cluster's: ``--yes`` says yes;
    with no terminal to ask on, None (it is left, and said)."""
    if yes:
        return lambda _question: True
    if not sys.stdin.isatty():
        return None
    return lambda question: typer.confirm(question, default=False)


@app.command(rich_help_panel=CLUSTER)
def down(
    cluster_name: ClusterOpt = None,
    purge: Annotated[bool, typer.Option(help="also delete state, logs, runs and data")] = False,
    provider: Annotated[
        str | None,
        typer.Option(help="aws: remove by tag, with no state here (needs --cluster)"),
    ] = None,
    region: Annotated[str | None, typer.Option(help="with --provider aws: the region")] = None,
    cluster_id: Annotated[
        str | None,
        typer.Option(
            help="with --provider aws: only what carries this clusterkit:cluster-id "
            "(doctor's orphans line names it); no state is touched"
        ),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop everything the cluster started (verified by pid and port; on AWS, by tag)."""
    if purge and not yes:
        typer.confirm(
            "--purge deletes the cluster's data, logs and run history. Go on?", abort=True
        )
    if cluster_id is not None and provider is None:
        raise BadInput("--cluster-id goes with --provider aws --cluster NAME")
    if provider is not None:
        if provider != "aws" or not cluster_name:
            raise BadInput("--provider aws --cluster NAME [--region R] removes an AWS "
                           "cluster by its tag; other providers need no --provider")  # fmt: skip
        if not yes:  # each resource named before the question: it may be someone else's
            found = cloud.tagged_to_remove(cluster_name, region=region, cluster_id=cluster_id)
            tagged = f" and clusterkit:cluster-id={cluster_id}" if cluster_id else ""
            where = region or "the default region"
            out.print(f"tagged clusterkit:cluster={cluster_name}{tagged} in {where}: "
                      f"{len(found) or 'nothing'}", markup=False)  # fmt: skip
            for item in found:
                out.print(f"  {item}" + (f" [clusterkit:cluster-id={item.cluster_id}]"
                                         if item.cluster_id else ""), markup=False)  # fmt: skip
            typer.confirm("Remove them? (in an account others use too, check that these are "
                          "yours)", abort=True)  # fmt: skip
        swept = cloud.down_by_tag(cluster_name, region=region, say=_say,
                                  confirm=_asker(yes), cluster_id=cluster_id)  # fmt: skip
        _print_json(swept) if as_json else out.print(swept["message"])
        return
    report = lifecycle.down(cluster_name, purge=purge, say=_say, confirm=_asker(yes))
    _print_json(asdict(report)) if as_json else out.print(report.message)


@app.command(name="allow-ip", rich_help_panel=AWS)
def allow_ip(
    cidr: Annotated[
        str | None,
        typer.Argument(help="the new CIDR, e.g. 81.2.69.160/32; default: this machine's IP"),
    ] = None,
    cluster_name: ClusterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Move an AWS cluster's SSH rule to your address now (after a network change)."""
    change = cloud.allow_ip(cluster_name, cidr)
    if as_json:
        _print_json(change)
        return
    name, new, old = change["cluster"], change["new_cidr"], change["old_cidr"]
    if change["changed"]:
        _line(f"SSH to cluster {name!r} now open to {new} only (was {old}; "
              f"rule {change['rule_id']})")  # fmt: skip
    else:
        _line(f"SSH to cluster {name!r} is already open to {new} only; nothing changed")


@app.command(rich_help_panel=AWS)
def cost(cluster_name: ClusterOpt = None, as_json: JsonOpt = False) -> None:
    """An AWS cluster's list price per hour now, and its cost since `up` (not a bill)."""
    data = cloud.cost(cluster_name)
    if as_json:
        _print_json(data)
        return
    _line(f"cluster {data['cluster']!r} in {data['region']}: "
          f"${data['hourly_usd']:.4f} per hour at list prices")  # fmt: skip
    for line in data["lines"]:
        each = f"${line['unit_price']:g}{line['unit']}"
        _line(f"  {line['count']:g} {line['what']} at {each} = ${line['hourly']:.4f}/h")
    _line(f"  {data['formula']}")
    spent = data["accrued"]
    _print_accrued(spent)
    _line(f"prices: {data['source']} (AWS on-demand list prices, Linux); taxes, data "
          f"transfer and credits not included: {', '.join(data['sources'])}")  # fmt: skip
    for note in dict.fromkeys([*spent["notes"], *data["notes"], *spent["skipped"]]):
        _line(f"note: {note}")


def _print_accrued(spent: dict[str, Any]) -> None:
    """What ``cost`` says of the cost since ``up``: per instance, per extra, the formula."""
    _line(f"since up ({spent['since_iso'] or 'unknown'}): ${spent['usd']:.4f} at list prices")
    for i in spent["instances"]:
        who = f"{i['role'] or i['name']} {i['instance_type']} {i['instance_id']}".strip()
        _line(f"  {who} ({i['state']}): {i['hours']:.2f} h at ${i['price']:g}/h = "
              f"${i['usd']:.4f}")  # fmt: skip
    for e in spent["extras"]:
        _line(f"  {e['what']}: {e['quantity']:.2f} {e['unit']} at ${e['price']:g}/{e['unit']} "
              f"= ${e['usd']:.4f}")  # fmt: skip
    _line(f"  {spent['formula']}")


@app.command(rich_help_panel=AWS)
def idle(
    cluster_name: ClusterOpt = None,
    extend: Annotated[
        str | None, typer.Option(help="act no sooner than this from now, e.g. 2h, 45m, 1h30m")
    ] = None,
    off: Annotated[
        bool, typer.Option("--off", help="the guard stops acting (it still watches) until --on")
    ] = False,
    on: Annotated[
        bool,
        typer.Option(
            "--on", help="the guard acts again, its timer started again, any extension dropped"
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The idle guard of a remote cluster: what keeps it up, or when it stops (and change it)."""
    chosen = [verb for verb, given in (("extend", extend is not None), ("off", off),
                                       ("on", on)) if given]  # fmt: skip
    if len(chosen) > 1:
        raise BadInput(f"give one of --extend, --off, --on (got {', '.join(chosen)})")
    verb = chosen[0] if chosen else "show"
    with opened(cluster_name) as cluster:
        data = power.idle_guard(cluster, verb, extend)
        name = cluster.name
    if as_json:
        _print_json({"cluster": name, **data})
        return
    out.print(f"cluster {name!r}: {data['line']}", markup=False)
    if data.get("installed"):
        workers = ", ".join(data.get("workers") or []) or "none"
        ago = data.get("seconds_since_last_pass")
        out.print(f"  {data['action']} after {data['idle_minutes']:g} min idle; workers first "
                  f"({workers}), then the master; last pass "
                  f"{'never' if ago is None else f'{ago:.0f} s ago'}; its log: `clusterkit "
                  "ssh -- journalctl -u clusterkit-idle`", markup=False)  # fmt: skip


@app.command(rich_help_panel=CLUSTER)
def provision(cluster_name: ClusterOpt = None, as_json: JsonOpt = False) -> None:
    """Run the playbooks again on a remote cluster (idempotent: 0 changed when nothing drifted)."""
    report = lifecycle.provision(cluster_name, say=_say)
    if as_json:
        _print_json(report)
        return
    per_host = ", ".join(f"{h} {n}" for h, n in sorted(report["changed"].items()))
    out.print(
        f"cluster {report['cluster']!r} provisioned: {report['tasks']} tasks, "
        f"{report['total_changed']} changed ({per_host or 'none'}) in {report['elapsed_s']:.0f} s"
    )


@app.command(rich_help_panel=CLUSTER)
def stop(
    cluster_name: ClusterOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="cancel the runs still going, then stop")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the cluster, keeping its disks and data (AWS: the instances, workers first; the
    rehearsal: the services; local: the processes); `clusterkit start` starts it again."""
    report = lifecycle.stop(cluster_name, force=force, say=_say)
    if as_json:
        _print_json(asdict(report))
        return
    _line(f"{report.message} ({report.elapsed_s:.1f} s)")


@app.command(rich_help_panel=CLUSTER)
def scale(
    workers: Annotated[
        int,
        typer.Option("--workers", help=f"the workers the cluster is to have, 1 to {MAX_WORKERS}"),
    ],
    cluster_name: ClusterOpt = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="shrinking: cancel the runs still going, and remove the "
            "workers even if a drain fails",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="AWS: accept a list price over aws.max_hourly_usd")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Grow or shrink a running cluster (rehearsal or AWS): new workers are made and
    provisioned alone; leaving ones are drained (Spark, HDFS, Ray) first. The price per hour
    before and after is said first (AWS)."""
    report = scale_cluster(cluster_name, workers=workers, force=force, yes=yes, say=_say)
    if as_json:
        _print_json(asdict(report))
        return
    _line(f"{report.message} ({report.elapsed_s:.1f} s)")


@app.command(rich_help_panel=CLUSTER)
def start(
    cluster_name: ClusterOpt = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="AWS: accept a list price over aws.max_hourly_usd")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start a stopped cluster again and wait until it is healthy (the playbooks run only if
    it is not)."""
    report = lifecycle.start(cluster_name, yes=yes, say=_say)
    if as_json:
        _print_json(asdict(report))
        return
    _line(f"{report.message} ({report.elapsed_s:.1f} s)")
    address = report.details.get("master_public_ip")
    if address:
        _line(f"  master's public address: {address}")


def _loopback(url: str) -> bool:
    host = urlsplit(url).hostname or url.split("://", 1)[-1].split(":", 1)[0]
    return host in ("127.0.0.1", "localhost", "::1")


@app.command(rich_help_panel=CLUSTER)
def status(cluster_name: ClusterOpt = None, as_json: JsonOpt = False) -> None:
    """Provider, nodes (memory, CPU) and services (state, address, URL)."""
    data = lifecycle.status(cluster_name)
    if as_json:
        _print_json(data)
        return
    if data["state"] == "down":
        out.print(f"cluster {data['cluster']!r} is down (state in {data['state_dir']})")
        return
    if data["state"] == "stopped":
        _print_stopped(data)
        return
    out.print(
        f"cluster [bold]{data['cluster']}[/bold] · provider {data['provider']} · "
        f"{data['state']} · since {data['started_at']}"
    )
    nodes = Table(
        "node", "address", "roles", "CPU", "memory used", title="nodes", title_justify="left"
    )
    for n in data["nodes"]:
        if "error" in n:  # a remote node that did not answer
            nodes.add_row(n["name"], n["address"], ",".join(n["roles"]), "-", n["error"])
            continue
        nodes.add_row(
            n["name"],
            n["address"],
            ",".join(n["roles"]),
            f"{n['cpu_percent']:.0f}% of {n['cpu_count']}",
            f"{human_bytes(n['mem_used_bytes'])} / {human_bytes(n['mem_total_bytes'])}",
        )
    out.print(nodes)
    table = Table("service", "state", "address", "detail", title="services", title_justify="left")
    table.columns[2].overflow = "fold"  # an address is never cut short
    for s in data["services"]:
        table.add_row(s["name"], s["state"], s["address"], s["detail"])
    out.print(table)
    for problem in data.get("problems") or []:
        out.print(f"problem: {problem}")
    if data.get("reclaimed"):
        out.print(f"reclaimed by AWS (spot): {', '.join(data['reclaimed'])}; `clusterkit scale "
                  "--workers N` (N: the workers it has) replaces them")  # fmt: skip
    keeper = data.get("keeper")
    if keeper:  # the local cluster: what its keeper started again
        restarts = ", ".join(f"{n} {c}x" for n, c in sorted(keeper["restarts"].items()))
        out.print(f"keeper: {'running' if keeper['alive'] else 'NOT running (`clusterkit up`)'}"
                  f"; restarts: {restarts or 'none'}", markup=False)  # fmt: skip
        for name in keeper["given_up"]:
            out.print(f"  {name}: ended too often; left down (see its log, then `clusterkit "
                      "up`)", markup=False)  # fmt: skip
    guard = data.get("idle_guard") or {}
    if data.get("provider") != "local" and guard:
        out.print(f"idle guard: {guard['line']}", markup=False)
    if data.get("cost"):
        out.print(f"cost: {data['cost']['line']}", markup=False)
    if all(_loopback(url) for url in data["endpoints"].values()):
        out.print("endpoints (loopback only; from another machine, use an SSH tunnel):")
    else:
        out.print("endpoints (private addresses: `clusterkit tunnel` reaches them through "
                  "the master)")  # fmt: skip
    for key, url in data["endpoints"].items():
        out.print(f"  {key:<17} {url}")


def _print_stopped(data: dict[str, Any]) -> None:
    """``status`` of a stopped cluster: since when, what it still costs (AWS), the fix."""
    _line(f"cluster {data['cluster']!r} · provider {data['provider']} · stopped since "
          f"{data['stopped_at']} (disks and data kept; `clusterkit start` starts it)")  # fmt: skip
    if data.get("stopped_by"):
        _line(f"stopped by {data['stopped_by']}")
    held = data.get("still_billed")
    if held and "error" in held:
        _line(f"still billed: unknown ({held['error']})")
    elif held:
        _line(f"still billed while stopped: ${held['hourly_usd']:.4f} per hour at list prices "
              f"({held['formula']}; the kit's table of {held['price_table_date']})")  # fmt: skip


@app.command(name="jobs", rich_help_panel=JOBS)
def list_jobs(as_json: JsonOpt = False) -> None:
    """The job catalog: every job and its parameters."""
    described = [catalog.describe(j) for j in catalog.list_jobs()]
    if as_json:
        _print_json(described)
        return
    for job in described:
        out.print(f"[bold]{job['name']}[/bold] ({'|'.join(job['engines'])}): {job['summary']}")
        for p in job["params"]:
            choices = f" {{{'|'.join(p['choices'])}}}" if p["choices"] else ""
            shown = (
                ",".join(map(str, p["default"])) if isinstance(p["default"], list) else p["default"]
            )
            default = f" (default {shown})" if shown not in ("", None) else ""
            out.print(
                f"    --{p['name'].replace('_', '-'):<14} {p['help']}{choices}{default}",
                markup=False,
                highlight=False,
            )


def _record_view(store: RunStore, record: RunRecord) -> dict[str, Any]:
    data = record.to_dict()
    data["artifacts"] = str(store.dir(record.id))
    data["result"] = store.read_json(record.id, "result.json")
    return data


def _print_record(data: dict[str, Any]) -> None:
    out.print(
        f"run {data['id']} · {data['job']} · [bold]{data['status']}[/bold] · "
        f"wall {human_seconds(data['wall_s'])} · "
        f"peak memory {human_bytes(data['peak_rss_bytes'])}"
    )
    if data["error"]:
        out.print(f"  error: {data['error']}")
    if data.get("rerun_of"):
        out.print(f"  rerun of: run {data['rerun_of']}")
    long_items = []
    for key, value in (data["result"] or {}).items():
        if key in ("params", "peak_rss_by_role"):
            continue
        if isinstance(value, (list, dict)) and len(str(value)) > 200:
            long_items.append(f"{key} ({len(value)})")  # too long for a line: see result.json
        else:
            out.print(f"  {key}: {value}")
    if long_items:
        out.print(f"  in result.json: {', '.join(long_items)}")
    out.print(f"  artifacts: {data['artifacts']}")


def _follow_with_progress(runs: Runs, run_id: str, *, as_json: bool) -> RunRecord:
    """Stream the run's output; on a terminal, draw the job's progress.json as a bar."""
    if not err.is_terminal:
        out_stream = sys.stderr if as_json else sys.stdout
        return runs.follow(run_id, stdout=out_stream, stderr=sys.stderr)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=err, transient=True,
    ) as bar:  # fmt: skip
        task: TaskID | None = None

        def draw() -> None:
            nonlocal task
            current = progress(runs.store, run_id)
            if current is None:
                return
            if task is None:
                task = bar.add_task(current["unit"], total=current["total"])
            bar.update(task, completed=current["done"], total=current["total"])

        # inside Progress, sys.stdout and sys.stderr print above the bar
        return runs.follow(run_id, stdout=sys.stderr if as_json else sys.stdout,
                           stderr=sys.stderr, on_tick=draw)  # fmt: skip


class _JobHelp(TyperCommand):
    """``run``'s parsing: ``run JOB --help`` describes JOB (its parameters, their defaults,
    its engines) instead of ``run``'s own help, which ``run --help`` keeps."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        job = None if ctx.resilient_parsing else self._job_asked_about(args)
        if job is not None:
            _print_job_help(catalog.find_job(job))
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def _job_asked_about(self, args: list[str]) -> str | None:
        """The JOB of ``run [OPTIONS] JOB ... --help``: the first word that is neither an
        option nor an option's value (None without --help before any ``--``)."""
        words = args[: args.index("--")] if "--" in args else args
        if "--help" not in words:
            return None
        valued = {name for p in self.params if p.param_type_name == "option"
                  and not getattr(p, "is_flag", False) for name in p.opts}  # fmt: skip
        after_option = False
        for word in words:
            if not after_option and not word.startswith("-"):
                return word
            after_option = word in valued
        return None


def _kind_text(param: Param) -> str:
    """A parameter's type as `run JOB --help` shows it."""
    if param.kind == "choice":
        return " | ".join(param.choices)
    if param.kind == "choices":
        return f"list of {' | '.join(param.choices)}"
    return param.kind


def _print_job_help(job: Job) -> None:
    """A job's description, its engines, and a table of its parameters with their defaults."""
    _line(f"Usage: clusterkit run {job.name} [--PARAMETER VALUE ...] [OPTIONS]")
    _line("")
    _line(job.summary)
    engines = "|".join(job.engines)
    _line(f"engines: {engines} (--engine)" if len(job.engines) > 1 else f"engine: {engines}")
    _line("")
    if not job.params:
        _line("parameters: none")
    else:
        # on a narrow terminal every column wraps (a long word is folded), none is cut short
        table = Table(Column("parameter", no_wrap=True), Column("type", overflow="fold"),
                      Column("default", overflow="fold"), Column("help", min_width=20),
                      box=None, pad_edge=False)  # fmt: skip
        for p in job.params:
            flag = f"--{p.name.replace('_', '-')}"
            if p.kind == "bool":
                flag += f"/--no-{p.name.replace('_', '-')}"
            table.add_row(Text(flag), Text(_kind_text(p)),
                          Text(catalog.default_text(p) or "-"), Text(p.help))  # fmt: skip
        out.print(table)
    _line("")
    _line("run's own options (--cluster, --detach, --json, ...): clusterkit run --help")


@app.command(cls=_JobHelp, context_settings=EXTRA_ARGS, rich_help_panel=JOBS)
def run(
    ctx: typer.Context,
    job: Annotated[
        str,
        typer.Argument(
            help="a job from `clusterkit jobs` (`run JOB --help`: its parameters)",
            autocompletion=_job_names,
        ),
    ],
    cluster_name: ClusterOpt = None,
    detach: Annotated[bool, typer.Option(help="return at once with the run id")] = False,
    metrics: Annotated[bool, typer.Option(help="sample memory and CPU while it runs")] = True,
    spark_session: SparkSessionOpt = SparkSession.warm,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help=("job output to stderr; stdout carries only the finished run's record")
        ),
    ] = False,
) -> None:
    """Run a job on the cluster's driver host, streaming its output; JOB --param value ..."""
    _run_job(job, list(ctx.args), cluster_name=cluster_name, detach=detach, metrics=metrics,
             as_json=as_json, spark_session=spark_session.value,
             after=_bench_report if job == "bench" else None)  # fmt: skip


#: What runs once a followed run is final: (keys added to its --json record, lines printed)
After = Callable[[RunStore, RunRecord], tuple[dict[str, Any], list[str]]]


def _run_job(
    job: str,
    args: list[str],
    *,
    cluster_name: str | None,
    detach: bool,
    metrics: bool,
    as_json: bool,
    spark_session: str = "warm",
    after: After | None = None,
) -> None:
    """Check the job's parameters (a refusal is recorded), submit it, follow it to the end."""
    target = open_or_why(cluster_name)

    def start() -> RunRecord:
        try:
            return submit_job(job, args, cluster=target, metrics=metrics,
                              spark_session=spark_session)  # fmt: skip
        except ParamsRefused as exc:
            if exc.run_id:
                err.print(f"[dim]recorded as run {exc.run_id} (failed)[/dim]")
            raise

    _start_and_follow(target, start, detach=detach, as_json=as_json, after=after)


def _start_and_follow(target: Cluster | NoCluster, start: Callable[[], RunRecord], *,
                      detach: bool, as_json: bool, after: After | None = None) -> None:  # fmt: skip
    """Start a run, then print its id (``detach``) or follow it to the end, cancelling it on
    Ctrl-C; exit 1 unless it succeeded. ``after`` runs once a followed run is final (not
    when it was interrupted): its keys go into the --json record, its lines are printed
    after the record (on stderr with --json)."""
    stop = _StopSignals()  # the first signal while the run is made waits until it exists
    try:
        record = start()
        assert isinstance(target, Cluster)  # else start raised why there is none
        runs = target.runs()
        if detach and not stop.stopped:
            _print_json(_record_view(runs.store, record)) if as_json else out.print(record.id)
            if record.final and record.status != "succeeded":  # it failed before it started
                raise ClusterkitError(f"run {record.id} {record.status}: {record.error}")
            return
        if not record.final:
            try:
                stop.arm()  # from here the first signal raises; one that came already does
                _quietly(err.print, f"[dim]run {record.id} ({record.job}) started; Ctrl-C "
                                    "cancels it[/dim]")  # fmt: skip
                record = _follow_with_progress(runs, record.id, as_json=as_json)
            except (KeyboardInterrupt, OSError) as exc:
                if isinstance(exc, OSError) and not stop.stopped:
                    raise
                # cancelled first: after a hangup the terminal cannot be written to
                stop.disarm()
                record = runs.cancel(record.id, reason=f"interrupted ({stop.why})")
                _quietly(err.print, f"cancelled run {record.id} ({stop.why})")
        view = _record_view(runs.store, record)
        extra, lines = after(runs.store, record) if after and not stop.stopped else ({}, [])
    finally:
        stop.restore()
        if isinstance(target, Cluster):
            target.close()
    _print_json(view | extra) if as_json else _print_record(view)
    for line in lines:
        _quietly(err.print, line, markup=False) if as_json else _line(line)
    if record.status != "succeeded":
        raise ClusterkitError(f"run {record.id} {record.status}: {record.error}")


@app.command(context_settings=EXTRA_ARGS, rich_help_panel=JOBS)
def submit(
    ctx: typer.Context,
    script: Annotated[Path, typer.Argument(help="your Python script (FILE.py)")],
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="its working folder (default: the script's), copied to a remote "
            "master without .git and .venv"
        ),
    ] = None,
    requirements: Annotated[
        Path | None,
        typer.Option(help="a requirements file, installed into an environment of the run's own"),
    ] = None,
    spark_session: SparkSessionOpt = SparkSession.warm,
    cluster_name: ClusterOpt = None,
    detach: Annotated[bool, typer.Option(help="return at once with the run id")] = False,
    metrics: Annotated[bool, typer.Option(help="sample memory and CPU while it runs")] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="print the run record as JSON on stdout")
    ] = False,
) -> None:
    """Run your own script on the cluster's driver node as a recorded run: FILE.py [-- ARGS].

    SPARK_REMOTE, RAY_ADDRESS (with Ray's token) and CLUSTERKIT_STORAGE are set, so
    SparkSession.builder.getOrCreate() and ray.init() join the cluster. Scripts that use
    sparkContext or RDDs need --spark-session classic (spark-submit)."""
    target = open_or_why(cluster_name)
    remote = not isinstance(target, NoCluster) and not target.driver().local
    plan = plan_script(script, workdir=workdir, requirements=requirements, copied=remote)
    args = list(ctx.args)  # after `--`, or any word submit does not know

    def start() -> RunRecord:
        if isinstance(target, NoCluster):
            raise target
        return submit_script(target, plan, args, spark_session=spark_session.value,
                             metrics=metrics)  # fmt: skip

    _start_and_follow(target, start, detach=detach, as_json=as_json)


@app.command(rich_help_panel=JOBS)
def bench(
    jobs: Annotated[str | None, typer.Option(help="comma-separated jobs")] = None,
    engines: Annotated[str | None, typer.Option(help="comma-separated engines")] = None,
    sizes: Annotated[str | None, typer.Option(help="comma-separated row counts")] = None,
    repeats: Annotated[int | None, typer.Option(help="runs per job, engine and size")] = None,
    profile: Annotated[str | None, typer.Option(help="datagen's profile")] = None,
    cluster_name: ClusterOpt = None,
    detach: Annotated[bool, typer.Option(help="return at once with the run id")] = False,
    spark_session: SparkSessionOpt = SparkSession.warm,
    as_json: JsonOpt = False,
) -> None:
    """Compare engines: jobs x engines x sizes, each run recorded; Markdown + CSV table.

    The same as `clusterkit run bench ...`; an option left out takes the bench job's default
    (`clusterkit jobs` lists them)."""
    given = {"jobs": jobs, "engines": engines, "sizes": sizes, "repeats": repeats,
             "profile": profile}  # fmt: skip
    args = [a for k, v in given.items() if v is not None for a in (f"--{k}", str(v))]
    _run_job("bench", args, cluster_name=cluster_name, detach=detach, metrics=True,
             as_json=as_json, spark_session=spark_session.value,
             after=_bench_report)  # fmt: skip


def _bench_report(store: RunStore, record: RunRecord) -> tuple[dict[str, Any], list[str]]:
    """The report of a finished bench, written beside its table (``report.html`` in its run
    folder as read here); a report that cannot be written is said, never an error: the
    bench's record is printed and its status decides the exit code."""
    from clusterkit.report import report_run

    try:
        written = report_run(store, record, made=f"made {now_iso()} by {_version_text()}")
    except Exception as exc:  # a full disk, a folder in the way, a figure that would not draw
        return {}, [f"report not written: {type(exc).__name__}: {exc}"]
    return {"report": str(written.html)}, [f"report: {written.html}"]


def _runs_of(cluster_name: str | None, *, cached: bool) -> tuple[Runs | None, RunStore]:
    """The cluster's runs (None when it is down or ``cached``) and its store, brought up to
    date from the cluster unless ``cached`` (a remote cluster's runs are the master's; a
    cluster that is down has its copies here)."""
    target, store = run_store(cluster_name)
    if target is None or cached:
        return None, store
    try:
        store.refresh()
    except ClusterkitError as exc:
        raise ClusterkitError(f"{exc}; the copies kept here: add --cached") from exc
    return target.runs(), store


CachedOpt = Annotated[
    bool, typer.Option("--cached", help="do not ask a remote cluster; use the copies here")
]


@app.command(name="runs", rich_help_panel=JOBS)
def list_runs(
    cluster_name: ClusterOpt = None, cached: CachedOpt = False, as_json: JsonOpt = False
) -> None:
    """The runs of the cluster, oldest first."""
    runs, store = _runs_of(cluster_name, cached=cached)
    records = [runs.reap_if_orphaned(r) if runs else r for r in store.all()]
    if as_json:
        _print_json([r.to_dict() for r in records])
        return
    table = Table("id", "job", "status", "wall", "peak memory", "error")
    for r in records:
        table.add_row(
            r.id,
            r.job,
            r.status,
            human_seconds(r.wall_s),
            human_bytes(r.peak_rss_bytes),
            (r.error or "")[:60],
        )
    out.print(table)


@app.command(rich_help_panel=JOBS)
def logs(
    run_id: Annotated[str, typer.Argument(help="run id, a unique prefix, or latest")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep printing")] = False,
    cluster_name: ClusterOpt = None,
    cached: CachedOpt = False,
) -> None:
    """Print a run's output (stdout, then stderr as it was written); with --follow, until
    the run ends (on a remote cluster this reattaches to a run started anywhere)."""
    runs, store = _runs_of(cluster_name, cached=cached)
    record = store.get(run_id)
    if runs is not None:
        runs.follow(record.id, stdout=sys.stdout, stderr=sys.stderr, until_final=follow)
        return
    for name, text in LogTail(store, record.id).read():  # the copies here, as they are
        (sys.stdout if name == "stdout.log" else sys.stderr).write(text)


@app.command(rich_help_panel=JOBS)
def cancel(
    run_id: Annotated[str, typer.Argument(help="run id, a unique prefix, or latest")],
    cluster_name: ClusterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop a running job; its processes on every node are ended."""
    target = open_cluster(cluster_name)
    try:
        runs = target.runs()
        runs.store.refresh()
        before = runs.store.get(run_id)
        if before.final:
            raise RunNotFound(f"run {before.id} is already {before.status}; nothing to cancel")
        record = runs.cancel(before.id)
    finally:
        target.close()
    _print_json(_record_view(runs.store, record)) if as_json else out.print(
        f"run {record.id} {record.status}"
    )


def _flag(name: str, value: Any) -> str:
    """A parameter as typed: ``--rows=2000``, ``--overwrite``, ``--no-overwrite``,
    ``--sizes=1000,2000``."""
    flag = name.replace("_", "-")
    if isinstance(value, bool):
        return f"--{flag}" if value else f"--no-{flag}"
    shown = ",".join(map(str, value)) if isinstance(value, list) else value
    return f"--{flag}={shown}"


@app.command(context_settings=EXTRA_ARGS, rich_help_panel=JOBS)
def rerun(
    ctx: typer.Context,
    run_ref: Annotated[
        str,
        typer.Argument(
            help="the run to repeat: an id, a unique prefix or latest",
            metavar="RUN",
            show_default=False,
        ),
    ],
    cluster_name: ClusterOpt = None,
    detach: Annotated[bool, typer.Option(help="return at once with the new run's id")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="job output to stderr; stdout carries only the finished run's record"
        ),
    ] = False,
) -> None:
    """Run RUN's job again with its parameters, engine and Spark session; the new run's
    record notes `rerun_of`, and once it ends, whether its result checksum equals RUN's.
    `--param value` after RUN changes one (e.g. --overwrite)."""
    target = open_or_why(cluster_name)
    plans: list[Rerun] = []

    def start() -> RunRecord:
        plan, record = rerun_job(run_ref, list(ctx.args), cluster=target, name=cluster_name)
        plans.append(plan)
        changed = " ".join(_flag(name, value) for name, value in plan.changed.items())
        _quietly(err.print, f"run {record.id} reruns run {plan.original.id} ({plan.job}"
                            f"{', with ' + changed if changed else ''})", markup=False)  # fmt: skip
        return record

    def checksums(store: RunStore, record: RunRecord) -> tuple[dict[str, Any], list[str]]:
        original = plans[0].original
        check = check_checksums(original, store.read_json(original.id, "result.json"),
                                record, store.read_json(record.id, "result.json"))  # fmt: skip
        return {"checksum_check": check.to_dict()}, [check.text()]

    _start_and_follow(target, start, detach=detach, as_json=as_json, after=checksums)


@app.command(rich_help_panel=JOBS)
def report(
    run_refs: Annotated[
        list[str] | None,
        typer.Argument(
            help="runs: ids, unique prefixes or latest (two or more side by side)",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
    bench: Annotated[
        list[Path] | None,
        typer.Option(
            "--bench",
            help="a bench result: the result.json of `clusterkit bench`, "
            "its --json output, or benchmarks/results/engines.json (repeatable)",
            metavar="FILE",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="the HTML page; its PNG figures go beside it")
    ] = Path("report.html"),
    cluster_name: ClusterOpt = None,
    cached: CachedOpt = False,
) -> None:
    """One HTML page with PNG figures beside it: per run, wall time by stage and each node's
    memory over time (plus the search of `train`, the learning curves of `lenet`); per bench,
    the engines compared with the source project's published figures."""
    from clusterkit.report import read_bench, read_run, write_report

    if not run_refs and not bench:
        raise BadInput("nothing to report: give a run (an id, a unique prefix or latest) or "
                       "--bench FILE; e.g. `clusterkit report latest`")  # fmt: skip
    benches = [read_bench(path) for path in bench or []]
    runs = []
    if run_refs:
        _, store = _runs_of(cluster_name, cached=cached)
        records = list({r.id: r for r in (store.get(ref) for ref in run_refs)}.values())
        runs = [read_run(record, store.dir(record.id)) for record in records]
    if output.is_dir():
        output = output / "report.html"
    try:
        written = write_report(runs, benches, output,
                               made=f"made {now_iso()} by {_version_text()}")  # fmt: skip
    except OSError as exc:
        raise BadInput(f"cannot write the report {output}: {exc.strerror or exc}; choose "
                       "another -o") from exc  # fmt: skip
    count = len(written.pngs)
    _line(f"report: {written.html} ({count} figure{'' if count == 1 else 's'} beside it)")
    for missing in written.missing:
        _line(f"  not drawn: {missing}")


NodeOpt = Annotated[str | None, typer.Option("--node", help="only this node (default: all)")]


@app.command(name="ssh", context_settings=EXTRA_ARGS, rich_help_panel=NODES)
def ssh_command(
    ctx: typer.Context,
    node: Annotated[str, typer.Argument(help="a node's name, or master or worker")] = "master",
    cluster_name: ClusterOpt = None,
) -> None:
    """A shell on a node (the worker through the master; on the local provider, this
    machine); NODE -- CMD runs CMD on a terminal there."""
    target = open_cluster(cluster_name)
    try:
        code = operate.shell(target, node, list(ctx.args) or None)
    finally:
        target.close()
    if code:
        raise typer.Exit(code)


@app.command(name="exec", rich_help_panel=NODES)
def exec_command(
    command: Annotated[list[str], typer.Argument(help="the shell command (quote it, or after --)")],
    node: NodeOpt = None,
    timeout: Annotated[float | None, typer.Option(help="seconds before a node is given up")] = None,
    cluster_name: ClusterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a command on every node at once, each line prefixed by its node; exit 1 if any
    node fails."""
    target = open_cluster(cluster_name)
    width = max(len(r.node.name) for r in target.runners(node))
    lines: list[dict[str, str]] = []

    def show(name: str, stream: str, line: str) -> None:
        if as_json:
            lines.append({"node": name, "stream": stream, "line": line})
            return
        (out if stream == "out" else err).print(f"[{name:<{width}}] {line}", markup=False,
                                                soft_wrap=True)  # fmt: skip

    try:
        results = operate.exec_on_nodes(target, " ".join(command), on_line=show, node=node,
                                        timeout_s=timeout)  # fmt: skip
    finally:
        target.close()
    if as_json:
        _print_json({"results": [asdict(r) for r in results], "output": lines})
    failed = [r for r in results if r.exit_code != 0]
    for r in failed:
        if r.error:
            err.print(f"error: {r.error}", markup=False)
    if failed:
        what = ", ".join(
            f"{r.node} ({'unreachable' if r.exit_code is None else f'exit {r.exit_code}'})"
            for r in failed
        )
        raise ClusterkitError(f"the command failed on {what}")


@app.command(rich_help_panel=NODES)
def copy(
    source: Annotated[Path, typer.Argument(help="a file or folder on this machine")],
    destination: Annotated[str, typer.Argument(help="where on the nodes")],
    node: NodeOpt = None,
    cluster_name: ClusterOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a file or folder to every node (into DESTINATION when it is a folder there)."""
    target = open_cluster(cluster_name)
    try:
        written = operate.copy_to_nodes(target, source, destination, node=node)
    finally:
        target.close()
    if as_json:
        _print_json(written)
        return
    for name, paths in written.items():
        out.print(f"[{name}] {len(paths)} file(s): {', '.join(paths[:3])}"
                  f"{' ...' if len(paths) > 3 else ''}", markup=False)  # fmt: skip


@app.command(rich_help_panel=CLUSTER)
def tunnel(cluster_name: ClusterOpt = None) -> None:
    """Forward the dashboards and the Spark Connect server to 127.0.0.1 through the master
    until Ctrl-C."""
    target = open_cluster(cluster_name)
    with contextlib.closing(target), operate.tunnels(target) as opened:
        for t in opened:
            out.print(f"  {t.name:<17} {t.local_url}   (-> {t.remote})", markup=False,
                      soft_wrap=True)  # fmt: skip
        out.print(f"the Ray dashboard asks for the cluster's token: {target.paths.ray_token}",
                  soft_wrap=True)  # fmt: skip
        out.print("Spark Connect asks for its token: set SPARK_CONNECT_AUTHENTICATE_TOKEN to the "
                  f"contents of {target.paths.spark_connect_token}", soft_wrap=True)  # fmt: skip
        out.print("forwarding; Ctrl-C to stop")
        sys.stdout.flush()
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            out.print("tunnels closed")


@app.command(rich_help_panel=JOBS)
def notebook(
    cluster_name: ClusterOpt = None,
    port: Annotated[int, typer.Option(help="its port on the driver node (and here)")] = 8888,
    root_dir: Annotated[
        str | None,
        typer.Option(
            "--dir",
            help="its notebooks' folder on the driver node "
            "(default: the cluster's notebooks folder there)",
        ),
    ] = None,
    stop: Annotated[
        bool, typer.Option("--stop", help="stop the cluster's notebook server and exit")
    ] = False,
) -> None:
    """JupyterLab on the driver node until Ctrl-C (or `down`): loopback only, a random token,
    kernels with SPARK_REMOTE, Ray's settings and CLUSTERKIT_STORAGE preset."""
    from clusterkit.notebook import notebook as start_notebook
    from clusterkit.notebook import stop_notebook, wait_stopped

    target = open_cluster(cluster_name)
    if stop:
        with contextlib.closing(target):
            stopped = stop_notebook(target)
        out.print("notebook server stopped" if stopped else "no notebook server was running")
        return
    signal.signal(signal.SIGTERM, _interrupt)  # stopped as by Ctrl-C: the server goes too
    with contextlib.closing(target), start_notebook(target, port=port, root_dir=root_dir,
                                                    say=_say) as running:  # fmt: skip
        out.print(f"  {running.local_url}", markup=False, soft_wrap=True)
        out.print("open it in a browser on this machine; Ctrl-C stops the server and its kernels")
        sys.stdout.flush()
        try:
            wait_stopped(target)
            out.print("the notebook server stopped (the cluster went down)")
        except KeyboardInterrupt:
            out.print("stopping the notebook server")


@app.command(rich_help_panel=DIAGNOSE)
def doctor(
    cluster_name: ClusterOpt = None,
    as_json: JsonOpt = False,
    runbook: Annotated[
        str | None,
        typer.Option(
            "--vars",
            metavar="RUNBOOK",
            autocompletion=lambda incomplete: [r for r in RUNBOOKS if r.startswith(incomplete)],
            help="print the values RUNBOOK's steps act on, as NAME=value lines for "
            '`eval "$(clusterkit doctor --vars RUNBOOK)"`; exit 1 when no finding names it',
        ),
    ] = None,
    drift: Annotated[
        bool,
        typer.Option(
            "--drift",
            help="also run the playbooks in check mode on a remote cluster "
            "(a minute or more): what a provision would change",
        ),
    ] = False,
) -> None:
    """Check this machine and the cluster: one line per check (OK, WARN or FAIL), what it
    saw and the runbook to follow (docs/runbooks/); exit 1 on any FAIL. With no cluster
    known, the ports and Java checked are the spec's ($CLUSTERKIT_SPEC, else ./clusterkit.yaml
    if there is one). See docs/doctor.md."""
    if as_json and runbook is not None:
        raise BadInput("give --json or --vars, not both")
    if runbook is not None and runbook not in RUNBOOKS:
        raise BadInput(f"--vars {runbook!r}: no such runbook; one of {', '.join(RUNBOOKS)}")
    try:
        spec = load_spec(None)  # what `up` would read: checked when no cluster is known
    except ClusterkitError as exc:
        spec = None
        _say(f"{exc}; the default spec's ports and Java are checked")
    report = run_doctor(None, name=cluster_name, spec=spec,
                        checks=with_drift(CHECKS) if drift else None)  # fmt: skip
    if runbook is not None:
        found = shell_vars(report, runbook)
        if found is None:  # `false`: an eval of it fails (and stops a `set -e` script)
            sys.stdout.write(f"{UNSET}\nfalse\n")
            err.print(f"doctor: no finding names runbook {runbook} (nothing of it to do now; "
                      "`clusterkit doctor` lists what it found)", markup=False)  # fmt: skip
            raise typer.Exit(1)
        sys.stdout.write(found + "\n")  # as it is: no console markup or emoji codes
        raise typer.Exit(0)
    if as_json:
        _print_json(report.to_json())
    else:
        for line in render_lines(report):
            print(line)
    raise typer.Exit(report.exit_code)


@app.command(name="env", rich_help_panel=CLUSTER)
def env_command(
    cluster_name: ClusterOpt = None,
    shell: Annotated[bool, typer.Option("--shell", help="as `export` lines for eval")] = False,
    spark_session: SparkSessionOpt = SparkSession.warm,
    as_json: JsonOpt = False,
) -> None:
    """What your own code on the driver node needs to reach the cluster: RAY_ADDRESS and Ray's
    token, SPARK_CONF_DIR (with the Spark RPC secret), CLUSTERKIT_STORAGE, and SPARK_REMOTE
    (warm) or MASTER (classic: for `spark-submit` by hand). `eval "$(clusterkit env --shell)"`
    on the driver node. Without --shell, also the cluster's versions and its lock: the pinned
    package set, its hash, and each node's installed packages' hash, read on the nodes now."""
    target = open_cluster(cluster_name)
    with contextlib.closing(target):
        session = spark_session.value
        env, exports = target.user_env(session), target.user_exports(session)
        where = target.state.inventory.driver()
        remote = target.state.provider != "local"
        found = None if shell else target.read_environment()
    if shell:
        if remote:
            out.print(f"# on the driver node: `clusterkit ssh {where.name}`, then eval these",
                      markup=False)  # fmt: skip
        for line in exports:
            out.print(line, markup=False, soft_wrap=True)
        return
    assert found is not None
    if as_json:
        _print_json({"variables": env, **found})
        return
    for key, value in sorted(env.items()):
        out.print(f"{key}={value}", markup=False, soft_wrap=True)
    for line in _environment_lines(where.name, found["versions"], found["lock"]):
        _line(line)


def _environment_lines(driver: str, versions: dict[str, Any], lock: dict[str, Any]) -> list[str]:
    """``clusterkit env``'s lines of the cluster's versions and lock."""
    commit = f" (commit {versions['commit']})" if versions.get("commit") else ""
    shown = ", ".join(f"{key} {value}{commit if key == 'clusterkit' else ''}"
                      for key, value in versions.items()
                      if key != "commit" and value is not None)  # fmt: skip
    lines = [
        "",
        f"versions on {driver}: {shown or 'not read'}",
        f"lock: {len(lock['packages'])} pinned packages, hash {lock['hash'][:12]}",
    ]
    width = max((len(name) for name in lock["nodes"]), default=0)
    for name, node in lock["nodes"].items():
        if node["hash"] is None:
            lines.append(f"  {name:<{width}}  not read: {node.get('error')}")
            continue
        meets = ("meets the pinned set" if node["matches"]
                 else f"does not meet the pinned set: {', '.join(node['unmet'])}")  # fmt: skip
        lines.append(f"  {name:<{width}}  installed {node['hash'][:12]}  {meets}")
    if len(lock["nodes"]) > 1:
        lines.append("every node has the same installed packages" if lock["same"] else
                     "the nodes' installed packages differ: `clusterkit provision` installs "
                     "the pinned set again")  # fmt: skip
    return lines


@app.command(rich_help_panel=CLUSTER)
def tui(cluster_name: ClusterOpt = None) -> None:
    """A live console: nodes, services, jobs (submit, follow, cancel), runs compared."""
    from clusterkit import tui as console

    console.run(cluster_name)


@app.command(rich_help_panel=CLUSTER)
def clusters(as_json: JsonOpt = False) -> None:
    """Known clusters; the one commands act on is marked * ($CLUSTERKIT_CLUSTER, else the
    current one)."""
    contexts = Contexts()
    chosen = contexts.chosen()
    rows = [
        {
            "name": n,
            "current": n == chosen,
            "state_dir": str(p),
            "up": (p / "cluster.json").exists(),
        }
        for n, p in sorted(contexts.clusters().items())
    ]
    if as_json:
        _print_json(rows)
        return
    if not rows:
        _line("no clusters yet: run `clusterkit up`")
    for r in rows:
        out.print(
            f"{'*' if r['current'] else ' '} {r['name']:<12} "
            f"{'up' if r['up'] else 'down':<5} {r['state_dir']}"
        )
    if os.environ.get(CLUSTER_ENV):
        unknown = "" if chosen in contexts.clusters() else ", a cluster not known here"
        _say(f"{CLUSTER_ENV}={chosen} picks the cluster in this shell{unknown}")


@app.command(rich_help_panel=CLUSTER)
def use(
    name: Annotated[
        str,
        typer.Argument(help="a cluster from `clusterkit clusters`", autocompletion=_cluster_names),
    ],
) -> None:
    """Make NAME the current cluster ($CLUSTERKIT_CLUSTER, when set, still comes first)."""
    Contexts().use(name)
    out.print(f"current cluster: {name}")
    chosen = os.environ.get(CLUSTER_ENV)
    if chosen and chosen != name:
        _say(f"{CLUSTER_ENV}={chosen} still picks the cluster in this shell; unset it to act "
             f"on {name}")  # fmt: skip


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP stop a foreground run alike (a signal set to be ignored, as
    by ``nohup`` or for a shell's background job, stays ignored). Until :meth:`arm`, the first
    is only noted (``why`` names it; the run is being made and cannot be cancelled yet) and a
    second raises KeyboardInterrupt; once armed, the first raises. Any later one is absorbed
    (the cancel it asks for is under way)."""

    NAMES: ClassVar[dict[int, str]] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM",
                                       signal.SIGHUP: "SIGHUP"}  # fmt: skip

    def __init__(self) -> None:
        self.why: str | None = None
        self._armed = self._raised = False
        self._previous = {sig: signal.signal(sig, self._handle) for sig in self.NAMES
                          if signal.getsignal(sig) is not signal.SIG_IGN}  # fmt: skip

    @property
    def stopped(self) -> bool:
        """Whether a stop signal came."""
        return self.why is not None

    def _handle(self, signum: int, _frame: Any) -> None:
        if self._raised:
            return
        first = self.why is None
        if first:
            self.why = self.NAMES.get(signum, f"signal {signum}")
        if self._armed or not first:
            self._raised = True
            raise KeyboardInterrupt(self.why)

    def arm(self) -> None:
        """Raise on the first signal from now on (at once, when one came already)."""
        self._armed = True
        if self.stopped and not self._raised:
            self._raised = True
            raise KeyboardInterrupt(self.why)

    def disarm(self) -> None:
        """Absorb every signal from now on."""
        self._raised = True

    def restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _quietly(write: Callable[..., Any], *args: Any, **options: Any) -> None:
    """Write to the terminal, if it is still there (after a hangup it is not)."""
    with contextlib.suppress(OSError):
        write(*args, **options)


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app and map errors to exit codes (0 ok, 1 failed, 2 bad input)."""
    try:
        # prog_name: usage lines, and the completion's variable _CLUSTERKIT_COMPLETE, under
        # any argv[0] (`python -m clusterkit.cli` too)
        code = app(args=argv, standalone_mode=False, prog_name="clusterkit")
    except ClusterkitError as exc:
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        return 1
    # typer (0.29+) carries its own copy of click: its usage errors are TyperExceptions
    except (click.ClickException, typer.TyperException) as exc:
        show = getattr(exc, "show", None)
        show() if show is not None else err.print(f"error: {exc}", markup=False)
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 1
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
