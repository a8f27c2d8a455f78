"""What a report draws, read from a run folder or a bench file into plain dataclasses.

Reading is lenient where the kit's own files may be partial (a failed run has no
``result.json``; a run started with ``--no-metrics`` has no samples; a line of
``metrics.jsonl`` being written is cut short) and strict where the user named a file:
:func:`read_bench` raises :class:`~clusterkit.core.errors.BadInput` naming the file when it
is not a bench result. Nothing here draws or writes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from clusterkit.core.errors import BadInput
from clusterkit.core.records import RunRecord
from clusterkit.runs.compare import NOT_PUBLISHED, Row, published
from clusterkit.runs.epochs import EPOCHS_FILE, Epoch, epochs_of

#: The key of a run record's environment block (Python, Spark, Ray, Java, node sizes...)
#: once records carry one: :func:`environment_of` reads it, and
#: :func:`compare_environments` says whether the runs' environments differ.
ENVIRONMENT_KEY = "environment"
METRICS_FILE = "metrics.jsonl"
STAGES_FILE = "stages.json"
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class Sample:
    """One memory sample of one node (``metrics.jsonl``): seconds since the run started,
    the run's processes' RSS on that node and the node's memory used (None if not sampled)."""

    node: str
    t: float
    run_rss_bytes: int | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None


@dataclass(frozen=True)
class Trial:
    """One point of the salary model's search (``result.json``'s ``trial_results``)."""

    label: str
    model: str
    cv_mse: float
    fold_mse: tuple[float, ...]
    best: bool


@dataclass
class Bench:
    """A bench's table: where it came from (a file or a run), its rows, and how it was
    measured when the file says (commit, date, command)."""

    source: str
    rows: list[Row]
    measured: str = ""


@dataclass
class RunData:
    """A run as a report sees it: its record and what its folder holds.

    ``stages`` are the job's own timed stages (``result.json``, else the ``stages.json`` a
    run that stopped early left); ``samples`` every node's memory samples, oldest first;
    ``trials`` the salary model's search, ``epochs`` a training run's epochs (both empty for
    other jobs); ``bench`` the table of a ``bench`` run; ``environment`` the record's
    environment block (None until records carry one); ``missing`` why a file the report would
    draw from could not be used, by what it is (``"metrics"``, ``"stages"``...)."""

    record: RunRecord
    folder: Path
    result: dict[str, Any] | None
    stages: dict[str, float] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    trials: list[Trial] = field(default_factory=list)
    epochs: list[Epoch] = field(default_factory=list)
    bench: Bench | None = None
    environment: dict[str, Any] | None = None
    missing: dict[str, str] = field(default_factory=dict)


def read_run(record: RunRecord, folder: Path) -> RunData:
    """Everything a report draws for ``record``, from its folder (a run store's folder of
    this machine: for a remote cluster, the copy of the master's). Never raises for what the
    folder lacks: that goes into ``missing``."""
    result = _json_object(folder / RESULT_FILE)
    data = RunData(record=record, folder=folder, result=result)
    data.environment = environment_of(_json_object(folder / "record.json") or {})
    data.stages = _stages(result, _json_object(folder / STAGES_FILE))
    if not data.stages:
        data.missing["stages"] = (
            "the run recorded no stages (it ended before its first one)"
            if record.final else "no stage has finished yet (the run is " + record.status + ")"
        )  # fmt: skip
    data.samples, why = _samples(record, folder)
    if why:
        data.missing["metrics"] = why
    data.trials = trials_of((result or {}).get("trial_results"))
    if record.job == "train" and not data.trials:
        data.missing["search"] = (
            "result.json has no trial_results" if result is not None
            else "the run has no result.json (it did not finish)"
        )  # fmt: skip
    raw_epochs = (result or {}).get("epochs")
    if raw_epochs is None:
        raw_epochs = _json_any(folder / EPOCHS_FILE)
    data.epochs = epochs_of(raw_epochs)
    if record.job == "lenet" and not data.epochs:
        data.missing["epochs"] = "neither result.json nor epochs.json holds an epoch"
    if record.job == "bench":
        table = (result or {}).get("table")
        if isinstance(table, list):
            data.bench = Bench(f"run {record.id}", bench_rows(table, f"run {record.id}"))
        else:
            data.missing["bench"] = "the bench run has no table in result.json (it did not finish)"
    return data


