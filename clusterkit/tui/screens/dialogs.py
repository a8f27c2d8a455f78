"""Modal dialogs: a yes/no confirmation, and a job's parameter form that submits it."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from clusterkit import catalog
from clusterkit.tui.screens.base import console_of


class ConfirmScreen(ModalScreen[bool]):
    """Asks ``question``; dismisses with True for yes (``y``), False for no (``n``, escape)."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question)
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class JobFormScreen(ModalScreen[str | None]):
    """A job's parameters, prefilled with their defaults; Submit checks them as
    ``clusterkit run`` does and submits the job (dismissing with the new run's id), or shows
    the refusal in place and stays open."""

    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, job: str) -> None:
        super().__init__()
        self.job = catalog.find_job(job)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Label(f"Submit {self.job.name}: {self.job.summary}", classes="title")
            with VerticalScroll():
                for param in self.job.params:
                    yield Label(f"--{param.name.replace('_', '-')}  {param.help}")
                    if param.kind == "choice":
                        yield Select([(c, c) for c in param.choices], value=param.default,
                                     allow_blank=False, id=f"p-{param.name}")  # fmt: skip
                    else:
                        yield Input(catalog.default_text(param), id=f"p-{param.name}")
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Submit (ctrl+s)", id="submit", variant="primary")
                yield Button("Close (esc)", id="close")

    def texts(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for param in self.job.params:
            widget = self.query_one(f"#p-{param.name}")
            value: Any = widget.value if isinstance(widget, (Input, Select)) else ""
            values[param.name] = "" if value is Select.BLANK else str(value)
        return values

    def action_close(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        self.query_one("#form-error", Static).update("submitting ...")
        self.submit(catalog.args_from_form(self.job.name, self.texts()))

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.action_submit() if event.button.id == "submit" else self.action_close()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def submit(self, args: list[str]) -> None:
        source = console_of(self).source
        try:
            record = source.submit(self.job.name, args)
        except Exception as exc:  # shown in the form, which stays open to fix it
            self.app.call_from_thread(self._refused, str(exc))
            return
        self.app.call_from_thread(self._submitted, record.id)

    def _refused(self, message: str) -> None:
        self.query_one("#form-error", Static).update(f"refused: {message}")

    def _submitted(self, run_id: str) -> None:
        self.app.notify(f"run {run_id} ({self.job.name}) submitted")
        self.dismiss(run_id)
