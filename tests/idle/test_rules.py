"""The idle guard's decision with its readings given: what keeps a cluster up, the timer,
--extend and --off, doubt, acting once, and the lines it says."""

import json

import pytest

from clusterkit.core.errors import BadInput, StateError
from clusterkit.idle.rules import (
    Activity,
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

T0 = 1_800_000_000.0  # 2027-01-15 08:00 UTC
LIMIT = 60  # idle minutes
MIN = 60.0


def quiet() -> list[Reading]:
    return [Reading(source) for source in ("runs", "spark", "ray", "ssh", "tunnels")]


def with_activity(source: str, what: str) -> list[Reading]:
    return [Reading(r.source, [Activity(source, what)]) if r.source == source else r
            for r in quiet()]  # fmt: skip


def idle_from(state: GuardState, start: float) -> None:
    """The guard saw nothing active from ``start`` on."""
    decide(quiet(), state, start, LIMIT)


def test_nothing_active_acts_after_idle_minutes_and_not_before():
    state = GuardState()
    first = decide(quiet(), state, T0, LIMIT)
    assert (first.act, first.idle_for_s, first.acts_in_s) == (False, 0.0, 60 * MIN)
    assert state.idle_since == T0
    almost = decide(quiet(), state, T0 + 59 * MIN, LIMIT)
    assert not almost.act and almost.acts_in_s == MIN and almost.reason == "waiting"
    due = decide(quiet(), state, T0 + 60 * MIN, LIMIT)
    assert due.act and due.reason == "due" and due.acts_in_s == 0


@pytest.mark.parametrize(("source", "what"), [
    ("runs", "run 20270115-080000-3f2a (etl) running"),
    ("spark", "Spark application clusterkit-spark-connect (app-1) holds 2 cores"),
    ("ray", "Ray job raysubmit_1 RUNNING"),
    ("ssh", "SSH session from 203.0.113.9 (port 50122)"),
    ("tunnels", "SSH tunnel to port 8265 (sshd, pid 42)"),
])  # fmt: skip
def test_each_kind_of_activity_keeps_the_cluster_up_and_resets_the_timer(source, what):
    state = GuardState()
    idle_from(state, T0)
    busy = decide(with_activity(source, what), state, T0 + 2 * 60 * MIN, LIMIT)
    assert not busy.act and busy.active == [what] and busy.acts_in_s is None
    assert busy.reason == "active" and state.idle_since is None
    again = decide(quiet(), state, T0 + 2 * 60 * MIN + 30, LIMIT)  # idle again: from now
    assert not again.act and again.idle_for_s == 0 and state.idle_since == T0 + 7230
    assert not decide(quiet(), state, T0 + 3 * 60 * MIN, LIMIT).act  # 59.5 min since
    assert decide(quiet(), state, T0 + 3 * 60 * MIN + 30, LIMIT).act


def test_a_source_that_cannot_be_read_counts_as_active():
    state = GuardState()
    idle_from(state, T0)
    readings = quiet()
    readings[2] = Reading("ray", error="ConnectionError: refused")
    decision = decide(readings, state, T0 + 5 * 60 * MIN, LIMIT)
    assert not decision.act and state.idle_since is None
    assert decision.active == ["could not read ray (ConnectionError: refused): counted as active"]


def test_a_partly_read_source_counts_its_activities_and_its_error():
    reading = Reading("runs", [Activity("runs", "run a (etl) queued")], "b/record.json: bad")
    assert reading.lines() == [
        "run a (etl) queued",
        "could not read runs (b/record.json: bad): counted as active",
    ]


def test_the_guard_acts_once_until_the_cluster_is_used_again():
    state = GuardState()
    idle_from(state, T0)
    assert decide(quiet(), state, T0 + 61 * MIN, LIMIT).act
    state.acted = {"what": "record", "at": T0 + 61 * MIN}  # as the guard records it
    later = decide(quiet(), state, T0 + 62 * MIN, LIMIT)
    assert not later.act and later.reason == "acted" and later.acts_in_s is None
    decide(with_activity("runs", "run x (etl) running"), state, T0 + 70 * MIN, LIMIT)
    assert state.acted is None  # armed again
    idle_from(state, T0 + 71 * MIN)
    assert decide(quiet(), state, T0 + 131 * MIN, LIMIT).act


def test_extend_holds_the_guard_until_then_and_the_latest_extension_wins():
    state = GuardState()
    idle_from(state, T0)
    extend(state, parse_duration("2h"), T0 + 50 * MIN)  # 10 min before it would act
    held = decide(quiet(), state, T0 + 61 * MIN, LIMIT)
    assert not held.act and held.reason == "extended" and held.acts_in_s == 109 * MIN
    assert not decide(quiet(), state, T0 + 169 * MIN, LIMIT).act
    assert decide(quiet(), state, T0 + 170 * MIN, LIMIT).act
    extend(state, 2 * 60 * MIN, T0 + 170 * MIN)
    extend(state, 30 * MIN, T0 + 171 * MIN)  # the latest holds, shorter too
    assert not decide(quiet(), state, T0 + 200 * MIN, LIMIT).act
    assert decide(quiet(), state, T0 + 201 * MIN, LIMIT).act
    with pytest.raises(BadInput, match="longer than 0 s"):
        extend(state, 0, T0)


def test_extend_arms_a_guard_that_acted():
    state = GuardState(idle_since=T0, acted={"what": "record", "at": T0 + 60 * MIN})
    extend(state, 30 * MIN, T0 + 61 * MIN)
    assert state.acted is None
    assert decide(quiet(), state, T0 + 91 * MIN, LIMIT).act


def test_off_never_acts_and_on_starts_the_timer_again():
    state = GuardState()
    idle_from(state, T0)
    turn_off(state)
    off = decide(quiet(), state, T0 + 10 * 60 * MIN, LIMIT)
    assert not off.act and off.reason == "off" and off.acts_in_s is None
    extend(state, 5 * 60 * MIN, T0 + 10 * 60 * MIN)
    turn_on(state)  # back to the spec: no extension either
    on = decide(quiet(), state, T0 + 10 * 60 * MIN, LIMIT)  # off time is not idle time
    assert not on.act and on.idle_for_s == 0 and on.acts_in_s == 60 * MIN
    assert state.extended_until is None


def test_a_boot_forgets_the_idle_timer_and_the_action_before_it():
    state = GuardState(idle_since=T0, acted={"what": "stop", "at": T0 + 60 * MIN})
    after_boot(state, booted_at=T0 + 24 * 60 * MIN)  # stopped, started again a day later
    assert state.idle_since is None and state.acted is None
    kept = GuardState(idle_since=T0 + 5, acted={"what": "record", "at": T0 + 6})
    after_boot(kept, booted_at=T0)
    assert kept.idle_since == T0 + 5 and kept.acted == {"what": "record", "at": T0 + 6}


def test_describe_says_what_the_guard_sees_and_when_it_acts():
    state = GuardState()
    idle_from(state, T0)
    waiting = decide(quiet(), state, T0 + 12 * MIN, LIMIT)
    assert describe(waiting) == "idle for 12 min, stops in 48 min"
    assert describe(waiting, "terminate") == "idle for 12 min, terminates in 48 min"
    assert describe(decide(quiet(), state, T0 + 60 * MIN, LIMIT)) == "idle for 60 min, stops now"
    extend(state, 2 * 60 * MIN, T0 + 60 * MIN)
    assert describe(decide(quiet(), state, T0 + 61 * MIN, LIMIT), "record") == (
        "idle for 61 min, records its stop in 119 min (extended until 2027-01-15 11:00 UTC)"
    )
    state.acted = {"what": "record", "at": T0 + 180 * MIN}
    assert describe(decide(quiet(), state, T0 + 181 * MIN, LIMIT)) == (
        "idle for 181 min; it acted at 2027-01-15 11:00 UTC (record) and acts again once the "
        "cluster is used")  # fmt: skip
    busy = with_activity("runs", "run r1 (etl) running")
    busy[3] = Reading("ssh", [Activity("ssh", "SSH session from 203.0.113.9 (port 5)")])
    assert describe(decide(busy, state, T0 + 182 * MIN, LIMIT)) == (
        "active: run r1 (etl) running; SSH session from 203.0.113.9 (port 5)"
    )
    turn_off(state)
    assert describe(decide(quiet(), state, T0 + 183 * MIN, LIMIT)) == (
        "idle for 0 min; the guard is off and will not act"
    )


def test_the_state_is_saved_whole_and_read_back(tmp_path):
    path = tmp_path / "idle.json"
    assert update(path, lambda s: decide(quiet(), s, T0, LIMIT)).acts_in_s == 60 * MIN
    update(path, turn_off)
    state = GuardState.load(path)
    assert state.idle_since == T0 and state.off and state.last["reason"] == "waiting"
    assert state.last["at"] == T0 and state.last["acts_in_s"] == 60 * MIN
    update(path, lambda s: decide(quiet(), s, T0 + MIN, LIMIT))
    assert GuardState.load(path).last["reason"] == "off"
    assert GuardState.load(tmp_path / "none.json") == GuardState()  # none yet: a fresh one


@pytest.mark.parametrize("text", ["{not json", "[1]", json.dumps({"idle_since": "soon"})])
def test_a_state_file_not_as_the_guard_writes_it_is_refused_saying_what_to_do(tmp_path, text):
    path = tmp_path / "idle.json"
    path.write_text(text)
    with pytest.raises(StateError, match=r"idle guard's state .*idle.json.*: delete it"):
        GuardState.load(path)


def test_durations_are_read_as_people_write_them():
    assert parse_duration("2h") == 7200 and parse_duration("1h30m") == 5400
    assert parse_duration("45m") == 2700 and parse_duration(" 1d ") == 86400
    for wrong in ("2", "two hours", "2h-", ""):
        with pytest.raises(BadInput, match="write it like 2h"):
            parse_duration(wrong)
