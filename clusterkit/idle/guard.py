"""The idle guard on the master: ``python -m clusterkit.idle.guard --state FILE ... --once``,
run by a systemd timer every minute (without ``--once`` it passes every ``--every`` seconds
itself, 60 by default: the rehearsal's way, whose systemctl stand-in has no timers).

A pass reads every source (:mod:`clusterkit.idle.sources`), decides
(:func:`clusterkit.idle.rules.decide`), saves the state and prints one line, for the journal.
When it acts it powers off the workers first, over SSH with the master's own key, then the
master itself: ``systemctl poweroff`` for ``stop`` and ``terminate`` alike (EC2's
``instance_initiated_shutdown_behavior``, set when the instances are made, decides whether a
powered-off instance is stopped or terminated). ``record`` (the rehearsal: a network
namespace cannot power off) writes the commands it would run into the state's ``acted`` and
runs nothing. It needs nothing but the master: no laptop, no connection from one.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.records import now_iso
from clusterkit.idle import sources
from clusterkit.idle.rules import (
    Decision,
    GuardState,
    Reading,
    after_boot,
    decide,
    describe,
    update,
)

ACTIONS = ("stop", "terminate", "record")
POWEROFF = ["systemctl", "poweroff"]
#: Seconds between two passes without ``--once``.
EVERY_S = 60.0
#: Seconds one command (an SSH to a worker, the poweroff) may take.
COMMAND_TIMEOUT_S = 60.0

#: Runs one command: its exit code and the tail of what it said.
Runner = Callable[[list[str]], tuple[int, str]]


@dataclass(frozen=True)
class GuardConfig:
    """What the guard watches and does, from its command line."""

    state: Path
    runs_dir: Path
    spark_master_ui: str
    ray_dashboard: str
    ray_token_file: Path | None
    private_cidr: str
    idle_minutes: float
    action: str
    workers: tuple[str, ...] = ()
    ssh_key: Path | None = None
    connect_ui: str | None = None
    spark_connect_port: int = 15002
    ssh_port: int = 22

    def tunnel_ports(self) -> list[int]:
        """The ports a tunnel reaches: the two dashboards' (from their URLs), Spark Connect."""
        ports = [urlsplit(url).port for url in (self.spark_master_ui, self.ray_dashboard)]
        return [p for p in ports if p is not None] + [self.spark_connect_port]


Reader = Callable[[GuardConfig], list[Reading]]


def read_all(config: GuardConfig) -> list[Reading]:
    """Every source once (none raises)."""
    return [
        sources.runs(config.runs_dir),
        sources.spark(config.spark_master_ui, config.connect_ui),
        sources.ray_jobs(config.ray_dashboard, config.ray_token_file),
        sources.ssh_sessions(config.private_cidr, config.ssh_port),
        sources.tunnels(config.tunnel_ports()),
    ]


