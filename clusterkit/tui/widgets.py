"""Small drawing helpers and the keyed-table update the screens share.

Bars and charts are plain block characters on an absolute scale (0 to a stated top), so they
read the same without colour and a flat 3 % CPU does not look like a full bar (Textual's
Sparkline scales each series between its own minimum and maximum). A training run's accuracy
per epoch is the exception (:class:`EpochsView`, :class:`EpochsLine`): its shape, from the
first epoch to the last, is what a Sparkline shows, and the caption gives the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Sparkline, Static

from clusterkit.runs.epochs import Epoch
from clusterkit.tui.state import accuracy_series, epoch_summary, percent

BLOCKS = " ▁▂▃▄▅▆▇█"


def meter(fraction: float, width: int) -> str:
    """``[████░░░░]``: a bar ``width`` cells wide inside brackets, filled to ``fraction``."""
    inner = max(1, width - 2)
    filled = round(max(0.0, min(1.0, fraction)) * inner)
    return "[" + "█" * filled + "░" * (inner - filled) + "]"


def spark(values: Sequence[float], width: int, *, top: float = 100.0) -> str:
    """The last ``width`` values as one line of eighth-blocks, 0..``top`` (blank: no data)."""
    shown = list(values)[-width:]
    cells = [BLOCKS[max(1, min(8, round(v / top * 8)))] if top > 0 else BLOCKS[1] for v in shown]
    return "".join(cells).rjust(width)


def column_chart(values: Sequence[float], *, width: int, height: int, top: float) -> list[str]:
    """A column chart ``height`` rows tall and ``width`` columns wide, 0..``top``. More values
    than columns: each column shows the highest of its bucket (a peak is never averaged away);
    fewer: each value is drawn as wide as its share of the width."""
    if not values or top <= 0:
        return [" " * width] * height
    n = len(values)
    if n >= width:
        columns = [max(values[i * n // width : (i + 1) * n // width]) for i in range(width)]
    else:
        columns = [values[i * n // width] for i in range(width)]
    eighths = [round(v / top * height * 8) for v in columns]
    rows = []
    for level in range(height - 1, -1, -1):
        line = ""
        for e in eighths:
            part = e - level * 8
            line += "█" if part >= 8 else (BLOCKS[part] if part > 0 else " ")
        rows.append(line)
    return rows


def hbar(value: float, *, top: float, width: int, mark: float | None = None) -> str:
    """A horizontal bar for ``value`` on 0..``top`` in ``width`` cells; ``mark`` (a reference
    value on the same scale) is drawn as ``│`` at its position."""
    filled = round(max(0.0, min(1.0, value / top)) * width) if top > 0 else 0
    cells = ["█"] * filled + [" "] * (width - filled)
    if mark is not None and top > 0:
        at = min(width - 1, round(mark / top * width))
        cells[at] = "┃" if cells[at] == "█" else "│"
    return "".join(cells)


def state_text(state: str, *, stale: bool = False) -> Text:
    """A service or run state as a word that reads without colour (colour only adds to it)."""
    styles = {"up": "green", "succeeded": "green", "running": "cyan", "queued": "cyan",
              "down": "bold red", "failed": "bold red", "cancelled": "yellow"}  # fmt: skip
    word = state.upper() if state in ("down", "failed") else state
    return Text(word, style="dim" if stale else styles.get(state, ""))


def show_text(widget: Static, content: str | Text) -> None:
    """Update a Static only if what it shows changes, and ask for a layout pass only if its
    number of lines changes (a layout pass of the whole screen is what an idle console would
    otherwise spend its CPU on, once a second)."""
    previous = getattr(widget, "_clusterkit_shown", None)
    if previous is not None and _same(previous, content):
        return
    lines = str(content).count("\n")
    widget.update(content, layout=previous is None or str(previous).count("\n") != lines)
    widget._clusterkit_shown = content  # type: ignore[attr-defined]


def _same(a: object, b: object) -> bool:
    """Equal as shown: rich's Text compares text and spans only, not its own style."""
    if isinstance(a, Text) and isinstance(b, Text):
        return (a.plain, a.style, a.spans) == (b.plain, b.style, b.spans)
    return a == b


