"""The idle guard's decision, from readings already taken: pure, so every case is a test.

Anything active, or a source that could not be read (never stop on doubt), resets the idle
timer. With nothing active for ``idle_minutes`` (and past an extension, if there is one) the
guard acts, once: activity, a boot after it, :func:`extend` or :func:`turn_on` arm it again.
:func:`turn_off` keeps it from acting at all. Its state is one JSON file on the master,
changed under a lock (:func:`update`) by the guard's passes and by ``clusterkit idle``.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from clusterkit.core.errors import BadInput, StateError
from clusterkit.core.files import write_json_atomic

T = TypeVar("T")

#: What the guard does when it acts, as its messages say it.
VERBS = {"stop": "stops", "terminate": "terminates", "record": "records its stop"}
#: A :class:`Decision`'s reasons: something is active; the guard is off; it acted already;
#: an extension holds it; idle, counting down; idle long enough, acting now.
REASONS = ("active", "off", "acted", "extended", "waiting", "due")


@dataclass(frozen=True)
class Activity:
    """One thing that keeps the cluster up: its source ("runs", "spark", ...) and, in plain
    English, what it is ("run 20261121-083012-3f2a (etl) running")."""

    source: str
    what: str


@dataclass
class Reading:
    """One source read once: what it found active, and the error that kept it from being
    read (or from being read whole), if any."""

    source: str
    activities: list[Activity] = field(default_factory=list)
    error: str | None = None

    def lines(self) -> list[str]:
        """What counts as active in it, a line each; an error is one (never stop on doubt)."""
        lines = [activity.what for activity in self.activities]
        if self.error is not None:
            lines.append(f"could not read {self.source} ({self.error}): counted as active")
        return lines


@dataclass
class Decision:
    """One pass's verdict. ``acts_in_s`` is None when the guard is not counting down (active,
    off, acted already); ``reason`` is one of :data:`REASONS`; ``extended_until`` and
    ``acted`` are the state's, for :func:`describe`."""

    active: list[str]
    idle_for_s: float
    acts_in_s: float | None
    act: bool
    reason: str
    extended_until: float | None = None
    acted: dict[str, Any] | None = None


_FIELDS: dict[str, tuple[type, ...]] = {
    "idle_since": (int, float, type(None)),
    "extended_until": (int, float, type(None)),
    "off": (bool,),
    "acted": (dict, type(None)),
    "last_acted": (dict, type(None)),
    "last": (dict,),
}


@dataclass
class GuardState:
    """The guard's file: since when nothing has been active (epoch s; None: something is),
    the extension's end, whether it is off, what it did when it acted (``what``, ``at``
    epoch s, ``when`` ISO, the commands; cleared when it is armed again), the last time it
    acted (``last_acted``, kept, for ``status``) and its last decision (``last``)."""

    idle_since: float | None = None
    extended_until: float | None = None
    off: bool = False
    acted: dict[str, Any] | None = None
    last_acted: dict[str, Any] | None = None
    last: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> GuardState:
        """The state in ``path``, a fresh one when there is none; StateError naming the file
        and the fix when it is not as the guard writes it."""
        fix = "delete it, and the guard starts its idle timer again"
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise StateError(
                f"the idle guard's state {path} cannot be read ({exc}): {fix}"
            ) from exc
        if not isinstance(data, dict):
            raise StateError(f"the idle guard's state {path} is not a JSON object: {fix}")
        wrong = [k for k, kinds in _FIELDS.items() if k in data and not isinstance(data[k], kinds)]
        if wrong:
            raise StateError(f"the idle guard's state {path} has a wrong {wrong[0]}: {fix}")
        return cls(**{k: data[k] for k in _FIELDS if k in data})

    def save(self, path: Path) -> None:
        """Write it whole (a reader sees the old file or the new one)."""
        write_json_atomic(path, asdict(self))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def update(path: Path, change: Callable[[GuardState], T]) -> T:
    """Load the state in ``path``, apply ``change`` to it and save it, under the file's lock
    (so a guard's pass and ``clusterkit idle`` lose nothing of each other's); what
    ``change`` returned. StateError as :meth:`GuardState.load`."""
    with _locked(path):
        state = GuardState.load(path)
        result = change(state)
        state.save(path)
    return result


