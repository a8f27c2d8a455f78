"""The report's figures: pure functions from :mod:`.gather`'s dataclasses to a matplotlib
:class:`~matplotlib.figure.Figure`, and :func:`save_png` to write one.

Figures are made without pyplot (no global state, no display: the Agg canvas draws them),
so any thread or process can draw them. Each function needs something to draw (a non-empty
sequence: the caller says why a figure is missing instead) and titles its figure with what
it shows; times are in seconds, memory in MiB or GiB, whichever fits the largest value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, MaxNLocator

from clusterkit.core.fmt import human_bytes, human_count
from clusterkit.report.gather import Sample, Trial
from clusterkit.runs.compare import Row
from clusterkit.runs.epochs import Epoch

DPI = 100
#: each engine's colour in every figure (others take the default cycle's)
ENGINE_COLOURS = {"spark": "#e25a1c", "ray": "#028cf0", "duckdb": "#c9a100",
                  "seed-paper": "#7b6fa8"}  # fmt: skip
PUBLISHED_COLOUR = "#9e9e9e"
OTHER_COLOURS = ("#2ca02c", "#d62728", "#17becf", "#8c564b", "#e377c2", "#bcbd22")
OUTSIDE_STAGES = "(outside the stages)"
MiB, GiB = 1024**2, 1024**3


def save_png(figure: Figure, path: Path) -> Path:
    """Draw ``figure`` with Agg into the PNG file ``path`` (its folder must exist)."""
    FigureCanvasAgg(figure)
    figure.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    return path


def stage_times(stages: dict[str, float], wall_s: float | None, title: str) -> Figure:
    """Horizontal bars of each stage's seconds, in the order the job ran them; with the run's
    wall time (``wall_s``, the job process's) a grey bar for what no stage covers (process
    start, imports, writing the result) when that is 0.05 s or more."""
    if not stages:
        raise ValueError("no stages to draw")
    names, seconds = list(stages), list(stages.values())
    colours = ["#4c72b0"] * len(names)
    total = sum(seconds)
    if wall_s is not None and wall_s - total >= 0.05:
        names.append(OUTSIDE_STAGES)
        seconds.append(wall_s - total)
        colours.append(PUBLISHED_COLOUR)
    figure = Figure(figsize=(8, 1.2 + 0.45 * len(names)), layout="constrained")
    ax = figure.add_subplot()
    ax.barh(range(len(names)), seconds, color=colours)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()  # the first stage on top
    for y, value in enumerate(seconds):
        ax.annotate(f" {value:.2f} s", (value, y), va="center", fontsize=9)
    ax.set_xlim(0, max(seconds) * 1.2 or 1)
    ax.set_xlabel("seconds")
    whole = (f"wall time {wall_s:.2f} s (the job's process)" if wall_s is not None
             else f"stages {total:.2f} s")  # fmt: skip
    ax.set_title(f"{title}\n{whole}", fontsize=10)
    return figure


def memory_over_time(samples: Sequence[Sample], title: str) -> Figure:
    """Each node's memory over the run: the run's processes (RSS) and, when sampled, the
    node's memory used; each line's peak marked with its value."""
    if not samples:
        raise ValueError("no samples to draw")
    nodes = sorted({s.node for s in samples})
    series = [
        ("the run's processes (RSS)", "run_rss_bytes"),
        ("node memory used", "mem_used_bytes"),
    ]
    panels = [(name, key) for name, key in series
              if any(getattr(s, key) is not None for s in samples)]  # fmt: skip
    figure = Figure(figsize=(8, 1.0 + 2.6 * len(panels)), layout="constrained")
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (name, key) in zip(axes, panels, strict=True):
        top = max(getattr(s, key) or 0 for s in samples)
        unit, size = ("GiB", GiB) if top >= GiB else ("MiB", MiB)
        for place, node in enumerate(nodes):
            points = [(s.t, getattr(s, key)) for s in samples
                      if s.node == node and getattr(s, key) is not None]  # fmt: skip
            if not points:
                continue
            colour = OTHER_COLOURS[place % len(OTHER_COLOURS)] if place else "#4c72b0"
            ts, values = [t for t, _ in points], [v / size for _, v in points]
            ax.plot(ts, values, color=colour, label=node, linewidth=1.5)
            peak_at = max(range(len(values)), key=values.__getitem__)
            ax.plot([ts[peak_at]], [values[peak_at]], marker="o", color=colour, markersize=7)
            peak, label = (ts[peak_at], values[peak_at]), f"peak {human_bytes(points[peak_at][1])}"
            ax.annotate(label, peak, textcoords="offset points", xytext=(6, 6), fontsize=9,
                        color=colour)  # fmt: skip
        ax.set_ylim(0, top / size * 1.25 or 1)
        ax.set_ylabel(unit)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8, title="node", title_fontsize=8)
    axes[-1].set_xlabel("seconds since the run started")
    figure.suptitle(title, fontsize=11)
    return figure


def search_results(trials: Sequence[Trial], title: str, holdout_mse: float | None = None) -> Figure:
    """The salary model's search: each trial's cross-validated MSE (bar) and its folds' range
    (whisker), best first, coloured by model family; the best trial labelled; the refit best's
    held-out MSE as a dashed line when given. A log scale when the MSEs span over 30x."""
    if not trials:
        raise ValueError("no trials to draw")
    ordered = sorted(trials, key=lambda t: t.cv_mse)
    models = list(dict.fromkeys(t.model for t in ordered))
    colours = {m: OTHER_COLOURS[i % len(OTHER_COLOURS)] for i, m in enumerate(models)}
    figure = Figure(figsize=(10, 1.6 + 0.32 * len(ordered)), layout="constrained")
    ax = figure.add_subplot()
    # clamped: a mean of equal folds can be an ulp off them, and matplotlib refuses a
    # negative whisker
    lows = [max(0.0, t.cv_mse - min(t.fold_mse)) if t.fold_mse else 0.0 for t in ordered]
    highs = [max(0.0, max(t.fold_mse) - t.cv_mse) if t.fold_mse else 0.0 for t in ordered]
    ax.barh(range(len(ordered)), [t.cv_mse for t in ordered], xerr=[lows, highs],
            color=[colours[t.model] for t in ordered], ecolor="#333333", capsize=2)  # fmt: skip
    labels = [_short(("best: " if t.best else "") + t.label, 70) for t in ordered]
    ax.set_yticks(range(len(ordered)), labels, fontsize=8)
    for tick, trial in zip(ax.get_yticklabels(), ordered, strict=True):
        if trial.best:
            tick.set_fontweight("bold")
    ax.invert_yaxis()
    values = [t.cv_mse for t in ordered] + [v for t in ordered for v in t.fold_mse]
    if min(values) > 0 and max(values) / min(values) > 30:
        ax.set_xscale("log")
    handles: list[Artist] = [Patch(color=colours[m], label=m) for m in models]
    if holdout_mse is not None:
        handles.append(
            ax.axvline(
                holdout_mse,
                color="#333333",
                linestyle="--",
                linewidth=1,
                label=f"held-out MSE of\nthe refit best: {holdout_mse:.4g}",
            )
        )
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))  # 200M, not 2 with 1e8 in a corner
    ax.set_xlabel("cross-validated MSE (whiskers: min-max over the folds)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return figure


def learning_curves(epochs: Sequence[Epoch], title: str) -> Figure:
    """A training run per epoch: the training loss, and the training and held-out accuracy
    (each where the epochs report it); images per second in the title."""
    if not epochs:
        raise ValueError("no epochs to draw")
    figure = Figure(figsize=(9, 3.6), layout="constrained")
    loss_ax, acc_ax = figure.subplots(1, 2)
    xs = [e.epoch for e in epochs]

    def line(ax: Axes, values: Sequence[float | None], label: str, colour: str,
             scale: float = 1.0) -> None:  # fmt: skip
        points = [(x, v * scale) for x, v in zip(xs, values, strict=True) if v is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=4,
                    label=label, color=colour)  # fmt: skip

    line(loss_ax, [e.loss for e in epochs], "training loss", "#4c72b0")
    line(acc_ax, [e.accuracy for e in epochs], "training", "#4c72b0", 100)
    line(acc_ax, [e.test_accuracy for e in epochs], "held-out (test)", "#e25a1c", 100)
    loss_ax.set_title("loss", fontsize=10)
    acc_ax.set_title("accuracy, %", fontsize=10)
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    speeds = [e.images_per_s for e in epochs if e.images_per_s is not None]
    shown = f" (mean {sum(speeds) / len(speeds):,.0f} images/s)" if speeds else ""
    figure.suptitle(title + shown, fontsize=11)
    return figure


def bench_comparison(rows: Sequence[Row], title: str) -> Figure:
    """The engines compared: one panel per job (row) and size (column), a bar per engine of
    its median wall time with the runs' min-max as whiskers, and the source project's
    published figure (hatched, with its range) beside them where it published one. A group
    with no successful run says ``failed`` in place of its bar."""
    if not rows:
        raise ValueError("no bench rows to draw")
    jobs = list(dict.fromkeys(r.job for r in rows))
    sizes = sorted({r.rows for r in rows})
    engines = list(dict.fromkeys(r.engine for r in rows))
    colours = {e: ENGINE_COLOURS.get(e, OTHER_COLOURS[i % len(OTHER_COLOURS)])
               for i, e in enumerate(engines)}  # fmt: skip
    figure = Figure(figsize=(5.2 * len(sizes) + 0.6, 0.8 + 3.0 * len(jobs)), layout="constrained")
    grid = figure.subplots(len(jobs), len(sizes), squeeze=False)
    for j, job in enumerate(jobs):
        for k, size in enumerate(sizes):
            ax = grid[j][k]
            group = [r for r in rows if (r.job, r.rows) == (job, size)]
            if not group:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{job}, {human_count(size)} rows:\nnot measured",
                        ha="center", va="center", transform=ax.transAxes, fontsize=9)  # fmt: skip
                continue
            _bench_panel(ax, group, colours)
            ax.set_title(f"{job}, {human_count(size)} rows ({size:,})", fontsize=10)
            if k == 0:
                ax.set_ylabel("median wall time, s")
    figure.suptitle(title, fontsize=11)
    return figure


def _bench_panel(ax: Axes, group: Sequence[Row], colours: dict[str, str]) -> None:
    labels: list[str] = []
    top = 0.0
    for x, row in enumerate(group):
        labels.append(row.engine)
        if row.median_s is None:
            ax.text(x, 0, "failed", ha="center", va="bottom", fontsize=9, color="#b00020")
            continue
        low = row.median_s - (row.min_s if row.min_s is not None else row.median_s)
        high = (row.max_s if row.max_s is not None else row.median_s) - row.median_s
        ax.bar(x, row.median_s, color=colours[row.engine], yerr=[[low], [high]], capsize=3)
        ax.annotate(f"{row.median_s:.1f}", (x, row.median_s + high), textcoords="offset points",
                    xytext=(0, 3), ha="center", fontsize=8)  # fmt: skip
        top = max(top, row.median_s + high)
    source = next((r.published_figure for r in group if r.published_figure is not None), None)
    if source is not None:
        x = len(group)
        labels.append("source\npublished")
        low = source.median_s - (source.min_s if source.min_s is not None else source.median_s)
        high = (source.max_s if source.max_s is not None else source.median_s) - source.median_s
        ax.bar(x, source.median_s, color="white", edgecolor=PUBLISHED_COLOUR, hatch="//",
               yerr=[[low], [high]], capsize=3, ecolor=PUBLISHED_COLOUR)  # fmt: skip
        ax.annotate(f"{source.median_s:.1f}", (x, source.median_s + high),
                    textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)  # fmt: skip
        top = max(top, source.median_s + high)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylim(0, top * 1.18 or 1)
    ax.grid(axis="y", alpha=0.3)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