def sync_table(table: DataTable[object], rows: Mapping[str, Sequence[object]]) -> bool:
    """Make ``table`` show ``rows`` (row key → cells) by changing only what differs: cells are
    updated in place, new keys added, vanished keys removed; the cursor stays on its row.

    Returns True when rows were added (the caller may want to re-sort).
    """
    columns = list(table.columns)
    for gone in [k for k in table.rows if k.value not in rows]:
        table.remove_row(gone)
    added = False
    for key, cells in rows.items():
        if key in table.rows:
            for column, old, new in zip(columns, table.get_row(key), cells, strict=True):
                if not _same(old, new):
                    wider = len(str(new)) > table.columns[column].content_width
                    table.update_cell(key, column, new, update_width=wider)
        else:
            table.add_row(*cells, key=key)
            added = True
    return added


# --- a training run's per-epoch figures -------------------------------------------------

EPOCH_ROWS = 5  # the run detail's table shows the latest epochs


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def epoch_table(epochs: Sequence[Epoch], *, rows: int = EPOCH_ROWS) -> str:
    """The per-epoch figures as aligned lines under a header, the latest ``rows`` epochs."""
    shown = list(epochs)[-rows:] if rows > 0 else list(epochs)
    earlier = len(epochs) - len(shown)
    lines = [f"{'epoch':>5} {'loss':>8} {'accuracy':>9} {'test acc.':>9} {'images/s':>9}"
             f" {'seconds':>8} {'lr':>9}"]  # fmt: skip
    for e in shown:
        lines.append(f"{e.epoch:>5} {_figure(e.loss, '.4f'):>8} {percent(e.accuracy):>9}"
                     f" {percent(e.test_accuracy):>9} {_figure(e.images_per_s, ',.0f'):>9}"
                     f" {_figure(e.seconds, '.1f'):>8} {_figure(e.lr, '.3g'):>9}")  # fmt: skip
    if earlier:
        lines.append(f"({earlier} earlier epoch{'s' if earlier > 1 else ''} not shown)")
    return "\n".join(lines)


def _show_series(spark: Sparkline, epochs: Sequence[Epoch]) -> None:
    series = accuracy_series(epochs)
    if list(spark.data or []) != series:  # a redraw only when an epoch was added
        spark.data = series


class EpochsView(Vertical):
    """A run's per-epoch figures (run detail): the caption, a Sparkline of accuracy per epoch
    and the table of the latest epochs. Not displayed while the run has none."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="epochs")
        self.display = False
        self.epochs: list[Epoch] = []
        self.caption = Static(classes="epochs-caption")
        self.spark = Sparkline([], classes="epochs-spark")
        self.table = Static(classes="epochs-table")

    def compose(self) -> ComposeResult:
        yield self.caption
        yield self.spark
        yield self.table

    def show(self, epochs: Sequence[Epoch], total: int | None) -> None:
        self.epochs = list(epochs)
        self.display = bool(epochs)
        if not epochs:
            return
        show_text(self.caption, epoch_summary(epochs, total))
        _show_series(self.spark, epochs)
        show_text(self.table, Text(epoch_table(epochs), style="dim"))


class EpochsLine(Horizontal):
    """One job's latest run in the catalog, on one line: the job, a Sparkline of accuracy per
    epoch and the caption. Not displayed while that run has no per-epoch figures."""

    def __init__(self, job: str) -> None:
        super().__init__(classes="epochs-line")
        self.job = job
        self.display = False
        self.run_id: str | None = None
        self.epochs: list[Epoch] = []
        self.spark = Sparkline([], classes="epochs-spark")
        self.caption = Static(classes="epochs-caption")

    def compose(self) -> ComposeResult:
        yield Static(Text(self.job), classes="epochs-job")
        yield self.spark
        yield self.caption

    def show(self, run_id: str | None, epochs: Sequence[Epoch], caption: str | Text) -> None:
        self.run_id, self.epochs = run_id, list(epochs)
        self.display = bool(epochs)
        if not epochs:
            return
        _show_series(self.spark, epochs)
        show_text(self.caption, caption)
