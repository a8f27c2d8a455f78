"""The guard's pass with its sources given and its commands caught: when it acts, what it
runs and in which order (the workers first, then the master), and that ``record`` runs
nothing. The sources themselves are read for real where nothing answers: that is doubt."""

import json
import time

import pytest

from clusterkit.idle import guard
from clusterkit.idle.rules import GuardState, Reading

WORKERS = "10.0.2.8,10.0.2.9"
SSH = ["ssh", "-i", "/root/.ssh/id_cluster", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
       "-F", "/dev/null"]  # fmt: skip
POWEROFF = ["systemctl", "poweroff"]


def _argv(tmp_path, action: str, *extra: str) -> list[str]:
    return ["--state", str(tmp_path / "idle.json"), "--runs-dir", str(tmp_path / "runs"),
            "--spark-master-ui", "http://127.0.0.1:1", "--ray-dashboard", "http://127.0.0.1:1",
            "--ray-token-file", str(tmp_path / "ray-token"), "--private-cidr", "10.0.0.0/16",
            "--idle-minutes", "60", "--action", action, "--workers", WORKERS,
            "--ssh-key", "/root/.ssh/id_cluster", "--once", *extra]  # fmt: skip


def _idle_since(tmp_path, minutes_ago: float) -> None:
    GuardState(idle_since=time.time() - minutes_ago * 60).save(tmp_path / "idle.json")


def _quiet(config: guard.GuardConfig) -> list[Reading]:
    return [Reading(source) for source in ("runs", "spark", "ray", "ssh", "tunnels")]


class Caught:
    """Stands in for the command runner: what was run, and the state file at each command."""

    def __init__(self, tmp_path, exits: dict[str, int] | None = None) -> None:
        self.state, self.exits = tmp_path / "idle.json", exits or {}
        self.ran: list[list[str]] = []
        self.acted_then: list[dict | None] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        self.ran.append(argv)
        self.acted_then.append(GuardState.load(self.state).acted)
        code = self.exits.get(argv[-3] if argv[0] == "ssh" else "self", 0)
        return code, "" if code == 0 else "ssh: connect to host: Connection timed out"


def test_record_idle_past_the_limit_writes_what_it_would_run_and_runs_nothing(tmp_path, capsys):
    _idle_since(tmp_path, 61)
    caught = Caught(tmp_path)
    assert guard.main(_argv(tmp_path, "record"), read=_quiet, run=caught, booted_at=0) == 0
    assert caught.ran == []
    acted = GuardState.load(tmp_path / "idle.json").acted
    assert acted is not None and acted["what"] == "record"
    assert acted["would_run"] == [[*SSH, "root@10.0.2.8", *POWEROFF],
                                  [*SSH, "root@10.0.2.9", *POWEROFF], POWEROFF]  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("idle for 61 min, records its stop now")
    assert "record only, nothing run; acting would run: ssh -i" in out[1]
    assert out[1].endswith("root@10.0.2.9 systemctl poweroff; then systemctl poweroff")
    assert guard.main(_argv(tmp_path, "record"), read=_quiet, run=caught, booted_at=0) == 0
    assert "it acted at" in capsys.readouterr().out  # once: not again
    assert GuardState.load(tmp_path / "idle.json").acted == acted
    assert GuardState.load(tmp_path / "idle.json").last_acted == acted  # kept for `status`
    last = GuardState.load(tmp_path / "idle.json").last
    assert (last["idle_minutes"], last["action"]) == (60, "record")  # what `idle` shows


def test_under_the_limit_nothing_is_done(tmp_path, capsys):
    _idle_since(tmp_path, 30)
    caught = Caught(tmp_path)
    assert guard.main(_argv(tmp_path, "stop"), read=_quiet, run=caught, booted_at=0) == 0
    assert caught.ran == [] and GuardState.load(tmp_path / "idle.json").acted is None
    assert capsys.readouterr().out.strip().endswith("idle for 30 min, stops in 30 min")


