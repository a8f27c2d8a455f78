"""``clusterkit idle`` on the master (clusterkit.idle.control): the guard's settings read from
its unit as the role writes it, the countdown moved on by the clock, and --extend, --off and
--on changing the state the guard itself reads."""

import json
import time

import pytest

from clusterkit.core.errors import ClusterkitError
from clusterkit.idle import control
from clusterkit.idle.rules import GuardState


def _unit(tmp_path, minutes: int = 30, action: str = "stop", once: bool = True) -> object:
    when = "--once" if once else "--every 15"
    unit = tmp_path / "clusterkit-idle.service"
    unit.write_text(
        "[Service]\nType=oneshot\n"
        f"ExecStart=/opt/venv/bin/python -m clusterkit.idle.guard {when} "
        f"--state {tmp_path / 'idle.json'} --runs-dir /var/lib/clusterkit/runs "
        "--spark-master-ui http://10.0.1.10:8080 --ray-dashboard http://10.0.1.10:8265 "
        "--ray-token-file /etc/clusterkit/ray-token --private-cidr 10.0.0.0/16 "
        f"--idle-minutes {minutes} --action {action} --workers 10.0.2.10 "
        "--ssh-key /root/.ssh/id_ed25519\n"
    )
    return unit


def _main(capsys, *argv: str) -> tuple[int, dict]:
    code = control.main(list(argv))
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_no_unit_is_no_guard_and_changing_it_says_how_to_get_one(tmp_path, capsys):
    code, data = _main(capsys, "--unit", str(tmp_path / "none.service"), "show")
    assert code == 0 and data == {"installed": False, "line": "no idle guard on this cluster"}
    code, data = _main(capsys, "--unit", str(tmp_path / "none.service"), "off")
    assert code == 1 and "idle_guard.idle_minutes" in data["error"]


def test_a_unit_that_does_not_run_the_guard_is_named(tmp_path):
    unit = tmp_path / "clusterkit-idle.service"
    unit.write_text("[Service]\nExecStart=/bin/true\n")
    with pytest.raises(ClusterkitError, match=r"clusterkit-idle\.service has no ExecStart"):
        control.unit_config(unit)


def test_the_countdown_moves_on_from_the_last_pass(tmp_path, capsys):
    unit = _unit(tmp_path, minutes=30)
    now = time.time()
    GuardState(idle_since=now - 12 * 60, last={"at": now - 60, "active": []}).save(
        tmp_path / "idle.json")  # fmt: skip
    code, data = _main(capsys, "--unit", str(unit), "show")
    assert code == 0 and data["installed"] and data["action"] == "stop"
    assert data["line"] == "idle for 12 min, stops in 18 min"
    assert data["workers"] == ["10.0.2.10"] and 59 <= data["seconds_since_last_pass"] < 70


def test_what_the_last_pass_found_active_is_shown(tmp_path, capsys):
    unit = _unit(tmp_path)
    active = ["run 20261203-1 (etl) running"]
    GuardState(last={"at": time.time(), "active": active}).save(tmp_path / "idle.json")
    _, data = _main(capsys, "--unit", str(unit), "show")
    assert data["line"] == "active: run 20261203-1 (etl) running"


def test_extend_off_and_on_change_the_guards_own_state(tmp_path, capsys):
    unit = _unit(tmp_path, minutes=30)
    state_file = tmp_path / "idle.json"
    now = time.time()
    GuardState(idle_since=now - 40 * 60, last={"at": now, "active": []}).save(state_file)
    _, data = _main(capsys, "--unit", str(unit), "show")
    assert data["line"] == "idle for 40 min, stops now"
    code, data = _main(capsys, "--unit", str(unit), "extend", "2h")
    assert code == 0 and data["line"].startswith("idle for 40 min, stops in 120 min (extended")
    assert GuardState.load(state_file).extended_until == pytest.approx(now + 7200, abs=5)
    _, data = _main(capsys, "--unit", str(unit), "off")
    assert data["off"] and data["line"].endswith("the guard is off and will not act")
    assert GuardState.load(state_file).off
    _, data = _main(capsys, "--unit", str(unit), "on")
    assert not data["off"] and not GuardState.load(state_file).off
    code, data = _main(capsys, "--unit", str(unit), "extend", "soon")
    assert code == 2 and "not a duration" in data["error"]


def test_after_acting_it_says_what_it_did_and_when(tmp_path, capsys):
    unit = _unit(tmp_path, action="record", once=False)
    acted = {"what": "record", "at": time.time() - 30, "when": "2026-12-03T05:00:00+00:00"}
    GuardState(idle_since=time.time() - 120, acted=acted, last_acted=acted,
               last={"at": time.time(), "active": []}).save(tmp_path / "idle.json")  # fmt: skip
    _, data = _main(capsys, "--unit", str(unit), "show")
    assert "it acted at" in data["line"] and "(record)" in data["line"]
    GuardState(last_acted=acted, last={"at": time.time(), "active": ["SSH session"]}).save(
        tmp_path / "idle.json")  # fmt: skip
    _, data = _main(capsys, "--unit", str(unit), "show")
    assert data["line"] == "active: SSH session (last acted at 2026-12-03T05:00:00+00:00: record)"


def test_booted_forgets_the_idle_time_and_the_action_from_before(tmp_path, capsys):
    unit = _unit(tmp_path, action="record", once=False)
    acted = {"what": "record", "at": time.time() - 30, "when": "2026-12-03T05:00:00+00:00"}
    GuardState(idle_since=time.time() - 600, acted=acted, off=True).save(tmp_path / "idle.json")
    code, _ = _main(capsys, "--unit", str(unit), "booted")
    state = GuardState.load(tmp_path / "idle.json")
    assert code == 0 and state.idle_since is None and state.acted is None
    assert state.off  # the operator's --off outlives a stop and start
