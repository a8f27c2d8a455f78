"""``clusterkit doctor``: what is wrong with this machine and the cluster, one line per finding
(OK, WARN or FAIL, what was seen, the runbook to follow); exit 1 on any FAIL.

:func:`run_doctor` runs the checks (:mod:`.checks`: this machine's in :mod:`.machine`, the
ports in :mod:`.ports`, the state files in :mod:`.state_files`, the cluster's in
:mod:`.cluster_checks` and :mod:`.stuck_runs`, a remote cluster's nodes in :mod:`.nodes` and
:mod:`.node_services`, AWS's in :mod:`.aws_checks`) on what :mod:`.target` found, and returns a
:class:`Report`; :func:`render_lines` prints it, :meth:`Report.to_json` is ``--json``
(docs/doctor.md), :func:`shell_vars` is ``--vars RUNBOOK`` (the values a runbook's steps act
on, for ``eval``).
"""

from clusterkit.doctor.checks import CHECKS, Check, run_doctor, with_drift
from clusterkit.doctor.report import RUNBOOKS, Finding, Report, render_lines, shell_vars

__all__ = ["CHECKS", "RUNBOOKS", "Check", "Finding", "Report", "render_lines", "run_doctor",
           "shell_vars", "with_drift"]  # fmt: skip