def decide(readings: list[Reading], state: GuardState, now: float, idle_minutes: float
           ) -> Decision:  # fmt: skip
    """Whether to act now (epoch s ``now``). Updates ``state``: the idle timer (None while
    anything is active or unread, else since when nothing has been), ``acted`` cleared by
    activity (armed again), ``last`` set to this decision."""
    active = [line for reading in readings for line in reading.lines()]
    if active:
        state.idle_since = None
        state.acted = None
        idle_for_s = 0.0
    else:
        state.idle_since = now if state.idle_since is None else state.idle_since
        idle_for_s = max(0.0, now - state.idle_since)
    due = now + idle_minutes * 60 - idle_for_s
    deadline = max(due, state.extended_until or due)
    extended = deadline > due
    acts_in_s: float | None = None
    if state.off:
        reason = "off"
    elif active:
        reason = "active"
    elif state.acted is not None:
        reason = "acted"
    else:
        acts_in_s = max(0.0, deadline - now)
        reason = "due" if acts_in_s == 0 else "extended" if extended else "waiting"
    decision = Decision(active=active, idle_for_s=idle_for_s, acts_in_s=acts_in_s,
                        act=reason == "due", reason=reason,
                        extended_until=state.extended_until if extended else None,
                        acted=state.acted)  # fmt: skip
    state.last = {"at": now, **asdict(decision)}
    return decision


def after_boot(state: GuardState, booted_at: float) -> None:
    """Forget what a boot made stale: an idle timer started before it (the machine was off,
    not idle) and an action taken before it (a stopped cluster started again is armed)."""
    if state.idle_since is not None and state.idle_since < booted_at:
        state.idle_since = None
    if state.acted is not None and float(state.acted.get("at") or 0) < booted_at:
        state.acted = None


def extend(state: GuardState, seconds: float, now: float) -> None:
    """The guard acts no sooner than ``seconds`` from ``now`` (the latest extension holds,
    shorter or longer), and is armed again if it had acted. BadInput unless positive."""
    if seconds <= 0:
        raise BadInput(f"an extension must be longer than 0 s (got {seconds:g}): e.g. 2h")
    state.extended_until = now + seconds
    state.acted = None


def turn_off(state: GuardState) -> None:
    """The guard acts no more (it still reads and says what it sees) until :func:`turn_on`."""
    state.off = True


def turn_on(state: GuardState) -> None:
    """The guard acts again as the spec says: its idle timer started again (the time it was
    off is not idle time it counts), any extension dropped, armed again if it had acted."""
    state.off = False
    state.idle_since = None
    state.extended_until = None
    state.acted = None


_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """'2h' -> 7200; '1h30m' -> 5400; '45m', '90s', '1d'. BadInput for anything else."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise BadInput(f"{text!r} is not a duration: write it like 2h, 45m or 1h30m")
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe(decision: Decision, action: str = "stop") -> str:
    """One line: "idle for 12 min, stops in 48 min", "active: run X (etl) running; ..."."""
    if decision.active:
        head = "active: " + "; ".join(decision.active)
    else:
        head = f"idle for {int(decision.idle_for_s // 60)} min"
    verb = VERBS.get(action, "acts")
    if decision.reason == "off":
        return f"{head}; the guard is off and will not act"
    if decision.reason == "acted" and decision.acted is not None:
        what, at = decision.acted.get("what", "?"), float(decision.acted.get("at") or 0)
        return f"{head}; it acted at {_at(at)} ({what}) and acts again once the cluster is used"
    if decision.reason == "due":
        return f"{head}, {verb} now"
    if decision.acts_in_s is None:
        return head
    text = f"{head}, {verb} in {math.ceil(decision.acts_in_s / 60)} min"
    if decision.reason == "extended" and decision.extended_until is not None:
        text += f" (extended until {_at(decision.extended_until)})"
    return text
