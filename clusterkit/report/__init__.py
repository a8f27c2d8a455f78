"""``clusterkit report``: one self-contained HTML page with PNG figures beside it, for runs
and bench results.

:mod:`.gather` reads a run folder (:func:`read_run`) or a bench file (:func:`read_bench`)
into plain dataclasses; :mod:`.figures` draws them with matplotlib (Agg, no pyplot);
:mod:`.page` writes the HTML; :func:`write_report` (:mod:`.build`) does all three, and
:func:`report_run` one run's into its folder. Runs are read from a run store's folders on
this machine (a remote cluster's are the copies here). :mod:`.browser` opens a page only
where a display is.
"""

from clusterkit.report.browser import display_available, open_in_browser
from clusterkit.report.build import RUN_REPORT, TITLES, Written, report_run, write_report
from clusterkit.report.gather import (
    ENVIRONMENT_KEY,
    Bench,
    RunData,
    compare_environments,
    read_bench,
    read_run,
)

__all__ = ["ENVIRONMENT_KEY", "RUN_REPORT", "TITLES", "Bench", "RunData", "Written",
           "compare_environments", "display_available", "open_in_browser", "read_bench",
           "read_run", "report_run", "write_report"]  # fmt: skip