def commands(config: GuardConfig) -> list[list[str]]:
    """What acting runs, in order: each worker's poweroff over SSH, then the master's own."""
    ssh = ["ssh", "-i", str(config.ssh_key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
           "-F", "/dev/null"]  # fmt: skip
    return [[*ssh, f"root@{host}", *POWEROFF] for host in config.workers] + [POWEROFF]


def run_command(argv: list[str]) -> tuple[int, str]:
    """Run ``argv``: its exit code (-1 when it could not run or timed out) and the last 300
    characters it said."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as exc:
        return -1, f"{type(exc).__name__}: {exc}"
    return proc.returncode, (proc.stderr or proc.stdout).strip()[-300:]


def log_line(line: str) -> None:
    """One line to stdout (the journal, under systemd), stamped."""
    print(f"{now_iso()} {line}", flush=True)


def one_pass(config: GuardConfig, *, read: Reader = read_all, run: Runner = run_command,
             now: float | None = None, booted_at: float | None = None,
             say: Callable[[str], None] = log_line) -> Decision:  # fmt: skip
    """Read, decide, save the state, say the decision; act when it says so. StateError when
    the state cannot be read (nothing is done then)."""
    readings = read(config)
    now = time.time() if now is None else now
    booted_at = psutil.boot_time() if booted_at is None else booted_at

    def judge(state: GuardState) -> Decision:
        after_boot(state, booted_at)
        decision = decide(readings, state, now, config.idle_minutes)
        state.last.update(idle_minutes=config.idle_minutes, action=config.action)
        return decision

    decision = update(config.state, judge)
    say(describe(decision, config.action))
    if decision.act:
        act(config, run=run, now=now, say=say)
    return decision


def _set_acted(config: GuardConfig, acted: dict[str, Any] | None) -> None:
    def change(state: GuardState) -> None:
        state.acted = acted
        if acted is not None:
            state.last_acted = acted

    update(config.state, change)


def act(config: GuardConfig, *, run: Runner, now: float, say: Callable[[str], None]) -> None:
    """Power off the workers, then this master (``record``: only write what that would run).
    ``acted`` is saved before the master's poweroff; a poweroff of the master that fails
    clears it, so that the next pass tries again."""
    planned = commands(config)
    when = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
    acted: dict[str, Any] = {"what": config.action, "at": now, "when": when}
    if config.action == "record":
        acted["would_run"] = planned
        _set_acted(config, acted)
        say("record only, nothing run; acting would run: "
            + "; then ".join(shlex.join(argv) for argv in planned))  # fmt: skip
        return
    acted["ran"] = []
    _set_acted(config, acted)  # a pass that ends halfway does not start over
    for host, argv in zip(config.workers, planned[:-1], strict=True):
        code, said = run(argv)
        acted["ran"].append({"argv": argv, "exit": code, "said": said})
        say(f"worker {host}: poweroff asked" if code == 0 else
            f"worker {host}: ssh exited {code} ({said}); it may still be up: look for it in "
            "the cloud console")  # fmt: skip
    _set_acted(config, acted)
    say(f"{config.action}: powering off this master")
    code, said = run(planned[-1])
    if code != 0:
        _set_acted(config, None)
        say(f"this master did not power off ({shlex.join(POWEROFF)} exited {code}: {said}); "
            "the next pass tries again")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m clusterkit.idle.guard",
                                     description="Stop a cluster nobody uses.")  # fmt: skip
    add = parser.add_argument
    add("--state", required=True, type=Path, help="the guard's state file")
    add("--runs-dir", required=True, type=Path, help="the master's run store")
    add("--spark-master-ui", required=True, help="e.g. http://127.0.0.1:8080")
    add("--connect-ui", default=None, help="an application UI to ask for running jobs")
    add("--spark-connect-port", type=int, default=15002)
    add("--ray-dashboard", required=True, help="e.g. http://127.0.0.1:8265")
    add("--ray-token-file", type=Path, default=None)
    add("--private-cidr", required=True, help="the cluster's network, e.g. 10.0.0.0/16")
    add("--ssh-port", type=int, default=22)
    add("--idle-minutes", required=True, type=float)
    add("--action", required=True, choices=ACTIONS)
    add("--workers", default="", help="host1,host2: powered off first")
    add("--ssh-key", type=Path, default=None, help="the master's key to the workers")
    add("--once", action="store_true", help="one pass (the systemd timer's way)")
    add("--every", type=float, default=EVERY_S, help="seconds between passes without --once")
    return parser


def config_from(argv: list[str] | None) -> tuple[GuardConfig, bool]:
    """The config and ``--once`` from a command line (exit 2 with the reason when wrong)."""
    config, once, _every = _config_every(argv)
    return config, once


def _config_every(argv: list[str] | None) -> tuple[GuardConfig, bool, float]:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be 1 second or more")
    workers = tuple(h.strip() for h in args.workers.split(",") if h.strip())
    if args.idle_minutes <= 0:
        parser.error("--idle-minutes must be more than 0")
    if workers and args.ssh_key is None:
        parser.error("--ssh-key is needed to reach the workers")
    config = GuardConfig(
        state=args.state, runs_dir=args.runs_dir, spark_master_ui=args.spark_master_ui,
        ray_dashboard=args.ray_dashboard, ray_token_file=args.ray_token_file,
        private_cidr=args.private_cidr, idle_minutes=args.idle_minutes, action=args.action,
        workers=workers, ssh_key=args.ssh_key, connect_ui=args.connect_ui,
        spark_connect_port=args.spark_connect_port, ssh_port=args.ssh_port,
    )  # fmt: skip
    return config, args.once, args.every


def main(argv: list[str] | None = None, *, read: Reader = read_all, run: Runner = run_command,
         booted_at: float | None = None) -> int:  # fmt: skip
    """Pass once (``--once``: exit 1 when the pass failed) or every ``--every`` seconds."""
    config, once, every = _config_every(argv)
    while True:
        failed = False
        try:
            one_pass(config, read=read, run=run, booted_at=booted_at)
        except ClusterkitError as exc:
            failed = True
            log_line(f"{exc}; this pass did nothing")
        except Exception as exc:
            failed = True
            log_line(f"this pass failed ({type(exc).__name__}: {exc}) and did nothing")
        if once:
            return 1 if failed else 0
        time.sleep(every)


if __name__ == "__main__":
    sys.exit(main())
