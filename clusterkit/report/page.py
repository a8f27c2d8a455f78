"""The report's HTML page: one self-contained file (inline CSS, no script, nothing fetched)
whose figures are PNG files beside it, referenced by relative names.

:func:`page` turns what :mod:`.build` drew (:class:`Drawn`, per run and per bench) into the
page's text. Every name and value from a run or a file goes through :func:`html.escape`; a
figure that could not be drawn is said in its place, with why. A figure links to its PNG
(full size, where a column of runs side by side shows it small).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from clusterkit.core.fmt import human_bytes, human_count, human_seconds
from clusterkit.report.gather import Bench, RunData, compare_environments
from clusterkit.runs.compare import check_checksums

PAGE_TITLE = "clusterkit report"

CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.runs { width: 100%; table-layout: fixed; }
table.runs > * > tr > th:first-child { width: 9em; }
img { max-width: 100%; height: auto; }
td { overflow-wrap: break-word; }
.missing { color: #8a4b00; } .meta { color: #555; }
"""


@dataclass(frozen=True)
class Drawn:
    """One figure of the report: its kind, title, the PNG's name beside the page (None when
    not drawn) and, when not drawn, why."""

    kind: str
    title: str
    file: str | None
    missing: str | None = None


@dataclass
class RunFigures:
    """A run and its figures, in the order the page shows them."""

    data: RunData
    figures: list[Drawn]


@dataclass
class BenchFigure:
    """A bench file and its figure."""

    bench: Bench
    figure: Drawn


