"""What doctor found: one :class:`Finding` per thing it looked at, gathered in a :class:`Report`,
printed one line each (:func:`render_lines`) or as JSON (:meth:`Report.to_json`, schema in
docs/doctor.md)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")
#: The version of :meth:`Report.to_json`'s layout.
SCHEMA = 1
#: The runbooks a finding may send the operator to: ``docs/runbooks/NAME.md``.
RUNBOOKS = (
    "java-missing",
    "disk-full",
    "port-in-use",
    "state-permissions",
    "lost-token-or-key",
    "restore-after-crash",
    "service-dead",
    "run-stuck",
    "job-out-of-memory",
    "operator-ip-changed",
    "left-billing",
    # the remote nodes' (clusterkit/doctor/nodes.py, node_services.py)
    "node-unreachable",
    "provisioning-failed",
    "hdfs-safe-mode",
    "clock-skew",
)


#: What a finding's variable may be called: a shell variable's name, in capitals.
VARIABLE = re.compile(r"[A-Z][A-Z0-9_]*")
#: Every variable a finding may carry: ``--vars`` unsets them all first, so a value an
#: earlier runbook left in the operator's shell is never acted on.
VARIABLES = ("PORT", "PID", "PROCESS", "RUN", "SERVICE", "LOG", "STATE_DIR", "FOLDER", "FILE",
             "CLUSTER", "CLUSTER_ID", "REGION", "CIDR", "PROVIDER", "NODE", "ADDRESS",
             "KNOWN_HOSTS")  # fmt: skip
UNSET = "unset " + " ".join(VARIABLES)


def runbook_path(name: str) -> str:
    """The runbook's page, relative to the repository's root."""
    return f"docs/runbooks/{name}.md"


@dataclass(frozen=True)
class Finding:
    """One thing a check saw: ``status`` ok, warn or fail; ``saw`` what, in one line; the
    ``runbook`` to follow (one of :data:`RUNBOOKS`) and the ``fix`` (one step), when there is
    one; ``data``, the values the runbook's steps act on (``PORT``, ``RUN``, ``FILE`` ...:
    ``clusterkit doctor --vars RUNBOOK`` prints them for ``eval``). ValueError for a status
    or runbook that does not exist, or a variable that is not a capitalised shell name."""

    check: str
    status: Status
    saw: str
    runbook: str | None = None
    fix: str | None = None
    data: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r}: one of {', '.join(STATUSES)}")
        if self.runbook is not None and self.runbook not in RUNBOOKS:
            raise ValueError(f"runbook {self.runbook!r}: one of {', '.join(RUNBOOKS)}")
        for name, value in self.data.items():
            if name not in VARIABLES or not isinstance(value, str):
                raise ValueError(f"data {name!r}: a variable is one of {', '.join(VARIABLES)} "
                                 "with a text value")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "status": self.status, "saw": self.saw,
                "runbook": self.runbook, "fix": self.fix, "data": dict(self.data)}  # fmt: skip


def ok(check: str, saw: str) -> Finding:
    return Finding(check, "ok", saw)


def warn(check: str, saw: str, runbook: str | None = None, fix: str | None = None,
         data: dict[str, str] | None = None) -> Finding:  # fmt: skip
    return Finding(check, "warn", saw, runbook, fix, data or {})


def fail(check: str, saw: str, runbook: str | None = None, fix: str | None = None,
         data: dict[str, str] | None = None) -> Finding:  # fmt: skip
    return Finding(check, "fail", saw, runbook, fix, data or {})


@dataclass(frozen=True)
class Report:
    """Every finding in the order the checks ran, how long they took, and the cluster looked
    at (None: the kit knows none)."""

    findings: list[Finding]
    elapsed_s: float
    cluster: str | None = None

    @property
    def failed(self) -> bool:
        """Whether any finding is a FAIL (``clusterkit doctor`` then exits 1)."""
        return any(f.status == "fail" for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def count(self, status: Status) -> int:
        return sum(f.status == status for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """``{"schema": 1, "cluster", "ok", "elapsed_s", "checks": [{"check", "status",
        "saw", "runbook", "fix", "data"}]}``; ``ok`` is false exactly when a check failed."""
        return {
            "schema": SCHEMA,
            "cluster": self.cluster,
            "ok": not self.failed,
            "elapsed_s": self.elapsed_s,
            "checks": [f.to_dict() for f in self.findings],
        }


#: Widths of the status and check columns of :func:`render_lines`.
STATUS_WIDTH, CHECK_WIDTH = 5, 12


def render_lines(report: Report) -> list[str]:
    """One line per finding (``FAIL ports       8265 ... -> runbook port-in-use:
    docs/runbooks/port-in-use.md``), a WARN's or FAIL's fix on the line below it, and a last
    line counting them."""
    lines = []
    for f in report.findings:
        line = f"{f.status.upper():<{STATUS_WIDTH}}{f.check:<{CHECK_WIDTH}}{f.saw}"
        if f.runbook is not None:
            line += f"  -> runbook {f.runbook}: {runbook_path(f.runbook)}"
        lines.append(line)
        if f.fix and f.status != "ok":
            lines.append(f"{'':<{STATUS_WIDTH + CHECK_WIDTH}}fix: {f.fix}")
    counts = ", ".join(f"{report.count(s)} {s}" for s in STATUSES)
    where = f"cluster {report.cluster!r}" if report.cluster else "no cluster"
    lines.append(f"doctor: {counts} ({where}, {report.elapsed_s:.2f} s)")
    return lines


def shell_vars(report: Report, runbook: str) -> str | None:
    """What ``eval "$(clusterkit doctor --vars RUNBOOK)"`` runs before the runbook's steps:
    :data:`UNSET`, then ``NAME=value`` lines (values quoted for the shell) of the first WARN or
    FAIL that names ``runbook``. None when no finding names the runbook (the caller prints
    ``UNSET`` and ``false``). ValueError for a runbook that does not exist."""
    if runbook not in RUNBOOKS:
        raise ValueError(f"runbook {runbook!r}: one of {', '.join(RUNBOOKS)}")
    found = next((f for f in report.findings if f.status != "ok" and f.runbook == runbook), None)
    if found is None:
        return None
    return "\n".join(
        [UNSET, *(f"{name}={shlex.quote(value)}" for name, value in found.data.items())]
    )
