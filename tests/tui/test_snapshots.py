"""Each screen drawn at 80x24 from the fixed cluster state, compared with its saved SVG.

After a deliberate change to a screen: ``pytest tests/tui/test_snapshots.py --snapshot-update``
and look at the new SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable

from tests.tui.conftest import FixedSource, fixed_app, ray_silent, settle


def drawn(snap_compare, source: FixedSource, before=None, press=()) -> bool:
    """The screen ``before`` (a Pilot coroutine) and ``press`` lead to, as its saved SVG."""
    return snap_compare(fixed_app(source), terminal_size=(80, 24), run_before=before,
                        press=list(press))  # fmt: skip


def test_overview(snap_compare, fixed_store: Path):
    source = FixedSource(fixed_store)

    async def before(pilot):
        await settle(pilot, polls=7)
        source.readings = ray_silent  # the Ray dashboard stops answering
        await settle(pilot, polls=2)

    assert drawn(snap_compare, source, before)


def test_jobs(snap_compare, fixed_store: Path):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("j")

    assert drawn(snap_compare, FixedSource(fixed_store), before)


def test_run_detail(snap_compare, fixed_store: Path):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("j")
        pilot.app.screen.query_one("#running", DataTable).focus()
        await pilot.press("enter")
        await settle(pilot)

    assert drawn(snap_compare, FixedSource(fixed_store), before)


def test_compare(snap_compare, fixed_store: Path):
    async def before(pilot):
        await settle(pilot)
        await pilot.press("c")
        table = pilot.app.screen.query_one("#runs", DataTable)
        table.move_cursor(row=table.get_row_index("20261121-100000-aaaa"))
        await pilot.press("a")

    assert drawn(snap_compare, FixedSource(fixed_store), before)


def test_help(snap_compare, fixed_store: Path):
    assert drawn(snap_compare, FixedSource(fixed_store), press=["question_mark"])