def page(runs: Sequence[RunFigures], benches: Sequence[BenchFigure], *, made: str) -> str:
    """The whole page: the runs side by side (one column each; a row per figure), whether
    their environments differ and, for a rerun beside its original, whether their result
    checksums are the same; then each bench's figure and table. ``made`` says when and by
    what it was made."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{PAGE_TITLE}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{PAGE_TITLE}</h1>",
        f'<p class="meta">{_e(made)}</p>',
    ]
    if runs:
        parts += _runs(runs)
    for each in benches:
        parts += _bench(each)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _runs(runs: Sequence[RunFigures]) -> list[str]:
    heading = "Run" if len(runs) == 1 else f"{len(runs)} runs side by side"
    out = [f"<h2>{heading}</h2>"]
    if len(runs) > 1:
        verdict = compare_environments([r.data.environment for r in runs])
        out.append(f'<p class="environment">Environments: {_e(verdict)}.</p>')
        out += [f'<p class="rerun">{_e(line)}</p>' for line in rerun_lines(runs)]
    out.append('<table class="runs"><thead><tr><th></th>')
    for run in runs:
        record = run.data.record
        out.append(f"<th>run {_e(record.id)}<br>{_e(record.job)} · {_e(record.status)}</th>")
    out.append("</tr></thead><tbody>")
    facts = [dict(_facts(run.data)) for run in runs]
    for key in dict.fromkeys(k for each in facts for k in each):
        out.append(f"<tr><th>{_e(key)}</th>")
        out += [f"<td>{_e(each.get(key, '-'))}</td>" for each in facts]
        out.append("</tr>")
    kinds = list(dict.fromkeys(f.kind for run in runs for f in run.figures))
    for kind in kinds:
        title = next(f.title for run in runs for f in run.figures if f.kind == kind)
        out.append(f"<tr><th>{_e(title)}</th>")
        for run in runs:
            drawn = next((f for f in run.figures if f.kind == kind), None)
            if drawn is None:
                out.append(f'<td class="meta">does not apply to a {_e(run.data.record.job)} '
                           "run</td>")  # fmt: skip
            else:
                out.append(f"<td>{_figure(drawn, f'of run {run.data.record.id}')}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    missing = [(run.data.record.id, f) for run in runs for f in run.figures if f.file is None]
    if missing:
        out.append('<h3>Figures not drawn</h3><ul class="missing">')
        out += [f"<li>run {_e(run_id)}: {_e(f.title)}: {_e(f.missing or '')}</li>"
                for run_id, f in missing]  # fmt: skip
        out.append("</ul>")
    return out


def rerun_lines(runs: Sequence[RunFigures]) -> list[str]:
    """A line for each run on the page that reruns another run on the page: which, and
    whether their result checksums are the same."""
    by_id = {run.data.record.id: run.data for run in runs}
    lines = []
    for run in runs:
        rerun = run.data
        original = by_id.get(rerun.record.rerun_of or "")
        if original is None:
            continue
        check = check_checksums(original.record, original.result, rerun.record, rerun.result)
        lines.append(f"Run {rerun.record.id} reruns run {original.record.id}: {check.text()}.")
    return lines


def _figure(drawn: Drawn, of: str) -> str:
    if drawn.file is None:
        return f'<p class="missing">{_e(drawn.title)} not drawn: {_e(drawn.missing or "")}</p>'
    src = _e(quote(drawn.file))
    return f'<a href="{src}"><img src="{src}" alt="{_e(drawn.title)} {_e(of)}"></a>'


def _facts(data: RunData) -> list[tuple[str, str]]:
    """What the page says of a run, a row each (the same keys side by side)."""
    record, result = data.record, data.result or {}
    items = [
        ("job", record.job),
        ("status", record.status),
        ("cluster", f"{record.cluster} ({record.provider})"),
        ("started", _when(record.started)),
        ("wall time", human_seconds(record.wall_s) + " (the job's process)"),
    ]
    if result.get("wall_s") is not None:
        items.append(("job's own wall_s", human_seconds(result["wall_s"])))
    items.append(("peak memory", human_bytes(record.peak_rss_bytes)))
    if result.get("rows") is not None:
        rows = result["rows"]
        items.append(("rows", f"{rows:,}" if isinstance(rows, int) else str(rows)))
    items.append(("params", json.dumps(record.params, sort_keys=True) if record.params else "-"))
    items.append(("Spark session", record.spark_session))
    if record.parent:
        items.append(("submitted by", f"run {record.parent}"))
    if record.rerun_of:
        items.append(("rerun of", f"run {record.rerun_of}"))
    if result.get("checksum") is not None:
        checksum = result["checksum"]
        items.append(("checksum", checksum if isinstance(checksum, str)
                      else json.dumps(checksum, sort_keys=True)))  # fmt: skip
    if record.error:
        items.append(("error", record.error))
    if record.notes:
        items.append(("notes", "; ".join(record.notes)))
    if data.environment is not None:
        items.append(("environment", json.dumps(data.environment, sort_keys=True)))
    return items


def _when(iso: str | None) -> str:
    """An ISO time as ``2026-11-21 10:00:00 UTC`` (as given when it is not one)."""
    if not iso:
        return "-"
    try:
        moment = datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        return iso
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _bench(each: BenchFigure) -> list[str]:
    bench = each.bench
    out = [f"<h2>{_e(each.figure.title)}: {_e(bench.source)}</h2>"]
    if bench.measured:
        out.append(f'<p class="meta">Measured: {_e(bench.measured)}</p>')
    out.append(_figure(each.figure, f"in {bench.source}"))
    out.append("<table><thead><tr><th>job</th><th>rows</th><th>engine</th><th>runs</th>"
               "<th>median s</th><th>min-max s</th><th>peak memory</th>"
               "<th>source published</th></tr></thead><tbody>")  # fmt: skip
    for r in bench.rows:
        if r.median_s is None:
            figures = f'<td colspan="2" class="missing">failed: {_e(r.error or "no run")}</td>'
        else:
            spread = (f"{r.min_s:.2f}-{r.max_s:.2f}" if r.min_s is not None
                      and r.max_s is not None else "-")  # fmt: skip
            figures = f'<td class="num">{r.median_s:.2f}</td><td class="num">{spread}</td>'
        runs = f"{r.runs}" + (f" (+{r.failed} failed)" if r.failed else "")
        out.append(f"<tr><td>{_e(r.job)}</td><td class=\"num\">{_e(human_count(r.rows))}</td>"
                   f"<td>{_e(r.engine)}</td><td class=\"num\">{_e(runs)}</td>{figures}"
                   f"<td class=\"num\">{_e(human_bytes(r.peak_rss_bytes))}</td>"
                   f"<td>{_e(r.published)}</td></tr>")  # fmt: skip
    out.append("</tbody></table>")
    return out


def _e(text: str) -> str:
    return html.escape(text, quote=True)