def environment_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record's environment block (``record.json``'s ``environment``), or None: no
    record carries one yet. The hook :func:`compare_environments` reads."""
    block = record.get(ENVIRONMENT_KEY)
    return dict(block) if isinstance(block, Mapping) else None


def compare_environments(environments: Sequence[dict[str, Any] | None]) -> str:
    """One sentence: whether the runs' environments differ, and in which keys; or that it
    cannot be told, naming the runs (by place) whose record has no environment block."""
    if len(environments) < 2:
        return ""
    without = [str(i) for i, env in enumerate(environments, start=1) if env is None]
    if without:
        if len(without) == len(environments):
            return ("whether the runs' environments differ is not known: their records carry "
                    f"no {ENVIRONMENT_KEY!r} block yet")  # fmt: skip
        runs = ", ".join(without)
        return (f"whether the runs' environments differ is not known: the record of run "
                f"{runs} (by column) carries no {ENVIRONMENT_KEY!r} block")  # fmt: skip
    flat = [_flatten(env or {}) for env in environments]
    keys = sorted({k for env in flat for k in env})
    differ = [k for k in keys if len({json.dumps(env.get(k), sort_keys=True) for env in flat}) > 1]
    if not differ:
        return "the runs' environments are the same"
    return "the runs' environments differ in: " + ", ".join(differ)


def _flatten(block: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in block.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def read_bench(path: Path) -> Bench:
    """A bench table from a file ``clusterkit bench`` wrote: its run's ``result.json`` (the
    ``table`` key), the record ``clusterkit bench --json`` prints (``result.table``), or a
    file of ``benchmarks/results/`` (``table``, with ``commit``, ``measured_at`` and
    ``command``). BadInput naming the file when it cannot be read or holds no table."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read the bench file {path}: {_why(exc)}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"the bench file {path} is not JSON ({exc})") from exc
    table: Any = None
    if isinstance(data, dict):
        table = data.get("table")
        if table is None and isinstance(data.get("result"), dict):
            table = data["result"].get("table")
    elif isinstance(data, list):
        table = data
    if not isinstance(table, list) or not table:
        raise BadInput(
            f"the bench file {path} holds no bench table (a 'table' of rows, as the result.json "
            "of `clusterkit bench` or `clusterkit bench --json` has)"
        )
    measured = ""
    if isinstance(data, dict):
        parts = [f"{k} {data[k]}" for k in ("commit", "measured_at") if data.get(k)]
        if data.get("command"):
            parts.append(f"command: {data['command']}")
        measured = ", ".join(parts)
    return Bench(str(path), bench_rows(table, str(path)), measured)


def bench_rows(table: Sequence[Any], source: str) -> list[Row]:
    """The rows of a bench table (``compare.Row`` as dicts) read back into ``compare.Row``;
    ``published`` is the source project's figure as the kit knows it now (not the file's
    words). BadInput naming ``source`` and the row when one lacks the job, rows or engine."""
    rows = []
    for place, item in enumerate(table, start=1):
        if not isinstance(item, dict) or not all(k in item for k in ("job", "rows", "engine")):
            raise BadInput(f"{source}: row {place} of the bench table is not a row of "
                           "`clusterkit bench` (it needs job, rows and engine)")  # fmt: skip
        try:
            size = int(item["rows"])
        except (TypeError, ValueError):
            raise BadInput(f"{source}: row {place} has rows = {item['rows']!r}, not a "
                           "number") from None  # fmt: skip
        job = str(item["job"])
        peak = _number(item.get("peak_rss_bytes"))
        rows.append(Row(
            job=job, rows=size, engine=str(item["engine"]),
            runs=int(_number(item.get("runs")) or 0), failed=int(_number(item.get("failed")) or 0),
            median_s=_number(item.get("median_s")), min_s=_number(item.get("min_s")),
            max_s=_number(item.get("max_s")),
            ratio_to_fastest=_number(item.get("ratio_to_fastest")),
            peak_rss_bytes=int(peak) if peak else None,
            published=getattr(published(job, size), "text", NOT_PUBLISHED),
            error=str(item["error"]) if item.get("error") else None,
        ))  # fmt: skip
    return rows


