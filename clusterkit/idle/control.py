"""``clusterkit idle`` on the master: ``python -m clusterkit.idle.control VERB`` (show, extend
D, off, on, booted) prints the guard's state as one JSON object (what the CLI, ``status`` and
the console show).

The guard's settings (state file, minutes, action) are read from its installed unit's
``ExecStart``, so this sees what the guard itself runs with; no unit: no guard (``installed``
false). Changes are made under the state file's lock (:func:`clusterkit.idle.rules.update`),
so they lose nothing of a pass running at the same moment.
"""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.idle.guard import GuardConfig, config_from
from clusterkit.idle.rules import (
    Activity,
    Decision,
    GuardState,
    Reading,
    after_boot,
    decide,
    describe,
    extend,
    parse_duration,
    turn_off,
    turn_on,
    update,
)

UNIT = Path("/etc/systemd/system/clusterkit-idle.service")
GUARD_MODULE = "clusterkit.idle.guard"


def unit_config(unit: Path) -> GuardConfig | None:
    """The guard's settings from its unit's ``ExecStart`` (None: no unit, no guard);
    ClusterkitError naming the unit when it does not run the guard as the role writes it."""
    try:
        text = unit.read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("ExecStart="):
            words = shlex.split(line.removeprefix("ExecStart="))
            if GUARD_MODULE in words:
                args = words[words.index(GUARD_MODULE) + 1 :]
                try:
                    return config_from(args)[0]
                except SystemExit as exc:
                    raise ClusterkitError(f"{unit}: its ExecStart is not the guard's") from exc
    raise ClusterkitError(f"{unit} has no ExecStart running {GUARD_MODULE}: provision again")


def view(state: GuardState, now: float, idle_minutes: float) -> Decision:
    """The guard's verdict as of ``now``, from its last pass's findings (nothing is read
    again): the countdown moves on with the clock, an extension or ``off`` made since shows."""
    last_active = [str(line) for line in state.last.get("active") or []]
    readings = [Reading("last pass", [Activity("last pass", line) for line in last_active])]
    return decide(readings, copy.deepcopy(state), now, idle_minutes)


def report(config: GuardConfig | None, state: GuardState | None, now: float) -> dict[str, Any]:
    """What ``clusterkit idle`` prints, as data."""
    if config is None or state is None:
        return {"installed": False, "line": "no idle guard on this cluster"}
    decision = view(state, now, config.idle_minutes)
    passed = state.last.get("at")
    line = describe(decision, config.action)
    if passed is None:
        line = "no pass yet (the guard's first runs within 2 minutes of boot); " + line
    if state.acted is None and state.last_acted:
        what, when = state.last_acted.get("what", "?"), state.last_acted.get("when", "?")
        line += f" (last acted at {when}: {what})"
    return {
        "installed": True,
        "idle_minutes": config.idle_minutes,
        "action": config.action,
        "workers": list(config.workers),
        "line": line,
        "decision": asdict(decision),
        "last_pass_at": passed,
        "seconds_since_last_pass": None if passed is None else round(now - float(passed), 1),
        "off": state.off,
        "extended_until": state.extended_until,
        "acted": state.acted,
        "last_acted": state.last_acted,
        "state_file": str(config.state),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterkit.idle.control",
                                     description="Show or change the idle guard.")  # fmt: skip
    parser.add_argument("--unit", type=Path, default=UNIT, help="the guard's systemd unit")
    # booted: what a boot does to the guard (its idle timer and action forgotten), for a
    # cluster started again without a boot (the rehearsal's `clusterkit start`)
    parser.add_argument("verb", choices=("show", "extend", "off", "on", "booted"))
    parser.add_argument("duration", nargs="?", help="extend: e.g. 2h, 45m, 1h30m")
    args = parser.parse_args(argv)
    try:
        config = unit_config(args.unit)
        if config is None:
            if args.verb != "show":
                raise ClusterkitError("no idle guard on this cluster: set idle_guard."
                                      "idle_minutes in the spec and provision again")  # fmt: skip
            print(json.dumps(report(None, None, time.time())))
            return 0
        now = time.time()
        if args.verb == "extend" and not args.duration:
            parser.error("extend needs a duration, e.g. 2h")
        seconds = parse_duration(args.duration) if args.verb == "extend" else 0.0

        def change(state: GuardState) -> GuardState:
            if args.verb == "extend":
                extend(state, seconds, now)
            elif args.verb == "off":
                turn_off(state)
            elif args.verb == "on":
                turn_on(state)
            elif args.verb == "booted":
                after_boot(state, now)
            return state

        if args.verb == "show":
            state = GuardState.load(config.state)
        else:
            state = update(config.state, change)
        print(json.dumps(report(config, state, now)))
        return 0
    except ClusterkitError as exc:
        print(json.dumps({"error": str(exc), "exit_code": exc.exit_code}))
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
