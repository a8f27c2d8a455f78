"""Compare: pick finished runs and see their wall time and peak memory side by side as bars.

Runs are grouped as ``clusterkit bench`` groups them (:func:`clusterkit.runs.compare.summarise`:
job, input rows, engine; the median of a group's runs). Where the source project published
a figure for the same job and size, it is drawn as a reference line ``│`` across the bars.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from clusterkit.core.fmt import human_bytes, human_count, human_seconds
from clusterkit.runs import compare
from clusterkit.tui.screens.base import LiveScreen
from clusterkit.tui.widgets import hbar, show_text, state_text, sync_table

LABEL_WIDTH = 26
FIGURE_WIDTH = 11


def bars(rows: list[compare.Row], *, width: int) -> Text:
    """Wall time (with the published reference where there is one) and peak memory bars."""
    if not rows:
        return Text("Select runs with space (a: every run of the same job and size) to compare "
                    "their wall time and peak memory.", style="dim")  # fmt: skip
    bar_width = max(10, width - LABEL_WIDTH - FIGURE_WIDTH - 2)
    refs = {(r.job, r.rows): compare.published(r.job, r.rows) for r in rows}
    top_s = max([r.median_s or 0.0 for r in rows] + [p.median_s for p in refs.values() if p])
    text = Text("wall time, median of the selected runs", style="bold")
    if any(refs.values()):
        text.append("  (│ published by the source)")
    for r in rows:
        label = f"{r.job} {human_count(r.rows)} {r.engine} ×{r.runs}"[:LABEL_WIDTH]
        ref = refs[(r.job, r.rows)]
        if r.median_s is None:
            figure = Text(f"failed: {r.error or 'no successful run'}"[: bar_width + FIGURE_WIDTH])
            text.append(f"\n{label:<{LABEL_WIDTH}} ").append(figure)
            continue
        bar = hbar(r.median_s, top=top_s, width=bar_width, mark=ref.median_s if ref else None)
        text.append(f"\n{label:<{LABEL_WIDTH}} {bar} {human_seconds(r.median_s):>{FIGURE_WIDTH}}")
    for (job, size), ref in refs.items():
        if ref is not None:
            text.append(f"\n│ {job} {human_count(size)}, source project: {ref.text}", style="dim")
    top_mem = max([r.peak_rss_bytes or 0 for r in rows]) or 1
    text.append("\npeak memory of the run's processes", style="bold")
    for r in rows:
        label = f"{r.job} {human_count(r.rows)} {r.engine} ×{r.runs}"[:LABEL_WIDTH]
        bar = hbar(float(r.peak_rss_bytes or 0), top=top_mem, width=bar_width)
        memory = human_bytes(r.peak_rss_bytes)
        text.append(f"\n{label:<{LABEL_WIDTH}} {bar} {memory:>{FIGURE_WIDTH}}")
    return text


class CompareScreen(LiveScreen):
    BINDINGS = [
        Binding("space", "toggle_run", "Select"),
        Binding("a", "select_alike", "Alike"),
        Binding("n", "select_none", "None"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.selected: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("Finished runs: space selects, a selects the runs of the same job and size",
                     classes="title")  # fmt: skip
        table: DataTable[object] = DataTable(id="runs", cursor_type="row")
        for column in ("✓", "run", "job", "engine", "rows", "status", "wall", "peak memory"):
            table.add_column(column, key=column)
        yield table
        yield Static(id="bars")
        yield Footer(compact=True, show_command_palette=False)

    def show_state(self) -> None:
        measured = self.state.measured
        rows = {
            m.run: (
                "✓" if m.run in self.selected else " ",
                m.run,
                m.job,
                m.engine,
                human_count(m.rows or None),
                state_text(m.status),
                human_seconds(m.wall_s),
                human_bytes(m.peak_rss_bytes),
            )
            for m in measured.values()
        }
        table = self.query_one("#runs", DataTable)
        if sync_table(table, rows):
            table.sort("run", reverse=True)
        chosen = [measured[i] for i in sorted(self.selected) if i in measured]
        width = self.query_one("#bars", Static).size.width or 78
        show_text(self.query_one("#bars", Static), bars(compare.summarise(chosen), width=width))

    def _cursor_run(self) -> str | None:
        table = self.query_one("#runs", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def action_toggle_run(self) -> None:
        run = self._cursor_run()
        if run is not None:
            self.selected ^= {run}
            self.show_state()

    def action_select_alike(self) -> None:
        run = self._cursor_run()
        measured = self.state.measured
        if run is None or run not in measured:
            return
        like = measured[run]
        self.selected |= {m.run for m in measured.values()
                          if (m.job, m.rows) == (like.job, like.rows)}  # fmt: skip
        self.show_state()

    def action_select_none(self) -> None:
        self.selected.clear()
        self.show_state()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_toggle_run()
