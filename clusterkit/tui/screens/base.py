"""The base of the live screens: typed access to the app and a redraw on every return."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from clusterkit.tui.app import ClusterkitApp
    from clusterkit.tui.state import ConsoleState


class LiveScreen(Screen[Any]):
    """A screen drawn from the app's :class:`ConsoleState` by :meth:`show_state`, which the
    app calls after every reading while the screen is active, and which runs on resume."""

    @property
    def console(self) -> ClusterkitApp:
        return cast("ClusterkitApp", self.app)

    @property
    def state(self) -> ConsoleState:
        return self.console.model

    def now(self) -> float:
        return self.console.clock()

    def on_screen_resume(self) -> None:
        self.show_state()

    def show_state(self) -> None:
        raise NotImplementedError
