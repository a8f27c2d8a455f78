"""The local provider's service keeper: what systemd's ``Restart=on-failure`` is on the nodes.

``python -m clusterkit.services.keeper --state-dir DIR``, started by ``up`` beside the local
daemons (and stopped first by ``down``). Every second it looks at the daemons
``cluster.json`` records; one that is no longer running is started again with the same
settings (the Spark master first, then what needs it), within about two seconds of its end;
a master started again has forgotten the Connect server's application, so that server is
started again too.
Each event is a line in ``logs/keeper.out`` and counted in ``keeper.json`` (what ``status``
shows). A daemon that ends five times within a minute is left down and said so, as systemd's
start limit does: restarting it again would only hide what kills it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_json_atomic
from clusterkit.core.lock import state_lock
from clusterkit.core.records import Daemon, now_iso
from clusterkit.core.state import ClusterPaths, ClusterState
from clusterkit.exec import processes
from clusterkit.services import preflight
from clusterkit.services.health import spark_master_alive
from clusterkit.services.keeper_events import keeper_file, read_events

#: The daemons in the order they are started again (each needs those before it).
ORDER = ("spark-master", "ray-head", "spark-worker", "spark-connect")
NAME = "keeper"
#: The daemons that register with the Spark master: started only once it is ALIVE.
NEEDS_MASTER = ("spark-worker", "spark-connect")
#: Within ``LIMIT_WINDOW_S``, at most ``LIMIT_BURST`` restarts of one daemon.
LIMIT_BURST, LIMIT_WINDOW_S = 5, 60.0
POLL_S = 1.0


class Keeper:
    """Starts again what of a local cluster ended; ``starters`` start each daemon by name."""

    def __init__(self, paths: ClusterPaths, starters: dict[str, Callable[[], Daemon]],
                 *, say: Callable[[str], None]) -> None:  # fmt: skip
        self.paths, self.starters, self.say = paths, starters, say
        self.events = read_events(paths)
        self.recent: dict[str, list[float]] = {}
        self.master_restarted = False

    def check(self) -> list[str]:
        """One pass: every recorded daemon that ended is started again (in :data:`ORDER`);
        the names started. The state is read fresh and written back whole."""
        with state_lock(self.paths.root):
            return self._check()

    def _check(self) -> list[str]:
        state = ClusterState.load(self.paths)
        if state is None or not state.daemons:  # taken down meanwhile
            return []
        by_name = {d.name: d for d in state.daemons}
        started = []
        for name in ORDER:
            daemon = by_name.get(name)
            if daemon is None or name in self.events["given_up"]:
                continue
            # a master started again has forgotten the Connect server's application (no
            # recovery mode): that server would never get an executor again
            orphaned = name == "spark-connect" and self.master_restarted
            if processes.is_alive(daemon) and not orphaned:
                continue
            if name in NEEDS_MASTER and not self._master_ready(state, by_name):
                continue  # the master first: a worker registering earlier is dropped
            if not self._may_restart(name):
                continue
            why = "had ended"
            if processes.is_alive(daemon):
                processes.stop_all([daemon])
                why = "lost its application when the Spark master ended"
            fresh = self.starters[name]()
            by_name[name] = fresh
            started.append(name)
            if name == "spark-master":
                self.master_restarted = True
            elif name == "spark-connect":
                self.master_restarted = False
            self._note(name, f"{name} (pid {daemon.pid}) {why}; started again as pid "
                             f"{fresh.pid}")  # fmt: skip
        if started:
            state.daemons = [by_name[d.name] for d in state.daemons]
            state.save(self.paths)
        return started

    def _master_ready(self, state: ClusterState, by_name: dict[str, Daemon]) -> bool:
        master = by_name.get("spark-master")
        if master is None:
            return True
        return processes.is_alive(master) and spark_master_alive(state.endpoints.spark_master_ui)

    def _may_restart(self, name: str) -> bool:
        now = time.monotonic()
        recent = [t for t in self.recent.get(name, []) if now - t < LIMIT_WINDOW_S]
        if len(recent) >= LIMIT_BURST:
            self.events["given_up"].append(name)
            self._note(name, f"{name} ended {LIMIT_BURST} times within {LIMIT_WINDOW_S:.0f} s: "
                             f"left down; see its log, then `clusterkit up`")  # fmt: skip
            return False
        self.recent[name] = [*recent, now]
        return True

    def _note(self, name: str, message: str) -> None:
        self.say(message)
        restarts = self.events["restarts"]
        if "left down" not in message:
            restarts[name] = restarts.get(name, 0) + 1
        self.events["events"] = [*self.events["events"][-19:],
                                 {"at": now_iso(), "service": name, "what": message}]  # fmt: skip
        write_json_atomic(keeper_file(self.paths), self.events)


def starters_for(state: ClusterState, paths: ClusterPaths) -> dict[str, Callable[[], Daemon]]:
    """How each daemon of the local cluster is started, as ``up`` started it."""
    from clusterkit.services.local import Launcher

    java = preflight.find_java(state.spec.versions.java_min)
    if state.java_home:
        java = replace(java, home=Path(state.java_home))
    launcher = Launcher(state.spec, paths, java=java, sizing=preflight.size_services(state.spec),
                        base_env=os.environ)  # fmt: skip
    return {"spark-master": launcher.spark_master, "spark-worker": launcher.spark_worker,
            "spark-connect": launcher.spark_connect, "ray-head": launcher.ray_head}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterkit.services.keeper")
    parser.add_argument("--state-dir", required=True, type=Path)
    args = parser.parse_args(argv)
    paths = ClusterPaths(args.state_dir)
    stopping = False

    def stop(_signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def say(line: str) -> None:
        print(f"{now_iso()} {line}", flush=True)

    state = ClusterState.load(paths)
    if state is None:
        say(f"no cluster in {paths.root}: nothing to keep")
        return 1
    keeper = Keeper(paths, starters_for(state, paths), say=say)
    say(f"keeping cluster {state.name!r}: {', '.join(d.name for d in state.daemons)}")
    while not stopping:
        try:
            keeper.check()
        except ClusterkitError as exc:  # a state being rewritten, a port taken: next pass
            say(f"this pass failed: {exc}")
        except Exception as exc:
            say(f"this pass failed: {type(exc).__name__}: {exc}")
        time.sleep(POLL_S)
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