def test_stop_powers_off_the_workers_first_then_the_master(tmp_path, capsys):
    _idle_since(tmp_path, 90)
    caught = Caught(tmp_path, exits={"root@10.0.2.9": 255})
    assert guard.main(_argv(tmp_path, "stop"), read=_quiet, run=caught, booted_at=0) == 0
    assert caught.ran == [[*SSH, "root@10.0.2.8", *POWEROFF],
                          [*SSH, "root@10.0.2.9", *POWEROFF], POWEROFF]  # fmt: skip
    at_master = caught.acted_then[-1]  # written before the master goes down
    assert at_master is not None and at_master["what"] == "stop"
    assert [r["exit"] for r in at_master["ran"]] == [0, 255]
    out = capsys.readouterr().out
    assert "worker 10.0.2.8: poweroff asked" in out
    assert "worker 10.0.2.9: ssh exited 255 (ssh: connect to host: Connection timed out); it " \
           "may still be up" in out  # fmt: skip
    assert "stop: powering off this master" in out


def test_a_master_that_did_not_power_off_tries_again_at_the_next_pass(tmp_path, capsys):
    _idle_since(tmp_path, 90)
    caught = Caught(tmp_path, exits={"self": 1})
    guard.main(_argv(tmp_path, "terminate"), read=_quiet, run=caught, booted_at=0)
    assert "this master did not power off (systemctl poweroff exited 1" in capsys.readouterr().out
    assert GuardState.load(tmp_path / "idle.json").acted is None
    guard.main(_argv(tmp_path, "terminate"), read=_quiet, run=caught, booted_at=0)
    assert caught.ran.count(POWEROFF) == 2


def test_sources_that_do_not_answer_keep_the_cluster_up(tmp_path, capsys):
    """Read for real: nothing listens on port 1 and the token file is missing."""
    _idle_since(tmp_path, 600)
    caught = Caught(tmp_path)
    assert guard.main(_argv(tmp_path, "stop"), run=caught, booted_at=0) == 0
    assert caught.ran == []
    state = GuardState.load(tmp_path / "idle.json")
    assert state.idle_since is None and state.acted is None
    out = capsys.readouterr().out
    assert "could not read spark (ConnectionError" in out
    assert "could not read ray (FileNotFoundError" in out


def test_a_state_it_cannot_read_stops_the_pass_saying_what_to_do(tmp_path, capsys):
    (tmp_path / "idle.json").write_text("{")
    caught = Caught(tmp_path)
    assert guard.main(_argv(tmp_path, "stop"), read=_quiet, run=caught, booted_at=0) == 1
    assert caught.ran == []
    out = capsys.readouterr().out
    assert "delete it, and the guard starts its idle timer again; this pass did nothing" in out
    assert (tmp_path / "idle.json").read_text() == "{"


def test_a_boot_after_the_idle_timer_started_starts_it_again(tmp_path):
    _idle_since(tmp_path, 600)
    caught = Caught(tmp_path)
    guard.main(_argv(tmp_path, "stop"), read=_quiet, run=caught, booted_at=time.time() - 60)
    assert caught.ran == []
    assert json.loads((tmp_path / "idle.json").read_text())["last"]["reason"] == "waiting"


def test_workers_need_the_masters_key(tmp_path, capsys):
    argv = [a for a in _argv(tmp_path, "stop") if a not in ("--ssh-key", "/root/.ssh/id_cluster")]
    with pytest.raises(SystemExit) as exit_:
        guard.config_from(argv)
    assert exit_.value.code == 2
    assert "--ssh-key is needed to reach the workers" in capsys.readouterr().err


def test_the_tunnel_ports_are_the_dashboards_and_spark_connect():
    config, once = guard.config_from([
        "--state", "s", "--runs-dir", "r", "--spark-master-ui", "http://127.0.0.1:8080",
        "--ray-dashboard", "http://127.0.0.1:8265", "--private-cidr", "10.0.0.0/16",
        "--idle-minutes", "60", "--action", "stop"])  # fmt: skip
    assert config.tunnel_ports() == [8080, 8265, 15002] and not once
    assert guard.commands(config) == [POWEROFF]  # no workers: the master alone


def test_without_once_it_passes_every_given_seconds(tmp_path, capsys):
    argv = [a for a in _argv(tmp_path, "record") if a != "--once"]
    assert guard._config_every([*argv, "--every", "15"])[1:] == (False, 15.0)
    assert guard._config_every(argv)[1:] == (False, guard.EVERY_S)
    with pytest.raises(SystemExit):
        guard._config_every([*argv, "--every", "0.5"])
    assert "--every must be 1 second or more" in capsys.readouterr().err
