"""The base of the live screens: what they need of the app (:class:`Console`) and a redraw
on every return."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

from textual.screen import Screen

from clusterkit.core.records import RunRecord
from clusterkit.tui.state import ConsoleState
from clusterkit.watch import ClusterSource


class Console(Protocol):
    """What the screens use of the app (:class:`clusterkit.tui.app.ClusterkitApp`)."""

    model: ConsoleState
    source: ClusterSource
    clock: Callable[[], float]
    refresh_s: float
    paused: bool

    def cluster_line(self) -> str: ...
    def confirm_cancel(self, record: RunRecord | None) -> None: ...
    def open_job_form(self, job: str) -> None: ...
    def open_run(self, run_id: str) -> None: ...


def console_of(screen: Screen[Any]) -> Console:
    """The app a screen belongs to, as the screens use it."""
    return cast(Console, screen.app)


class LiveScreen(Screen[Any]):
    """A screen drawn from the app's :class:`ConsoleState` by :meth:`show_state`, which the
    app calls after every reading while the screen is active, and which runs on resume."""

    @property
    def console(self) -> Console:
        return console_of(self)

    @property
    def state(self) -> ConsoleState:
        return self.console.model

    def now(self) -> float:
        return self.console.clock()

    def on_screen_resume(self) -> None:
        self.show_state()

    def show_state(self) -> None:
        raise NotImplementedError
