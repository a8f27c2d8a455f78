"""The job catalog: the jobs in ``jobs/`` plus any folder listed in $CLUSTERKIT_JOBS_PATH.

A job is a module with a ``JOB`` object (a :class:`~clusterkit.core.jobspec.Job`). Job
modules are plug-ins: found by name and loaded when asked for, never imported by the kit's
own modules (they import the kit, through :mod:`clusterkit.jobkit`). Names and parameters are
checked here, before a run is created, so a typo costs nothing: UnknownJob (exit 2) names
the job or parameter and lists what exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from clusterkit.core.errors import UnknownJob
from clusterkit.core.jobspec import Job, Param

JOBS_PATH_ENV = "CLUSTERKIT_JOBS_PATH"
#: The package of the built-in jobs (installed beside the kit).
BUILTIN = "jobs"
#: The order the catalog lists the built-in jobs in: the people pipeline and then the digits
#: pipeline, as ``suite`` runs them, then the jobs that run others or stand alone. A job not
#: named here (one from $CLUSTERKIT_JOBS_PATH) comes after them, by name.
ORDER = (
    "datagen", "etl", "top-earners", "age-extremes", "train", "predict",
    "datagen-digits", "digits-etl", "lenet", "predict-digits",
    "suite", "bench", "seed-paper", "ray-pi", "submit",
)  # fmt: skip


def _extra_dirs() -> list[Path]:
    raw = os.environ.get(JOBS_PATH_ENV, "")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def _load_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"clusterkit_userjob_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise UnknownJob(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _modules() -> list[ModuleType]:
    package = importlib.util.find_spec(BUILTIN)
    folders = list(package.submodule_search_locations or []) if package else []
    found = [
        importlib.import_module(f"{BUILTIN}.{info.name}")
        for info in pkgutil.iter_modules(folders)
        if not info.name.startswith("_")
    ]
    for folder in _extra_dirs():
        found += [_load_file(p) for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]
    return found


def _rank(job: Job) -> tuple[int, str]:
    return (ORDER.index(job.name) if job.name in ORDER else len(ORDER), job.name)


def list_jobs() -> list[Job]:
    """Every job in the catalog, in :data:`ORDER` (pipeline order), other jobs by name."""
    return sorted((m.JOB for m in _modules() if isinstance(getattr(m, "JOB", None), Job)),
                  key=_rank)  # fmt: skip


def find_job(name: str) -> Job:
    for job in list_jobs():
        if job.name == name:
            return job
    known = ", ".join(j.name for j in list_jobs())
    raise UnknownJob(f"unknown job {name!r}; the jobs are: {known} (see `clusterkit jobs`)")


def _usage(job: Job) -> str:
    return ", ".join(f"--{p.name.replace('_', '-')}" for p in job.params) or "no parameters"


def parse_job_args(job: Job, args: Sequence[str]) -> dict[str, Any]:
    """``--name value``, ``--name=value``, ``--flag``/``--no-flag`` into checked values.

    Returns only the parameters given; the job's defaults fill in the rest when it runs.
    """
    values: dict[str, Any] = {}
    items = list(args)
    while items:
        token = items.pop(0)
        if not token.startswith("--"):
            raise UnknownJob(
                f"unexpected argument {token!r} for job {job.name}; it takes: {_usage(job)}"
            )
        key, _, inline = token[2:].partition("=")
        name = key.replace("-", "_")
        param: Param | None = job.param(name)
        if param is None and name.startswith("no_"):
            negated = job.param(name[3:])
            if negated is not None and negated.kind == "bool" and not inline:
                values[negated.name] = False
                continue
        if param is None:
            raise UnknownJob(f"job {job.name} has no parameter --{key}; it takes: {_usage(job)}")
        if param.kind == "bool" and not inline:
            raw: Any = True
        elif inline:
            raw = inline
        elif items:
            raw = items.pop(0)
        else:
            raise UnknownJob(f"--{key} of job {job.name} needs a value ({param.help})")
        try:
            values[param.name] = param.parse(raw)
        except ValueError as exc:
            raise UnknownJob(f"--{key} of job {job.name}: {exc}") from exc
    return values


def check_params(job: Job, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters given as values (a run record's ``params``: values :meth:`Param.parse`
    returned, which parse to themselves), checked as :func:`parse_job_args` checks typed
    ones; a value equal to the default passes as it is.
    UnknownJob naming a parameter the job does not take (any more) or a value it refuses."""
    values: dict[str, Any] = {}
    for name, raw in params.items():
        param = job.param(name)
        flag = f"--{name.replace('_', '-')}"
        if param is None:
            raise UnknownJob(f"job {job.name} has no parameter {flag}; it takes: {_usage(job)}")
        if raw == param.default:
            values[name] = raw
            continue
        try:
            values[name] = param.parse(raw)
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. an int param's Infinity
            raise UnknownJob(f"{flag} of job {job.name}: {exc}") from exc
    return values


def describe(job: Job) -> dict[str, Any]:
    """A job as plain data: for `clusterkit jobs --json` and the TUI's forms."""
    return {
        "name": job.name,
        "summary": job.summary,
        "engine": job.engine,
        "engines": list(job.engines),
        "params": [
            {
                "name": p.name,
                "kind": p.kind,
                "default": p.default,
                "help": p.help,
                "choices": list(p.choices),
            }
            for p in job.params
        ],
    }


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
    for param in find_job(job).params:
        text = texts.get(param.name, "").strip()
        if text and text != default_text(param):
            args.append(f"--{param.name.replace('_', '-')}={text}")
    return args
