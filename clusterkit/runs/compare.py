"""Runs side by side: the comparison table of ``clusterkit bench`` (and the TUI's compare view),
and whether a rerun's result checksum equals its original's (:func:`check_checksums`).

A *measurement* is one finished run reduced to what is compared: the job, the engine that ran
it (the ``seed-paper`` job counts as the engine "seed-paper" of the job its script does), the
input rows, the job's own ``wall_s`` (session start included, process start excluded) and the
run's peak memory. :func:`summarise` groups measurements by (job, rows, engine): median,
min-max, ratio of the median to the fastest engine's median for that job and size, the highest
peak memory, and the source project's published figure where it published one.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from clusterkit.core.fmt import human_bytes
from clusterkit.core.records import RunRecord


@dataclass(frozen=True)
class Published:
    """A figure the source project published: its median wall time, how it was stated, and
    the range of its runs when it gave one (what ``clusterkit report`` draws beside the bars)."""

    median_s: float
    text: str
    min_s: float | None = None
    max_s: float | None = None


#: what the source project published (../shared/REFERENCE.md), by (job, rows)
PUBLISHED: dict[tuple[str, int], Published] = {
    ("etl", 30_000_000): Published(
        34.1, "34.1 s median, 30.8-71.3 s (10 runs, t2.large)", min_s=30.8, max_s=71.3
    ),
}
NOT_PUBLISHED = "none published"


def published(job: str, rows: int) -> Published | None:
    """The source project's figure for ``job`` on ``rows`` input rows, if it published one."""
    return PUBLISHED.get((job, rows))


SEED_PAPER_JOB = "seed-paper"


@dataclass(frozen=True)
class Measurement:
    run: str
    job: str
    engine: str
    rows: int
    status: str
    wall_s: float | None
    peak_rss_bytes: int | None
    error: str | None = None


def measurement(
    record: RunRecord, result: dict[str, Any] | None, *, rows: int | None = None
) -> Measurement:
    """One run as the comparison sees it (``result`` is its result.json, None if it failed;
    ``rows``, the input's size when the caller knows it, else the result's ``rows``)."""
    params = record.params
    if record.job == SEED_PAPER_JOB:
        job, engine = str(params.get("script", "etl")), SEED_PAPER_JOB
    else:
        job, engine = record.job, str(params.get("engine") or (result or {}).get("engine", "-"))
    size = rows if rows is not None else int((result or {}).get("rows") or 0)
    wall = (result or {}).get("wall_s")
    return Measurement(record.id, job, engine, size, record.status,
                       float(wall) if wall is not None else None,
                       record.peak_rss_bytes, record.error)  # fmt: skip


@dataclass
class Row:
    """One (job, rows, engine) group of the comparison table; ``published`` is the source
    project's figure for that job and size in words (:data:`NOT_PUBLISHED` when it gave none).
    A bench file's ``table`` holds these rows as dicts (``clusterkit report`` reads them back)."""

    job: str
    rows: int
    engine: str
    runs: int
    failed: int
    median_s: float | None
    min_s: float | None
    max_s: float | None
    ratio_to_fastest: float | None
    peak_rss_bytes: int | None
    published: str
    error: str | None = None

    @property
    def published_figure(self) -> Published | None:
        """The source project's figure for this row's job and size, to draw (not a field:
        the table's Markdown, CSV and JSON stay as they are)."""
        return published(self.job, self.rows)


