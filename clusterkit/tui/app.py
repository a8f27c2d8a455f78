"""The ``clusterkit tui`` app: one screen per view, fed by polling workers.

The app owns the polling (nodes and runs every ``refresh_s``, services every other tick), in
thread workers that call the core through a :class:`~clusterkit.watch.ClusterSource` and post
messages; the UI thread folds them into :class:`ConsoleState` and the active screen redraws
from it. A poll still running when the next is due is not started twice, so a service that
hangs (each API read has a 2 s timeout) slows only its own readings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import WorkerState

from clusterkit import catalog
from clusterkit.core.fmt import human_seconds
from clusterkit.core.records import RunRecord
from clusterkit.runs import compare
from clusterkit.runs.epochs import Epoch
from clusterkit.runs.launcher import RunWatcher
from clusterkit.runs.store import RunStore
from clusterkit.runs.tails import MetricsTail, progress, stages
from clusterkit.tui.screens.compare import CompareScreen
from clusterkit.tui.screens.dialogs import ConfirmScreen, JobFormScreen
from clusterkit.tui.screens.help import HelpScreen
from clusterkit.tui.screens.jobs import JobsScreen
from clusterkit.tui.screens.overview import OverviewScreen
from clusterkit.tui.screens.run_detail import RunDetailScreen
from clusterkit.tui.state import (
    ConsoleState,
    NodesRead,
    RunsRead,
    ServicesRead,
    read_epochs,
)
from clusterkit.watch import ClusterSource, LiveSource

REFRESH_S = 1.0


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class ClusterkitApp(App[None]):
    """A live console for one cluster (the current one unless named) and its jobs."""

    TITLE = "clusterkit"
    CSS_PATH = "app.tcss"
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = [
        Binding("o", "switch_mode('overview')", "Overview"),
        Binding("j", "switch_mode('jobs')", "Jobs"),
        Binding("c", "switch_mode('compare')", "Compare"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(
        self,
        source: ClusterSource | None = None,
        *,
        clock: Callable[[], float] = time.time,
        refresh_s: float = REFRESH_S,
    ) -> None:
        super().__init__()
        self.source: ClusterSource = source or LiveSource()
        self.clock = clock
        self.refresh_s = refresh_s
        self.model = ConsoleState()
        self.paused = False
        self._ticks = 0
        self._tails: dict[str, MetricsTail] = {}  # active runs' metrics, read as written
        self._measured: dict[str, compare.Measurement] = {}  # final runs do not change
        self._epochs: dict[str, list[Epoch]] = {}  # nor do their epochs (runs that have any)
        self._run_watcher: RunWatcher | None = None

    # --- modes (one screen per view) --------------------------------------------------

    def on_mount(self) -> None:
        self.add_mode("overview", OverviewScreen)
        self.add_mode("jobs", JobsScreen)
        self.add_mode("compare", CompareScreen)
        self.switch_mode("overview")
        self.poll()
        self.set_interval(self.refresh_s, self.poll)

    def on_unmount(self) -> None:
        self.source.close()  # the nodes' samplers and SSH connections

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self.notify("refresh paused (p resumes)" if self.paused else "refresh resumed")
        self.show_state()

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for mode, about in (("overview", "nodes and services"),
                            ("jobs", "catalog, running jobs, history"),
                            ("compare", "runs side by side")):  # fmt: skip
            yield SystemCommand(mode.title(), about, lambda mode=mode: self.switch_mode(mode))
        yield SystemCommand("Pause or resume refresh", "p", self.action_toggle_pause)
        for job in catalog.list_jobs():
            yield SystemCommand(f"Submit {job.name}", job.summary,
                                lambda name=job.name: self.open_job_form(name))  # fmt: skip

    def open_job_form(self, job: str) -> None:
        self.push_screen(JobFormScreen(job))

    def open_run(self, run_id: str) -> None:
        self.push_screen(RunDetailScreen(run_id))

    def confirm_cancel(self, record: RunRecord | None) -> None:
        """Ask, then cancel ``record`` in a worker (cancel waits until the run has stopped)."""
        if record is None or record.final:
            self.notify("no running job selected", severity="warning")
            return
        question = f"Cancel run {record.id} ({record.job})? Its processes on every node stop."

        def answered(yes: bool | None) -> None:
            if yes:
                self.cancel_run(record.id)

        self.push_screen(ConfirmScreen(question), answered)

    @work(thread=True, group="cancel", exit_on_error=False)
    def cancel_run(self, run_id: str) -> None:
        self.call_from_thread(self.notify, f"cancelling run {run_id} ...")
        try:
            record = self.source.cancel(run_id)
        except Exception as exc:
            self.call_from_thread(self.notify, f"cancel failed: {exc}", severity="error")
            return
        self.call_from_thread(self.notify, f"run {record.id} {record.status}")

    # --- polling ----------------------------------------------------------------------

    def poll(self) -> None:
        """One refresh tick: start the readings that are due and not still running."""
        if self.paused:
            return
        self._ticks += 1
        self._start("nodes", self.read_nodes)
        self._start("runs", self.read_runs)
        if self._ticks % 2 == 1:
            self._start("services", self.read_services)

    def _start(self, group: str, reader: Callable[[], object]) -> None:
        busy = (WorkerState.PENDING, WorkerState.RUNNING)
        if not any(w.group == group and w.state in busy for w in self.workers):
            reader()

    @work(thread=True, group="nodes", exit_on_error=False)
    def read_nodes(self) -> None:
        now = self.clock()
        try:
            info = self.source.info()
            self.post_message(
                NodesRead(info, self.source.nodes() if info.state == "up" else [], now)
            )
        except Exception as exc:  # a reading that fails is shown, never a crash
            self.post_message(NodesRead(self.model.info, [], now, _error(exc)))

    @work(thread=True, group="services", exit_on_error=False)
    def read_services(self) -> None:
        now = self.clock()
        try:
            self.post_message(ServicesRead(self.source.services(), now))
        except Exception as exc:
            self.post_message(ServicesRead([], now, _error(exc)))

    @work(thread=True, group="runs", exit_on_error=False)
    def read_runs(self) -> None:
        now = self.clock()
        try:
            store = self.source.store()
            if store is None:
                self.post_message(RunsRead([], {}, {}, {}, now))
                return
            records = self._watcher(store).poll()
            peaks, reports = {}, {}
            epochs = {}
            for record in records:
                if record.final:
                    self._tails.pop(record.id, None)
                    if record.id not in self._measured:  # a final run does not change
                        result = store.read_json(record.id, "result.json")
                        self._measured[record.id] = compare.measurement(record, result)
                        trained = read_epochs(store, record.id, result)
                        if trained:
                            self._epochs[record.id] = trained
                    continue
                running = read_epochs(store, record.id)  # epochs.json, rewritten each epoch
                if running:
                    epochs[record.id] = running
                tail = self._tails.setdefault(record.id, MetricsTail(store, record.id))
                tail.read()
                peaks[record.id] = tail.peak_rss_bytes
                report = progress(store, record.id)
                done = stages(store, record.id, now=now)
                if report is None and done and done[-1].running:
                    report = {"stage": done[-1].name, "seconds": done[-1].seconds}
                if report is not None:
                    reports[record.id] = report
            epochs.update(self._epochs)
            self.post_message(RunsRead(records, peaks, reports, dict(self._measured), now,
                                       epochs=epochs))  # fmt: skip
        except Exception as exc:
            model = self.model
            self.post_message(RunsRead(model.records, {}, {}, model.measured, now, _error(exc),
                                       epochs=model.epochs))  # fmt: skip

    def _watcher(self, store: RunStore) -> RunWatcher:
        if self._run_watcher is None or self._run_watcher.store.root != store.root:
            self._run_watcher = RunWatcher(store, reap=self.source.reap)
        return self._run_watcher

    # --- readings into state ----------------------------------------------------------

    def _note(self, source: str, error: str | None) -> None:
        if error:
            self.model.errors[source] = error
        else:
            self.model.errors.pop(source, None)

    def on_nodes_read(self, message: NodesRead) -> None:
        self.model.info = message.info
        if message.info.state != "up":
            self.model.nodes.forget_all()
        self.model.nodes.update(message.samples, message.at)
        self._note("nodes", message.error)
        self.show_state()

    def on_services_read(self, message: ServicesRead) -> None:
        if message.error is None:
            self.model.board.update(message.readings, message.at)
        self._note("services", message.error)
        self.show_state()

    def on_runs_read(self, message: RunsRead) -> None:
        self.model.records = message.records
        self.model.live_peaks = message.live_peaks
        self.model.progress = message.progress
        self.model.measured = message.measured
        self.model.epochs = message.epochs
        self._note("runs", message.error)
        self.show_state()

    def cluster_line(self) -> str:
        """Cluster, provider, uptime (or state) and whether refresh is paused."""
        info = self.model.info
        uptime = info.uptime_s(self.clock())
        parts = [f"cluster {info.name or '-'}", f"provider {info.provider or '-'}"]
        parts.append(f"up {human_seconds(uptime)}" if uptime is not None else info.state.upper())
        parts += [text for text in (info.guard, info.cost) if text]
        if self.paused:
            parts.append("refresh PAUSED (p resumes)")
        return " · ".join(parts)

    def show_state(self) -> None:
        """Redraw the active screen from the state, and the header's cluster line."""
        self.sub_title = self.cluster_line()
        screen = self.screen
        show = getattr(screen, "show_state", None)
        if show is not None and screen.is_mounted:  # a screen just pushed draws on its resume
            show()
