"""A run never hangs silently: the stall rule its supervisor applies while the job runs.

A run that uses Spark (its own driver JVM, or the cluster's Spark Connect server) needs an
ALIVE Spark worker to have executors; a run that uses Ray (a process of it holds a connection
to Ray's GCS, or it has Ray workers) needs an ALIVE Ray node. When what it needs has
been gone for longer than ``runs.stall_timeout``, :meth:`StallWatch.tick` returns the error
the run fails with: what was lost, since when, and what to do. A run working on the Spark
Connect server when that server ends fails at once, saying so: a server started again knows
nothing of its session. Losses the run outlives (a worker that came back, its tasks retried
by Spark or Ray) are kept as ``notes`` for its record.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from clusterkit.core.records import SHARED_FILE, SHARED_MARKER, now_iso
from clusterkit.metrics.sampling import RunProcessFinder, process_role

ServerFinder = Callable[[], psutil.Process | None]

#: Seconds between two looks (each is one HTTP request per engine and a process scan).
CHECK_EVERY_S = 2.0
TIMEOUT_S = 3.0


@dataclass
class Watched:
    """What one engine has looked like: its ALIVE members and since when it has had none."""

    alive: set[str] = field(default_factory=set)
    none_since: float | None = None
    lost: list[str] = field(default_factory=list)  # member (at time) lost during the run


def spark_workers(master_ui: str) -> set[str]:
    """The ALIVE workers the Spark master lists, by id (a worker started again at the same
    address has a new one); an empty set when it does not answer (no executor can start
    then either)."""
    try:
        data = requests.get(f"{master_ui}/json/", timeout=TIMEOUT_S).json()
    except (requests.RequestException, ValueError):
        return set()
    workers = data.get("workers") if isinstance(data, dict) else None
    alive = [w for w in workers or [] if isinstance(w, dict) and w.get("state") == "ALIVE"]
    return {str(w.get("id") or f"{w.get('host')}:{w.get('port')}") for w in alive}


def ray_nodes(dashboard: str, token_file: str | None) -> set[str]:
    """The ALIVE Ray nodes the dashboard lists, by node id (a node started again at the same
    address has a new one); empty when it does not answer."""
    headers = {}
    if token_file:
        try:
            headers = {"Authorization": f"Bearer {Path(token_file).read_text().strip()}"}
        except OSError:
            return set()
    try:
        response = requests.get(f"{dashboard}/nodes?view=summary", headers=headers,
                                timeout=TIMEOUT_S)  # fmt: skip
        nodes = response.json()["data"]["summary"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return set()
    raylets = [n.get("raylet") or {} for n in nodes or [] if isinstance(n, dict)]
    return {str(r.get("nodeId") or r.get("nodeManagerAddress"))
            for r in raylets if isinstance(r, dict) and r.get("state") == "ALIVE"}  # fmt: skip


class StallWatch:
    """The stall rule for one run: ``tick()`` every :data:`CHECK_EVERY_S` while its job runs.

    ``spark_master_ui`` / ``ray_dashboard`` (None: that engine is not watched) are read as
    the run's supervisor sees them; ``clock``, the readers and ``find_server`` (this node's
    Spark Connect server) are injectable for tests."""

    def __init__(self, run_id: str, run_dir: Path, *, timeout_s: float,
                 spark_master_ui: str | None, ray_dashboard: str | None,
                 ray_token_file: str | None = None, ray_gcs_port: int | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 find_server: ServerFinder | None = None) -> None:  # fmt: skip
        self.run_id, self.run_dir, self.timeout_s, self.clock = run_id, run_dir, timeout_s, clock
        self.readers: dict[str, Callable[[], set[str]]] = {}
        if spark_master_ui:
            self.readers["spark"] = lambda: spark_workers(spark_master_ui)
        if ray_dashboard:
            self.readers["ray"] = lambda: ray_nodes(ray_dashboard, ray_token_file)
        self.ray_gcs_port = ray_gcs_port
        self.watched: dict[str, Watched] = {}
        self.used: set[str] = set()
        self._notes: list[tuple[str, str]] = []  # (engine, note)
        self._finder = RunProcessFinder(run_id)
        self._server: psutil.Process | None = None  # the Connect server the run works on
        self._find_server = find_server or _connect_server
        #: why the run cannot go on: the Connect server it worked on ended (its session, and
        #: the run's work on it, went with it); None while it has not
        self.server_lost: str | None = None

    @property
    def notes(self) -> list[str]:
        """What the run outlived, of the engines it used."""
        return [note for engine, note in self._notes if engine in self.used]

    def uses(self) -> set[str]:
        """The engines the run uses so far, from its processes and files."""
        found = set()
        if (self.run_dir / SHARED_FILE).exists():
            found.add("spark")
        for proc in self._finder.find():
            if {"spark", "ray"} <= self.used | found:
                break  # nothing more to learn (a connection scan is the costly part)
            try:
                role = process_role(proc.cmdline())
                if role == "spark-driver-jvm":
                    found.add("spark")
                elif role == "ray-worker" or _connected_to(proc, self.ray_gcs_port):
                    found.add("ray")
            except psutil.Error:
                continue
        return found

    def tick(self) -> str | None:
        """One look at every engine (the first, as the run starts, is what it began with);
        the error the run fails with when an engine it uses has stalled, else None."""
        now = self.clock()
        self.used |= self.uses()
        if self._connect_server_ended():
            return self.server_lost
        errors = [self._look(engine, reader(), now) for engine, reader in self.readers.items()]
        used = [e for engine, e in zip(self.readers, errors, strict=True) if engine in self.used]
        return next((e for e in used if e), None)

    def _connect_server_ended(self) -> bool:
        """Whether the Spark Connect server the run attached to has ended since (found at the
        first look after the run attached: the process of this node that carries the shared
        marker and is the server). A server started again knows nothing of the run's
        session, so the run cannot go on."""
        if self.server_lost is not None:
            return True
        if not (self.run_dir / SHARED_FILE).exists():
            return False
        if self._server is None:
            self._server = self._find_server()
            return False
        if _running(self._server):
            return False
        pid = self._server.pid
        self._notes.append(("spark", f"the Spark Connect server (pid {pid}) ended at "
                                     f"{now_iso()} while the run worked on it"))  # fmt: skip
        self.used.add("spark")
        self.server_lost = (
            f"the Spark Connect server this run worked on (pid {pid}) ended at {now_iso()}, "
            "and the run's session and work went with it; `clusterkit status` shows the "
            "server (the cluster starts it again), then run the job again")  # fmt: skip
        return True

    def _look(self, engine: str, alive: set[str], now: float) -> str | None:
        seen = self.watched.setdefault(engine, Watched(alive=set(alive)))
        what = "Spark worker" if engine == "spark" else "Ray node"
        for member in sorted(seen.alive - alive):
            seen.lost.append(f"{member} at {now_iso()}")
            self._notes.append((engine, f"{what} {member} was lost at {now_iso()} while the "
                                        "run ran"))  # fmt: skip
        for member in sorted(alive - seen.alive):
            if seen.lost:
                self._notes.append((engine, f"{what} {member} joined at {now_iso()}"))
        seen.alive = set(alive)
        if alive:
            seen.none_since = None
            return None
        if seen.none_since is None:
            seen.none_since = now
        waited = now - seen.none_since
        if waited < self.timeout_s:
            return None
        lost = f" (lost: {', '.join(seen.lost)})" if seen.lost else ""
        if engine == "spark":
            return (f"stalled: no Spark worker has been ALIVE for {waited:.0f} s{lost}, so the "
                    "run could have no executor; `clusterkit status` shows what is down and "
                    "`clusterkit up` starts it again, then run it again")  # fmt: skip
        return (f"stalled: no Ray node has been ALIVE for {waited:.0f} s{lost}, so the run's "
                "tasks could not run; `clusterkit status` shows what is down and `clusterkit "
                "up` starts it again, then run it again")  # fmt: skip


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _connect_server() -> psutil.Process | None:
    """This node's Spark Connect server (it carries the shared processes' marker), if any."""
    for proc in RunProcessFinder(None, marker=SHARED_MARKER).find():
        try:
            if process_role(proc.cmdline()) == "spark-connect-server":
                return proc
        except psutil.Error:
            continue
    return None


def _connected_to(proc: psutil.Process, port: int | None) -> bool:
    """Whether ``proc`` holds a TCP connection to ``port`` (a Ray driver, to Ray's GCS)."""
    if port is None:
        return False
    try:
        return any(c.raddr and c.raddr.port == port for c in proc.net_connections(kind="tcp"))
    except (psutil.Error, OSError):
        return False
