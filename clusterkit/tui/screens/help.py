"""Help: every view and its keys on one page (``?``; escape or ``?`` closes it)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
clusterkit tui: the cluster and its jobs, live

Everywhere
  o  Overview  nodes: CPU and memory now and over the last minute;
               services: state and the age of their last reading,
               STALE when a source stops answering
  j  Jobs      catalog, running jobs, history
  c  Compare   finished runs side by side, as bars
  p  pause or resume the refresh     ctrl+p  command palette
  ?  this help                       q       quit

Jobs
  enter  on a job: its parameters, then Submit (ctrl+s)
         on a run: its detail (log, stages, memory per node)
  /      filter the history (escape clears)
  x      cancel the selected running job (asks first)

Run detail
  f  follow the log or stop following     x  cancel      escape  back
  r  the run's report, in its folder (opened where there is a display)

Compare
  space  select a run   a  the runs of the same job and size
  n      select none

The console reads the same run store and services as the CLI:
`clusterkit status`, `runs`, `logs` and `cancel` show the same things.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Static(HELP, markup=False)
