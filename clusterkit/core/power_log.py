"""The kit's own record of when a cluster's nodes were started and stopped: one JSON line per
event in the cluster's state folder (``power.jsonl``), appended, never rewritten.

What accrues cost is the time nodes run; EC2 keeps only an instance's last transition, so
the kit writes each ``up``, ``stop``, ``start`` and ``down`` it makes, and the cost figures
put the two together (:mod:`clusterkit.providers.aws.accrued`). A line that cannot be read is
skipped and said, never fatal: the log informs a figure, it guards nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

#: The events, in the order a cluster's life goes: made and running, stopped (disks kept),
#: started again, removed.
EVENTS = ("up", "stop", "start", "down")
#: What stops the nodes' billing for compute, and what starts it.
STOPPING = ("stop", "down")
STARTING = ("up", "start")


@dataclass(frozen=True)
class PowerEvent:
    """One event: what (:data:`EVENTS`), when (epoch s; ``when`` is the same, ISO, for a
    reader of the file) and who made it ("clusterkit", "idle-guard", ...)."""

    event: str
    at: float
    when: str
    by: str = "clusterkit"


def log_file(state_dir: Path) -> Path:
    return state_dir / "power.jsonl"


def record(state_dir: Path, event: str, *, by: str = "clusterkit", at: float | None = None
           ) -> PowerEvent:  # fmt: skip
    """Append ``event`` (one of :data:`EVENTS`) at ``at`` (default now); ValueError for an
    unknown event. One ``write`` of one line, so concurrent writers do not interleave."""
    if event not in EVENTS:
        raise ValueError(f"unknown power event {event!r}: one of {', '.join(EVENTS)}")
    at = time.time() if at is None else at
    entry = PowerEvent(event, at, datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
                       by)  # fmt: skip
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(log_file(state_dir), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(asdict(entry)) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def read(state_dir: Path) -> tuple[list[PowerEvent], list[str]]:
    """The events in time order, and one line per line of the file that was skipped."""
    path = log_file(state_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return [], []
    events: list[PowerEvent] = []
    skipped: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            entry = PowerEvent(str(data["event"]), float(data["at"]), str(data["when"]),
                               str(data.get("by", "clusterkit")))  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            skipped.append(f"{path}:{number}: skipped ({type(exc).__name__}: {exc})")
            continue
        if entry.event not in EVENTS:
            skipped.append(f"{path}:{number}: skipped (unknown event {entry.event!r})")
            continue
        events.append(entry)
    return sorted(events, key=lambda e: e.at), skipped


def running_intervals(events: list[PowerEvent], now: float) -> list[tuple[float, float]]:
    """The spans (start, end) epoch s in which the log says the nodes ran: from each ``up``
    or ``start`` to the next ``stop`` or ``down`` (to ``now`` when none has come yet). A
    repeated start or stop adds nothing (``up`` on a running cluster is not a second span)."""
    spans: list[tuple[float, float]] = []
    since: float | None = None
    for entry in events:
        if entry.event in STARTING and since is None:
            since = entry.at
        elif entry.event in STOPPING and since is not None:
            spans.append((since, max(since, entry.at)))
            since = None
    if since is not None:
        spans.append((since, max(since, now)))
    return spans
