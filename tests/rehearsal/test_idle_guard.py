"""The idle guard on the rehearsal, as the playbooks install it (``up --idle-minutes 1``; the
rehearsal's action is ``record``: a network namespace cannot power off).

Each case puts the guard's idle timer ten minutes back (past the 1-minute limit) and waits for
its next pass (every 15 s there): a running job or an SSH session from outside must keep the
cluster up at that pass, and with nothing active the pass acts, on every worker first (in
order), then the master. The guard's state is read from the master's disk (its overlay's upper
folder, read only), never over SSH, which would itself count as a session."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from clusterkit.providers.netns.nodes import nodes_dir
from tests.rehearsal.conftest import Rehearsal, sh

pytestmark = pytest.mark.rehearsal

STATE = "var/lib/clusterkit/idle-guard.json"
PASS_EVERY_S = 15  # the netns provider's idle_guard_every_s


def _state(rehearsal: Rehearsal) -> dict[str, Any]:
    path: Path = nodes_dir(rehearsal.paths.root) / "master" / "upper" / STATE
    try:
        return dict(json.loads(path.read_text()))
    except (FileNotFoundError, ValueError):  # no pass yet, or caught mid-replace
        return {}


def _next_pass(rehearsal: Rehearsal, after: float, timeout: float = 4 * PASS_EVERY_S
               ) -> dict[str, Any]:  # fmt: skip
    """The guard's state once a pass has happened after epoch ``after``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _state(rehearsal)
        if float(state.get("last", {}).get("at") or 0) > after:
            return state
        time.sleep(1)
    raise AssertionError(f"no pass of the guard after {after}: {_state(rehearsal)}")


BACKDATE = (
    "import time; from pathlib import Path; from clusterkit.idle.rules import update; "
    "update(Path('/{state}'), lambda s: setattr(s, 'idle_since', time.time() - 600))"
)


def _backdate(rehearsal: Rehearsal, runner: Any = None) -> float:
    """Put the idle timer 10 minutes back (over ``runner``, or a connection of its own that
    is closed at once); the time it was done."""
    python = rehearsal.state.node_python
    command = f'{python} -c "{BACKDATE.format(state=STATE)}"'
    if runner is not None:
        sh(runner, command)
    else:
        with rehearsal.connect("master") as master:
            sh(master, command)
    return time.time()


def _quiet_pass(rehearsal: Rehearsal) -> dict[str, Any]:
    """A pass that found nothing active (earlier tests' executors are given back within a
    minute or so)."""
    deadline = time.monotonic() + 180
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = _next_pass(rehearsal, time.time())
        if not state["last"]["active"]:
            return state
    raise AssertionError(f"the guard never saw the cluster idle: {state['last']['active']}")


def test_the_playbooks_install_and_run_the_guard_on_the_master_only(rehearsal: Rehearsal):
    with rehearsal.connect("master") as master:
        assert sh(master, "systemctl is-enabled clusterkit-idle.service") == "enabled"
        assert sh(master, "systemctl is-active clusterkit-idle.service") == "active"
        unit = sh(master, "cat /etc/systemd/system/clusterkit-idle.service")
    assert "--idle-minutes 1 --action record" in unit and "--every 15" in unit
    layout = rehearsal.layout
    addresses = [layout.address_of(name) for name in layout.worker_names]  # worker-1 first
    assert [n.address for n in rehearsal.inventory.workers()] == addresses
    assert f"--workers {','.join(addresses)} --ssh-key /root/.ssh/id_ed25519" in unit
    for name in layout.worker_names:
        with rehearsal.connect(name) as worker:
            assert sh(worker, "test -e /etc/systemd/system/clusterkit-idle.service || "
                              "echo none") == "none", name  # fmt: skip
    state = _next_pass(rehearsal, time.time())
    assert state["last"]["idle_minutes"] == 1 and state["last"]["action"] == "record"


