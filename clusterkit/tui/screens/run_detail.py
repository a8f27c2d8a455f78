"""Run detail: the record, time per stage, a training run's accuracy per epoch, memory over
time per node, and the log, following while the run goes on (``f`` stops and resumes
following; ``x`` cancels a running job; ``r`` writes the run's report, shows its path and
opens it in a browser where there is a display)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Footer, Header, Log, Static

from clusterkit import catalog
from clusterkit.core.errors import ClusterkitError
from clusterkit.core.fmt import human_bytes, human_seconds
from clusterkit.core.records import RunRecord
from clusterkit.runs import tails
from clusterkit.runs.epochs import Epoch
from clusterkit.runs.store import RunStore
from clusterkit.runs.tails import LogTail, MetricsTail, Stage
from clusterkit.tui.screens.base import LiveScreen
from clusterkit.tui.state import epochs_param, planned_epochs, read_epochs
from clusterkit.tui.widgets import EpochsView, column_chart, show_text, state_text

LOG_LINES = 5000


@dataclass
class RunReading:
    record: RunRecord
    chunks: list[tuple[str, str]]
    stages: list[Stage]
    series: dict[str, list[tuple[float, int]]]
    epochs: list[Epoch]


class RunDetailRead(Message):
    def __init__(self, reading: RunReading | None, error: str | None = None) -> None:
        super().__init__()
        self.reading, self.error = reading, error


def stages_text(stages: list[Stage]) -> Text:
    if not stages:
        return Text("stages: none reported yet", style="dim")
    text = Text("stages: ")
    for i, stage in enumerate(stages):
        if i:
            text.append(" · ")
        text.append(f"{stage.name} {human_seconds(stage.seconds)}")
        if stage.running:
            text.append(" (running)", style="bold")
    return text


def memory_chart(series: dict[str, list[tuple[float, int]]], *, width: int, rows: int) -> Text:
    """Per node, the run's memory over time as a column chart on one scale (0 to the highest
    peak of any node), with each node's peak and latest figure."""
    if not series or not any(series.values()):
        return Text("memory: no samples yet (taken once a second while the run goes on)",
                    style="dim")  # fmt: skip
    top = max(rss for points in series.values() for _, rss in points) or 1
    start = min(points[0][0] for points in series.values() if points)
    end = max(points[-1][0] for points in series.values() if points)
    text = Text(f"memory of the run's processes per node, 0 to {human_bytes(top)}, "
                f"over {human_seconds(end - start)}")  # fmt: skip
    height = max(2, rows // max(1, len(series)) - 1)
    for node, points in series.items():
        values = [float(rss) for _, rss in points]
        peak = max(values) if values else 0
        now = values[-1] if values else 0
        text.append(f"\n{node}: peak {human_bytes(peak)}, last {human_bytes(now)}", style="bold")
        for line in column_chart(values, width=width, height=height, top=float(top)):
            text.append("\n" + line)
    return text


class ReportWritten(Message):
    """The run's report was written (``path``; ``opened`` in a browser), or ``error``."""

    def __init__(self, path: str | None, *, opened: bool = False, error: str | None = None,
                 missing: int = 0) -> None:  # fmt: skip
        super().__init__()
        self.path, self.opened, self.error, self.missing = path, opened, error, missing


class RunDetailScreen(LiveScreen):
    BINDINGS = [
        Binding("escape,backspace", "app.pop_screen", "Back"),
        Binding("f", "toggle_follow", "Follow"),
        Binding("x", "cancel_run", "Cancel"),
        Binding("r", "open_report", "Report"),
    ]

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.record: RunRecord | None = None
        self.series: dict[str, list[tuple[float, int]]] = {}
        self.epochs: list[Epoch] = []
        self._log_tail: LogTail | None = None
        self._metrics: MetricsTail | None = None
        self._final_epochs: list[Epoch] | None = None  # read once the run is over
        self._default_epochs: int | None = None  # the job's, for "epochs 3/6"
        self._job_read = False
        self.report_path: str | None = None  # the report written last (``r``)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="summary")
        yield Static(id="report")  # shown once a report is written
        yield Static(id="stages")
        yield EpochsView(id="epochs")
        yield Static(id="chart")
        yield Log(id="log", max_lines=LOG_LINES, auto_scroll=True)
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.read()
        self.set_interval(self.console.refresh_s / 2, self.poll)  # twice as often as the app

    def poll(self) -> None:
        busy = any(w.group == "run-detail" and not w.is_finished for w in self.workers)
        if not self.console.paused and not busy:
            self.read()

    @work(thread=True, group="run-detail", exit_on_error=False)
    def read(self) -> None:
        try:
            store = self.console.source.store()
            if store is None:
                raise LookupError("no cluster is known, so there is no run store")
            if self._log_tail is None or self._metrics is None:
                self._log_tail = LogTail(store, self.run_id)
                self._metrics = MetricsTail(store, self.run_id)
            record = store.load(self.run_id)
            if not self._job_read:  # the first reading: the job's epochs, if it has any
                self._default_epochs, self._job_read = self._job_epochs(record.job), True
            chunks = self._log_tail.read()
            self._metrics.read()
            reading = RunReading(
                record=record,
                chunks=chunks,
                stages=tails.stages(store, self.run_id, now=self.now()),
                series={node: list(points) for node, points in self._metrics.series.items()},
                epochs=self._read_epochs(store, record),
            )
        except Exception as exc:  # shown in place
            self.post_message(RunDetailRead(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunDetailRead(reading))

    @staticmethod
    def _job_epochs(job: str) -> int | None:
        try:
            return epochs_param(catalog.find_job(job))
        except Exception:  # a job no longer in the catalog: the count of epochs alone
            return None

    def _read_epochs(self, store: RunStore, record: RunRecord) -> list[Epoch]:
        """epochs.json while the run goes on; result.json's epochs once it is over (then read
        no more: a final run does not change)."""
        if self._final_epochs is not None:
            return self._final_epochs
        if not record.final:
            return read_epochs(store, self.run_id)
        epochs = read_epochs(store, self.run_id, store.read_json(self.run_id, "result.json"))
        self._final_epochs = epochs
        return epochs

    def on_run_detail_read(self, message: RunDetailRead) -> None:
        if message.reading is None:
            self.query_one("#summary", Static).update(
                f"run {self.run_id}: cannot be read ({message.error})"
            )
            return
        reading = message.reading
        self.record, self.series = reading.record, reading.series
        self.epochs = reading.epochs
        log = self.query_one("#log", Log)
        for _, chunk in reading.chunks:
            log.write(chunk)
        show_text(self.query_one("#stages", Static), stages_text(reading.stages))
        self.show_state()

    def show_state(self) -> None:
        record = self.record
        if record is None:
            return
        summary = Text(f"run {record.id} · {record.job} · ")
        summary.append(state_text(record.status))
        elapsed = record.elapsed_s(self.now())
        peak = record.peak_rss_bytes or (self._metrics.peak_rss_bytes if self._metrics else None)
        summary.append(f" · {'wall' if record.final else 'elapsed'} {human_seconds(elapsed)}"
                       f" · peak {human_bytes(peak or None)}")  # fmt: skip
        params = " ".join(f"--{k.replace('_', '-')}={v}" for k, v in record.params.items())
        summary.append(f"\n{params or 'default parameters'}", style="dim")
        if record.error:
            summary.append(f"\nerror: {record.error}", style="bold")
        show_text(self.query_one("#summary", Static), summary)
        total = planned_epochs(record, self.epochs, self._default_epochs)
        self.query_one("#epochs", EpochsView).show(self.epochs, total)
        width = max(20, (self.size.width or 80) - 2)
        show_text(self.query_one("#chart", Static), memory_chart(self.series, width=width, rows=8))

    def action_toggle_follow(self) -> None:
        log = self.query_one("#log", Log)
        log.auto_scroll = not log.auto_scroll
        if log.auto_scroll:
            log.scroll_end(animate=False)
        self.notify("following the log" if log.auto_scroll else "not following the log")

    def action_cancel_run(self) -> None:
        self.console.confirm_cancel(self.record)

    def action_open_report(self) -> None:
        if any(w.group == "report" and not w.is_finished for w in self.workers):
            self.notify("the report is being written ...")
            return
        self.notify(f"writing the report of run {self.run_id} ...")
        self.write_report()

    @work(thread=True, group="report", exit_on_error=False)
    def write_report(self) -> None:
        """The run's report into its folder (the core's report_run, matplotlib: a second or
        two), then opened where a display is; never raises (the error is shown)."""
        from clusterkit.report import open_in_browser, report_run

        try:
            store = self.console.source.store()
            if store is None:
                raise LookupError("no cluster is known, so there is no run store")
            with contextlib.suppress(ClusterkitError):  # a master gone: the copies here
                store.refresh(self.run_id)
            written = report_run(store, store.load(self.run_id))
        except Exception as exc:
            self.post_message(ReportWritten(None, error=f"{type(exc).__name__}: {exc}"))
            return
        opened = open_in_browser(written.html)
        self.post_message(ReportWritten(str(written.html), opened=opened,
                                        missing=len(written.missing)))  # fmt: skip

    def on_report_written(self, message: ReportWritten) -> None:
        line = self.query_one("#report", Static)
        if message.path is None:
            self.notify(f"report not written: {message.error}", severity="error")
            return
        self.report_path = message.path
        how = "opened in the browser" if message.opened else "open it in a browser"
        missing = f"; {message.missing} figure(s) not drawn, the page says why" if (
            message.missing) else ""  # fmt: skip
        show_text(line, Text(f"report: {message.path} ({how}{missing})"))
        line.display = True
        self.notify(f"report: {message.path}")
