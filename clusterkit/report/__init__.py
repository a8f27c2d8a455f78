"""``clusterkit report``: one self-contained HTML page with PNG figures beside it, for runs
and bench results.

:mod:`.gather` reads a run folder (:func:`read_run`) or a bench file (:func:`read_bench`)
into plain dataclasses; :mod:`.figures` draws them with matplotlib (Agg, no pyplot);
:mod:`.page` writes the HTML; :func:`write_report` (:mod:`.build`) does all three. Runs are
read from a run store's folders on this machine (a remote cluster's are the copies here).
"""

from clusterkit.report.build import TITLES, Written, write_report
from clusterkit.report.gather import (
    ENVIRONMENT_KEY,
    Bench,
    RunData,
    compare_environments,
    read_bench,
    read_run,
)

__all__ = ["ENVIRONMENT_KEY", "TITLES", "Bench", "RunData", "Written", "compare_environments",
           "read_bench", "read_run", "write_report"]  # fmt: skip