def trials_of(data: Any) -> list[Trial]:
    """The search's trials (``trial_results``: label, model, cv_mse, fold_mse), the best
    (lowest CV MSE) marked; those without a CV MSE are left out."""
    if not isinstance(data, list):
        return []
    found = []
    for place, item in enumerate(data, start=1):
        if not isinstance(item, dict) or _number(item.get("cv_mse")) is None:
            continue
        raw_folds = item.get("fold_mse")
        folds: list[Any] = raw_folds if isinstance(raw_folds, list) else []
        found.append((
            str(item.get("label") or f"trial {place}"), str(item.get("model") or "-"),
            float(item["cv_mse"]),
            tuple(v for v in (_number(f) for f in folds) if v is not None),
        ))  # fmt: skip
    if not found:
        return []
    best = min(range(len(found)), key=lambda i: found[i][2])
    return [Trial(label, model, cv, folds, i == best)
            for i, (label, model, cv, folds) in enumerate(found)]  # fmt: skip


def _stages(result: dict[str, Any] | None, progress: dict[str, Any] | None) -> dict[str, float]:
    """The job's stages in the order it ran them: result.json's, else stages.json's done."""
    for raw in ((result or {}).get("stages"), (progress or {}).get("done")):
        if isinstance(raw, dict) and raw:
            stages = {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items())
                      if v is not None}  # fmt: skip
            if stages:
                return stages
    return {}


def _samples(record: RunRecord, folder: Path) -> tuple[list[Sample], str]:
    """The run's memory samples, and why there are none (empty when there are)."""
    path = folder / METRICS_FILE
    if not record.metrics_enabled:
        return [], "the run was started with --no-metrics: no memory was sampled"
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return [], f"the run folder has no {METRICS_FILE} (no sample was taken)"
    except (OSError, UnicodeDecodeError) as exc:
        return [], f"{METRICS_FILE} cannot be read: {_why(exc)}"
    raw = []
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue  # a line being written, or damaged: the others still draw
        if isinstance(item, dict) and _number(item.get("t")) is not None and "node" in item:
            raw.append(item)
    if not raw:
        return [], f"{METRICS_FILE} holds no memory sample"
    start = _timestamp(record.started)
    origin = start if start is not None else min(float(s["t"]) for s in raw)
    samples = [
        Sample(node=str(s["node"]), t=float(s["t"]) - origin,
               run_rss_bytes=_int(s.get("run_rss_bytes")),
               mem_used_bytes=_int(s.get("mem_used_bytes")),
               mem_total_bytes=_int(s.get("mem_total_bytes")))
        for s in raw
    ]  # fmt: skip
    samples.sort(key=lambda s: (s.t, s.node))
    if all(s.run_rss_bytes is None and s.mem_used_bytes is None for s in samples):
        return [], f"{METRICS_FILE}'s samples have no memory figures"
    return samples, ""


def _timestamp(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        return datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return None


def _json_any(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _json_object(path: Path) -> dict[str, Any] | None:
    data = _json_any(path)
    return data if isinstance(data, dict) else None


def _number(value: Any) -> float | None:
    """A finite number (not a bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


def _why(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
