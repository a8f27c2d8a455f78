"""Jobs: the catalog (enter opens a job's form), running jobs, and the run history.

Under the catalog, a job whose latest run reports per-epoch figures (a training job such as
lenet) has a line of its own: a sparkline of that run's accuracy per epoch and its caption
(``epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s``), live while it runs.

Running jobs show their elapsed time, live peak memory (from the run's metrics as they are
written) and progress; the history (newest first) is filtered with ``/``. ``x`` cancels the
selected running job after a confirmation; enter on a run opens its detail.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Header, Input, Static

from clusterkit import catalog
from clusterkit.core.fmt import human_bytes, human_count, human_seconds
from clusterkit.core.jobspec import Job
from clusterkit.core.records import RunRecord
from clusterkit.tui.screens.base import LiveScreen
from clusterkit.tui.state import epoch_summary, epochs_param, planned_epochs
from clusterkit.tui.widgets import EpochsLine, show_text, state_text, sync_table


def _table(table_id: str, *columns: str) -> DataTable[object]:
    table: DataTable[object] = DataTable(id=table_id, cursor_type="row")
    for column in columns:
        table.add_column(column, key=column)
    return table


def matches(record: RunRecord, needle: str) -> bool:
    """The history filter: every word appears in the run's id, job, status, engine or error."""
    hay = " ".join([record.id, record.job, record.status, str(record.params.get("engine", "")),
                    record.error or ""]).lower()  # fmt: skip
    return all(word in hay for word in needle.lower().split())


class JobsScreen(LiveScreen):
    BINDINGS = [
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        self.jobs: dict[str, Job] = {job.name: job for job in catalog.list_jobs()}
        self.epoch_lines = {name: EpochsLine(name) for name in self.jobs}
        yield Header()
        yield Static("Catalog: enter opens a job's parameters to submit it", classes="title")
        yield _table("catalog", "job", "engines", "summary")
        with Vertical(id="catalog-epochs"):  # shown when a job's latest run has epochs
            yield from self.epoch_lines.values()
        yield Static("Running", classes="title")
        yield _table("running", "run", "job", "elapsed", "peak memory", "progress")
        yield Static("History", classes="title", id="history-title")
        yield Input(placeholder="filter: words in id, job, status, engine, error", id="filter")
        yield _table("history", "run", "job", "status", "wall", "peak memory", "error")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one("#catalog-epochs", Vertical).display = False
        rows = {job.name: (job.name, "|".join(job.engines), job.summary)
                for job in self.jobs.values()}  # fmt: skip
        sync_table(self.query_one("#catalog", DataTable), rows)
        self.query_one("#catalog", DataTable).focus()

    def show_state(self) -> None:
        now = self.now()
        state = self.state
        running = {}
        for r in state.records:
            if r.final:
                continue
            report = state.progress.get(r.id)
            progress = r.status
            if report and report.get("total"):
                share = report["done"] / report["total"]
                progress = f"{share:.0%} of {human_count(report['total'])} {report['unit']}"
            elif report and report.get("stage"):
                progress = f"{report['stage']} for {human_seconds(report['seconds'])}"
            running[r.id] = (r.id, r.job, human_seconds(r.elapsed_s(now)),
                             human_bytes(state.live_peaks.get(r.id) or None), progress)  # fmt: skip
        sync_table(self.query_one("#running", DataTable), running)
        needle = self.query_one("#filter", Input).value.strip()
        history = {
            r.id: (
                r.id,
                r.job,
                state_text(r.status),
                human_seconds(r.wall_s),
                human_bytes(r.peak_rss_bytes),
                Text((r.error or "")[:120]),
            )
            for r in state.records
            if r.final and (not needle or matches(r, needle))
        }
        table = self.query_one("#history", DataTable)
        if sync_table(table, history):
            table.sort("run", reverse=True)
        shown = f" (filter: {needle!r}, {len(history)} shown)" if needle else ""
        show_text(self.query_one("#history-title", Static), f"History{shown}")
        self.show_epochs()

    def show_epochs(self) -> None:
        """Each catalog job's latest run, as a sparkline and caption if it has epochs."""
        latest = {r.job: r for r in self.state.records}  # oldest first: the newest stays
        any_shown = False
        for name, line in self.epoch_lines.items():
            record = latest.get(name)
            epochs = self.state.epochs.get(record.id, []) if record is not None else []
            caption = Text()
            if record is not None and epochs:
                if record.status in ("failed", "cancelled"):  # it stopped short of its epochs
                    caption.append_text(state_text(record.status))
                    caption.append(" · ")
                total = planned_epochs(record, epochs, epochs_param(self.jobs[name]))
                caption.append(epoch_summary(epochs, total))
            line.show(record.id if record is not None else None, epochs, caption)
            any_shown = any_shown or bool(epochs)
        self.query_one("#catalog-epochs", Vertical).display = any_shown

    # --- actions ------------------------------------------------------------------------

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.query_one("#history", DataTable).focus()
        self.show_state()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self.show_state()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.query_one("#history", DataTable).focus()

    @on(DataTable.RowSelected)
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        key = str(event.row_key.value)
        if event.data_table.id == "catalog":
            self.console.open_job_form(key)
        else:
            self.console.open_run(key)

    def _selected_run(self) -> RunRecord | None:
        """The run under the cursor of the history if it has focus, else of the running table."""
        history = self.query_one("#history", DataTable)
        table = history if history.has_focus else self.query_one("#running", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((r for r in self.state.records if r.id == key), None)

    def action_cancel_run(self) -> None:
        self.console.confirm_cancel(self._selected_run())
