"""The run detail's "open report" (``r``), driven with Pilot on the fixed cluster state: the
report is written into the run's folder and its path shown; a browser is opened only where
there is a display, and no display is never an error."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from clusterkit.tui.screens.run_detail import RunDetailScreen
from tests.tui.conftest import FixedSource, fixed_app, settle

SPARK_ETL = "20261121-100200-cccc"


async def _report_of(fixed_store: Path, run_id: str) -> tuple[RunDetailScreen, str]:
    """Open ``run_id`` from the history, press ``r``, wait for the report; the screen and
    what its report line says."""
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        history = app.screen.query_one("#history", DataTable)
        history.focus()
        history.move_cursor(row=history.get_row_index(run_id))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, RunDetailScreen) and screen.run_id == run_id
        await settle(pilot)
        line = screen.query_one("#report", Static)
        assert not line.display  # nothing until asked
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert line.display
        return screen, str(line.render())


async def test_r_writes_the_runs_report_and_shows_its_path_without_a_display(
    fixed_store: Path, monkeypatch: pytest.MonkeyPatch
):
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)

    def no_browser(url: str) -> bool:
        raise AssertionError(f"a browser was opened without a display: {url}")

    monkeypatch.setattr("webbrowser.open", no_browser)
    screen, said = await _report_of(fixed_store, SPARK_ETL)
    report = fixed_store / SPARK_ETL / "report.html"
    assert screen.report_path == str(report) and report.exists()
    assert said.startswith(f"report: {report} (open it in a browser")
    html = report.read_text()
    assert f"run {SPARK_ETL}" in html and "Wall time by stage" in html
    assert (fixed_store / SPARK_ETL / f"report-{SPARK_ETL}-stages.png").exists()


async def test_r_opens_the_report_where_there_is_a_display(
    fixed_store: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    opened: list[str] = []

    def browser(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr("webbrowser.open", browser)
    _, said = await _report_of(fixed_store, SPARK_ETL)
    report = fixed_store / SPARK_ETL / "report.html"
    assert opened == [report.resolve().as_uri()]
    assert said.startswith(f"report: {report} (opened in the browser")


async def test_a_report_that_cannot_be_written_is_said_not_a_crash(
    fixed_store: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("DISPLAY", raising=False)
    (fixed_store / SPARK_ETL / "report.html").mkdir()  # in the way (root writes anywhere)
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.open_run(SPARK_ETL)
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, RunDetailScreen)
        await pilot.press("r")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert screen.report_path is None
        assert not screen.query_one("#report", Static).display
        notes = [n.message for n in app._notifications]
        assert any(n.startswith("report not written: IsADirectoryError") for n in notes), notes
        await pilot.press("escape")  # the console goes on
        assert not isinstance(app.screen, RunDetailScreen)
