"""The console against the real local cluster: its nodes and services, a job submitted from a
form and seen to finish, a run cancelled after the confirmation, and, in a real terminal, what
it costs idle and that q leaves the terminal as it found it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input

from clusterkit.core.records import RunRecord
from clusterkit.metrics.sampling import RunProcessFinder
from clusterkit.runs.store import FolderRunStore
from clusterkit.tui.app import ClusterkitApp
from clusterkit.tui.screens.dialogs import ConfirmScreen, JobFormScreen
from clusterkit.tui.screens.overview import NodeCard
from clusterkit.watch import LiveSource
from tests.conftest import FIXTURE_JOBS, LocalCluster
from tests.tui.terminal import run_console

pytestmark = pytest.mark.cluster

IDLE_LIMIT_PERCENT = 5.0


async def until(pilot: Pilot, check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await pilot.pause(0.2)


def table_rows(app: ClusterkitApp, table_id: str) -> dict[str, list[str]]:
    table = app.screen.query_one(f"#{table_id}", DataTable)
    return {str(k.value): [str(c) for c in table.get_row(k)] for k in table.rows}


async def submit_stages(app: ClusterkitApp, pilot: Pilot, seconds: str) -> None:
    """Open the `stages` job's form from the catalog, set --seconds, submit."""
    await pilot.press("j")
    catalog = app.screen.query_one("#catalog", DataTable)
    catalog.focus()
    catalog.move_cursor(row=catalog.get_row_index("stages"))
    await pilot.press("enter")
    assert isinstance(app.screen, JobFormScreen)
    app.screen.query_one("#p-seconds", Input).value = seconds
    await pilot.press("ctrl+s")
    await until(pilot, lambda: not isinstance(app.screen, JobFormScreen), timeout_s=30,
                what="the form to submit and close")  # fmt: skip


@pytest.fixture
def console_env(local_cluster: LocalCluster,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:  # fmt: skip
    """The shared cluster, seen by the console; a run a test leaves going (one that failed
    before it cancelled) is cancelled after it, so the next test starts from an idle cluster."""
    monkeypatch.setenv("CLUSTERKIT_HOME", str(local_cluster.home))
    monkeypatch.setenv("CLUSTERKIT_JOBS_PATH", str(FIXTURE_JOBS))
    yield local_cluster
    store = FolderRunStore(Path(local_cluster.up["state_dir"]) / "runs")
    for record in store.active():
        local_cluster.cli("cancel", record.id)


async def test_overview_of_the_real_cluster_and_a_job_submitted_and_finished(console_env):
    app = ClusterkitApp(LiveSource())
    async with app.run_test(size=(100, 30)) as pilot:

        def services_up() -> bool:
            states = {row[0]: row[1] for row in table_rows(app, "services").values()}
            wanted = ("spark-master", "spark-worker", "spark-connect", "ray-head", "ray-node",
                      "storage")  # fmt: skip
            return all(states.get(s) == "up" for s in wanted)

        await until(pilot, services_up, timeout_s=20, what="every service listed up")
        await until(pilot, lambda: len(app.screen.query(NodeCard)) == 1, timeout_s=10,
                    what="the node's card, from its sampler")  # fmt: skip
        cards = list(app.screen.query(NodeCard))
        assert cards[0].sample["cpu_count"] >= 1
        await until(pilot, lambda: len(cards[0].cpu) >= 3, timeout_s=10,
                    what="node metrics refreshed every second")  # fmt: skip

        before = {r.id for r in app.model.records}
        await submit_stages(app, pilot, "2")

        def new_run() -> RunRecord | None:
            return next((r for r in app.model.records if r.id not in before), None)

        await until(pilot, lambda: new_run() is not None, timeout_s=20, what="the run listed")
        run = new_run()
        assert run is not None and run.job == "stages"
        await until(pilot, lambda: table_rows(app, "history").get(run.id, [""] * 3)[2]
                    == "succeeded", timeout_s=90, what="the run shown succeeded")  # fmt: skip
        store = FolderRunStore(Path(console_env.up["state_dir"]) / "runs")
        record = store.load(run.id)
        assert record.status == "succeeded" and record.params == {"seconds": 2.0}


async def test_cancel_a_running_job_after_confirming(console_env):
    app = ClusterkitApp(LiveSource())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause(1.0)
        before = {r.id for r in app.model.records}
        await submit_stages(app, pilot, "600")
        await until(pilot, lambda: any(r.id not in before for r in app.model.records),
                    timeout_s=20, what="the run listed")  # fmt: skip
        run_id = next(r.id for r in app.model.records if r.id not in before)
        await until(pilot, lambda: run_id in table_rows(app, "running"), timeout_s=30,
                    what="the run shown running")  # fmt: skip
        running = app.screen.query_one("#running", DataTable)
        running.focus()
        running.move_cursor(row=running.get_row_index(run_id))
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # not yet: nothing happens
        await pilot.pause(1.0)
        assert run_id in table_rows(app, "running")
        await pilot.press("x", "y")
        await until(pilot, lambda: table_rows(app, "history").get(run_id, [""] * 3)[2]
                    == "cancelled", timeout_s=90, what="the run shown cancelled")  # fmt: skip
    assert not RunProcessFinder(run_id, settle_s=0).find()


def test_in_a_real_terminal_idle_cost_and_a_clean_quit(console_env):
    result = run_console(dict(os.environ), idle_s=10.0)
    assert result.exit_code == 0, result.output[-2000:]
    assert result.restored_terminal
    assert result.quit_s < 5.0
    assert b"spark-master" in result.output  # it drew the overview of this cluster
    assert result.cpu_percent_of_core < IDLE_LIMIT_PERCENT, (
        f"idle console used {result.cpu_percent_of_core:.1f}% of a core over {result.idle_s:.0f} s"
    )