def test_a_running_job_keeps_the_cluster_up(rehearsal: Rehearsal):
    run_id = rehearsal.ck("run", "ray-pi", "--samples", "3000000000", "--tasks", "8",
                          "--detach").stdout.strip()  # fmt: skip
    assert run_id, "no run id printed"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the guard has seen the run
            seen = _next_pass(rehearsal, _backdate(rehearsal))
            if any(run_id in line for line in seen["last"]["active"]):
                break
        assert any(run_id in line for line in seen["last"]["active"]), seen["last"]
        # ten minutes "idle" behind it, past the limit: the run holds it up
        assert seen["last"]["reason"] == "active" and not seen["last"]["act"], seen["last"]
        assert seen["idle_since"] is None and seen["acted"] is None
        shown = rehearsal.ck_json("idle")
        assert shown["installed"] and run_id in shown["line"], shown
    finally:
        rehearsal.ck("cancel", run_id)


def test_an_ssh_session_from_outside_keeps_the_cluster_up(rehearsal: Rehearsal):
    _quiet_pass(rehearsal)
    with rehearsal.connect("master") as session:  # held open while the guard passes
        seen = _next_pass(rehearsal, _backdate(rehearsal, session))
        # a pass may have caught the connection being made; the next one sees it held
        seen = _next_pass(rehearsal, float(seen["last"]["at"]))
    operator = rehearsal.layout.operator_ip
    lines = seen["last"]["active"]
    assert any(line.startswith(f"SSH session from {operator}") for line in lines), lines
    assert seen["last"]["reason"] == "active" and seen["acted"] is None


def test_extend_and_off_change_the_guard_on_the_running_cluster(rehearsal: Rehearsal):
    extended = rehearsal.ck_json("idle", "--extend", "2h")
    assert extended["extended_until"] == pytest.approx(time.time() + 7200, abs=120)
    assert extended["decision"]["extended_until"] == extended["extended_until"]
    if not extended["decision"]["active"]:  # idle: the countdown runs to the extension
        assert "(extended until" in extended["line"], extended["line"]
    off = rehearsal.ck_json("idle", "--off")
    assert off["off"] and "the guard is off" in off["line"]
    again = rehearsal.ck_json("idle", "--on")
    assert not again["off"]
    bad = rehearsal.ck("idle", "--extend", "later")
    assert bad.returncode == 2 and "not a duration" in bad.stderr + bad.stdout


def test_idle_past_the_limit_it_acts_on_every_worker_first_then_the_master(rehearsal):
    rehearsal.ck_json("idle", "--on")  # no extension left from before
    acted: dict[str, Any] | None = None
    for _attempt in range(4):  # a pass that caught the backdating's own SSH starts over
        _quiet_pass(rehearsal)
        state = _next_pass(rehearsal, _backdate(rehearsal))
        acted = state.get("acted")
        if acted is not None:
            break
    assert acted is not None and acted["what"] == "record", state
    would_run = acted["would_run"]
    layout = rehearsal.layout
    addresses = [layout.address_of(name) for name in layout.worker_names]  # worker-1 first
    assert len(would_run) == len(addresses) + 1, would_run
    for argv, address in zip(would_run, addresses, strict=False):  # each worker, in order
        assert argv[0] == "ssh" and f"root@{address}" in argv, would_run
        assert argv[-2:] == ["systemctl", "poweroff"], would_run
    assert would_run[-1] == ["systemctl", "poweroff"]  # the master last
    for name in layout.worker_names:  # record ran nothing: every worker is up
        with rehearsal.connect(name) as worker:
            assert sh(worker, "echo up") == "up"
    status = rehearsal.ck("status")
    assert status.returncode == 0, status.stderr
    line = next(ln for ln in status.stdout.splitlines() if ln.startswith("idle guard:"))
    assert "acted at" in line and "record" in line, line
    with rehearsal.connect("master") as master:
        journal = sh(master, "journalctl -u clusterkit-idle.service -n 400")
    assert "record only, nothing run; acting would run: ssh" in journal
    # the workers' poweroffs in order, then the master's
    assert "; then ".join(shlex.join(argv) for argv in would_run) in journal
