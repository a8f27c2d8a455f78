"""``clusterkit report``: draw each run's and each bench's figures into PNG files beside the
page, then write the page.

:func:`write_report` is the one entry: it takes runs already read (:func:`.gather.read_run`)
and benches (:func:`.gather.read_bench`), and writes ``out`` (the HTML) and
``<out's stem>-<run id>-<figure>.png`` / ``<out's stem>-bench[-N].png`` in the same folder.
A figure that has nothing to draw, or whose drawing fails (matplotlib raising on odd data),
is not an error: the page says why it is missing, and so does :attr:`Written.missing`; only
an OSError writing a file stops it. :func:`report_run` is what ``bench`` and the console's run
detail call: one run's report in its own folder.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from matplotlib.figure import Figure

from clusterkit import __version__
from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_text_atomic
from clusterkit.core.records import RunRecord, now_iso
from clusterkit.report import figures
from clusterkit.report.gather import Bench, RunData, read_run
from clusterkit.report.page import BenchFigure, Drawn, RunFigures, page
from clusterkit.runs.store import RunStore

#: the figures of a run, in the page's order, with their titles
TITLES = {
    "stages": "Wall time by stage",
    "memory": "Memory over time",
    "search": "Hyperparameter search",
    "epochs": "Learning curves",
    "bench": "Engines compared",
}


@dataclass
class Written:
    """What :func:`write_report` wrote: the page, its PNGs, and each figure not drawn as
    ``run ID: TITLE: why``."""

    html: Path
    pngs: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def kinds_for(data: RunData) -> list[str]:
    """The figures a run gets: stages and memory always; the search for ``train`` (or a
    result with trials), learning curves for ``lenet`` (or any epochs), the comparison for
    ``bench``."""
    kinds = ["stages", "memory"]
    if data.record.job == "train" or data.trials:
        kinds.append("search")
    if data.record.job == "lenet" or data.epochs:
        kinds.append("epochs")
    if data.record.job == "bench" or data.bench is not None:
        kinds.append("bench")
    return kinds


def write_report(runs: Sequence[RunData], benches: Sequence[Bench], out: Path, *,
                 made: str) -> Written:  # fmt: skip
    """Write the page ``out`` and its PNGs beside it (the folder is made); ``made`` is the
    page's line saying when and by what."""
    out.parent.mkdir(parents=True, exist_ok=True)
    written = Written(out)
    stem = _safe(out.stem)
    run_figures = []
    for data in runs:
        drawn = []
        for kind in kinds_for(data):
            title, why = TITLES[kind], _missing(data, kind)
            name = f"{stem}-{_safe(data.record.id)}-{kind}.png"
            if why is None:
                why = _draw(partial(_figure_of, data, kind), out.parent / name, written)
            if why is None:
                drawn.append(Drawn(kind, title, name))
            else:
                drawn.append(Drawn(kind, title, None, why))
                written.missing.append(f"run {data.record.id}: {title}: {why}")
        run_figures.append(RunFigures(data, drawn))
    bench_figures = []
    for place, bench in enumerate(benches, start=1):
        name = f"{stem}-bench{'' if len(benches) == 1 else f'-{place}'}.png"
        make = partial(figures.bench_comparison, bench.rows, _bench_title(bench))
        why = _draw(make, out.parent / name, written)
        bench_figures.append(BenchFigure(bench, Drawn("bench", TITLES["bench"],
                                                      None if why else name, why)))  # fmt: skip
        if why is not None:
            written.missing.append(f"bench {bench.source}: {TITLES['bench']}: {why}")
    write_text_atomic(out, page(run_figures, bench_figures, made=made), mode=0o644)
    return written


#: The name of a run's own report, in its run folder (beside a bench's ``bench.md``).
RUN_REPORT = "report.html"


def made_line() -> str:
    """The page's line saying when and by what it was made."""
    return f"made {now_iso()} by clusterkit {__version__}"


def report_run(store: RunStore, record: RunRecord, *, made: str | None = None) -> Written:
    """Write the report of ``record`` into its run folder as read here (``report.html`` and
    its PNGs beside the run's files: for a bench, beside its table; for a remote cluster's
    run, in the copy here). A rerun is put beside the run it repeats when the store holds
    that one. OSError when the folder cannot be written."""
    runs = []
    if record.rerun_of:
        try:
            original = store.load(record.rerun_of)
        except (OSError, ClusterkitError):  # not kept here (another cluster's): alone
            original = None
        if original is not None:
            runs.append(read_run(original, store.dir(original.id)))
    runs.append(read_run(record, store.dir(record.id)))
    return write_report(runs, [], store.dir(record.id) / RUN_REPORT, made=made or made_line())


def _missing(data: RunData, kind: str) -> str | None:
    """Why ``kind`` cannot be drawn for this run, or None when it can."""
    have: dict[str, Callable[[], bool]] = {
        "stages": lambda: bool(data.stages),
        "memory": lambda: bool(data.samples),
        "search": lambda: bool(data.trials),
        "epochs": lambda: bool(data.epochs),
        "bench": lambda: data.bench is not None and bool(data.bench.rows),
    }
    if have[kind]():
        return None
    key = {"memory": "metrics"}.get(kind, kind)
    return data.missing.get(key, "nothing to draw")


def _figure_of(data: RunData, kind: str) -> Figure:
    record = data.record
    title = f"run {record.id} ({record.job})"
    if kind == "stages":
        return figures.stage_times(data.stages, record.wall_s, f"Wall time by stage: {title}")
    if kind == "memory":
        return figures.memory_over_time(data.samples, f"Memory over time: {title}")
    if kind == "search":
        mse = (data.result or {}).get("mse")
        return figures.search_results(data.trials, f"Hyperparameter search: {title}",
                                      mse if isinstance(mse, int | float) else None)  # fmt: skip
    if kind == "epochs":
        return figures.learning_curves(data.epochs, f"Learning curves: {title}")
    assert data.bench is not None
    return figures.bench_comparison(data.bench.rows, f"Engines compared: {title}")


def _bench_title(bench: Bench) -> str:
    return (f"Engines compared: median wall time of each job (whiskers: min-max of the runs)"
            f"\n{bench.source}")  # fmt: skip


def _draw(make: Callable[[], Figure], path: Path, written: Written) -> str | None:
    """Make a figure and write it to ``path``: None when drawn, else why not (the
    exception's type and message). An OSError (the file cannot be written) is raised."""
    try:
        figures.save_png(make(), path)
    except OSError:
        raise
    except Exception as exc:  # matplotlib refusing the data: this figure only
        path.unlink(missing_ok=True)  # no half-written PNG left beside the page
        return f"{type(exc).__name__}: {exc}"
    written.pngs.append(path)
    return None


def _safe(name: str) -> str:
    """A name for a file: letters, digits, ``.``, ``_`` and ``-``; anything else ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "report"