def summarise(measurements: Iterable[Measurement], *, engines: Sequence[str] = ()) -> list[Row]:
    """The comparison rows, by job, then rows, then ``engines`` order (else first seen)."""
    groups: dict[tuple[str, int, str], list[Measurement]] = {}
    for m in measurements:
        groups.setdefault((m.job, m.rows, m.engine), []).append(m)
    rows = []
    for (job, size, engine), group in groups.items():
        ok = [m.wall_s for m in group if m.status == "succeeded" and m.wall_s is not None]
        peaks = [m.peak_rss_bytes for m in group if m.peak_rss_bytes]
        errors = [m.error for m in group if m.status != "succeeded" and m.error]
        rows.append(Row(
            job=job, rows=size, engine=engine, runs=len(ok), failed=len(group) - len(ok),
            median_s=statistics.median(ok) if ok else None,
            min_s=min(ok) if ok else None, max_s=max(ok) if ok else None,
            ratio_to_fastest=None, peak_rss_bytes=max(peaks) if peaks else None,
            published=getattr(published(job, size), "text", NOT_PUBLISHED),
            error=errors[0] if errors else None,
        ))  # fmt: skip
    for row in rows:
        peers = [r.median_s for r in rows if (r.job, r.rows) == (row.job, row.rows) and r.median_s]
        if row.median_s is not None and peers:
            row.ratio_to_fastest = row.median_s / min(peers)
    order = {e: i for i, e in enumerate(engines)}
    jobs = list(dict.fromkeys(r.job for r in rows))
    rows.sort(key=lambda r: (jobs.index(r.job), r.rows, order.get(r.engine, len(order))))
    return rows


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def markdown(rows: Sequence[Row]) -> str:
    """The table as GitHub Markdown; a failed group shows why in place of its figures."""
    lines = [
        "| job | rows | engine | runs | median s | min-max s | x fastest | peak memory "
        "| source published |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r.median_s is None:
            figures = f"failed: {r.error or 'no successful run'} | - | - | -"
        else:
            figures = (f"{_seconds(r.median_s)} | {_seconds(r.min_s)}-{_seconds(r.max_s)} | "
                       f"{r.ratio_to_fastest:.2f} | {human_bytes(r.peak_rss_bytes)}")  # fmt: skip
        runs = f"{r.runs}" + (f" (+{r.failed} failed)" if r.failed else "")
        lines.append(f"| {r.job} | {r.rows:,} | {r.engine} | {runs} | {figures} | {r.published} |")
    return "\n".join(lines) + "\n"


def to_csv(rows: Sequence[Row]) -> str:
    buffer = io.StringIO()
    fields = list(asdict(rows[0])) if rows else [f for f in Row.__dataclass_fields__]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in asdict(r).items()})
    return buffer.getvalue()


#: The key of a job's ``result.json`` that fingerprints what it wrote (datagen, etl with
#: ``--checksum``, datagen-digits, digits-etl): equal for equal outputs.
CHECKSUM_KEY = "checksum"


@dataclass(frozen=True)
class ChecksumCheck:
    """Whether run ``rerun``'s result checksum equals run ``original``'s. ``same`` is None
    when it cannot be told (``why`` says which run has no checksum, and why)."""

    original: str
    rerun: str
    original_checksum: Any
    rerun_checksum: Any
    why: str = ""

    @property
    def same(self) -> bool | None:
        if self.original_checksum is None or self.rerun_checksum is None:
            return None
        return bool(self.original_checksum == self.rerun_checksum)

    def text(self) -> str:
        """One line: ``checksum X: the same as run A's``, ``checksum X: differs from run A's
        (Y)``, or ``checksum: not compared: ...``."""
        if self.same is None:
            return f"checksum: not compared: {self.why}"
        mine = _checksum_text(self.rerun_checksum)
        if self.same:
            return f"checksum {mine}: the same as run {self.original}'s"
        return (f"checksum {mine}: differs from run {self.original}'s "
                f"({_checksum_text(self.original_checksum)})")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"original": self.original, "rerun": self.rerun,
                "original_checksum": self.original_checksum,
                "rerun_checksum": self.rerun_checksum, "same": self.same,
                "text": self.text()}  # fmt: skip


def check_checksums(
    original: RunRecord,
    original_result: dict[str, Any] | None,
    rerun: RunRecord,
    rerun_result: dict[str, Any] | None,
) -> ChecksumCheck:
    """Compare the ``checksum`` of two runs' ``result.json`` (None: the run wrote none)."""
    values, reasons = [], []
    for record, result in ((original, original_result), (rerun, rerun_result)):
        value = (result or {}).get(CHECKSUM_KEY)
        values.append(value)
        if result is None:
            reasons.append(f"run {record.id} has no result ({record.status})")
        elif value is None:
            reasons.append(f"run {record.id}'s result has no {CHECKSUM_KEY} "
                           f"(job {record.job} records none with these parameters)")  # fmt: skip
    return ChecksumCheck(original.id, rerun.id, values[0], values[1], "; ".join(reasons))


def _checksum_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)
