"""Starting, cancelling, waiting for and reaping runs: one path for every cluster.

A run is always started the same way: its record is created in the cluster's store, its
``setup.json`` written into its folder on the driver node, and ``python -m
clusterkit.runs.supervisor --run-dir FOLDER`` started there, detached, through the driver
node's runner (this machine's for the local provider; the master's over SSH otherwise; this
machine's again for a job on the master that submits runs of its own). The supervisor runs
the job, samples every node and finishes the record; it goes on when whoever started it has
gone. The supervisor alone writes the record while it lives: cancelling writes the reason
into the run's ``cancel.json``, then signals the supervisor (once it has taken the run). A
run whose supervisor is gone is reaped: its processes are stopped on every node and it is
recorded failed with that reason.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import IO, Any

from clusterkit.core.errors import ClusterkitError, NodeUnreachable, StateError
from clusterkit.core.files import json_bytes
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.records import RUN_MARKER, RunRecord, now_iso
from clusterkit.exec.local import LocalRunner
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner
from clusterkit.runs.store import RunStore
from clusterkit.runs.tails import LogTail

SETUP_FILE = "setup.json"
#: Written by whoever cancels a run (its reason), before the supervisor is signalled.
CANCEL_FILE = "cancel.json"
SUPERVISOR = "clusterkit.runs.supervisor"
#: How long ``submit`` waits for the supervisor to take the run.
START_TIMEOUT_S = 60.0
CANCEL_TIMEOUT_S = 60.0
#: How long ``cancel`` waits for a supervisor to take a queued run before recording it
#: cancelled itself (one that starts later finds the reason and never runs the job).
UNTAKEN_CANCEL_S = 10.0
#: How long ``follow`` keeps trying to reach a remote cluster's master after a drop.
REATTACH_TIMEOUT_S = 120.0
ORPHANED = "the run's supervisor on {node} is gone; its processes were stopped"


@dataclass
class RunSetup:
    """What a run needs besides its record: the job's environment (added to the
    supervisor's), the cluster's name and provider, the driver node's name and run folders,
    the sampling interval, the storage root, the nodes' Python, and the other nodes to sample
    (name and address each, reached from the driver node with its own SSH key)."""

    env: dict[str, str]
    cluster: str
    provider: str
    node: str
    runs_dir: str
    interval_s: float
    storage_root: str
    python: str
    peers: list[dict[str, str]] = field(default_factory=list)
    # the stall rule (clusterkit.runs.stall): what the supervisor watches, and for how long
    stall_timeout_s: float = 120.0
    spark_master_ui: str | None = None
    ray_dashboard: str | None = None
    ray_token_file: str | None = None
    ray_gcs_port: int | None = None
    # the cluster's part of every run's environment block (clusterkit.runs.environment:
    # the lock's hash, each node's installed hash, the spec's hash)
    environment: dict[str, Any] = field(default_factory=dict)

    def for_run(self, run_id: str) -> RunSetup:
        """This setup for run ``run_id``: its folder is the job's CLUSTERKIT_RUN_DIR."""
        return replace(self, env={**self.env, "CLUSTERKIT_RUN_DIR": self.folder(run_id)})

    def folder(self, run_id: str) -> str:
        return f"{self.runs_dir.rstrip('/')}/{run_id}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def load(cls, run_dir: Path) -> RunSetup:
        """The run folder's ``setup.json``; keys this kit does not know are left out (one
        written by a newer kit on the control side)."""
        names = {f.name for f in fields(cls)}
        data = json.loads((run_dir / SETUP_FILE).read_text())
        return cls(**{key: value for key, value in data.items() if key in names})

    def peer_runners(self) -> list[CommandRunner]:
        """The other nodes' runners, as the driver node reaches them: over SSH with its own
        user's key and known hosts (the ``ssh`` role's), each by its private address."""
        home = Path.home() / ".ssh"
        ssh = SshSettings(getpass.getuser(), home / "id_ed25519", home / "known_hosts")
        nodes = tuple(Node(p["name"], p["address"], ("worker",), ssh_host=p["address"])
                      for p in self.peers)  # fmt: skip
        inventory = Inventory(self.cluster, self.provider, nodes)
        return [SshRunner(inventory, node, ssh) for node in nodes]


class Runs:
    """A cluster's runs: its store, and the runners of the driver node and of every node
    (the driver's included), with the setup new runs are given."""

    def __init__(self, store: RunStore, *, setup: RunSetup, driver: CommandRunner,
                 nodes: Sequence[CommandRunner]) -> None:  # fmt: skip
        self.store, self.setup, self.driver, self.nodes = store, setup, driver, list(nodes)

    @classmethod
    def on_driver_node(cls, store: RunStore, setup: RunSetup) -> Runs:
        """The runs as the driver node itself sees them (a supervisor, a job submitting runs):
        its own folders and processes, and the other nodes over SSH."""
        here = LocalRunner()
        return cls(store, setup=setup, driver=here, nodes=[here, *setup.peer_runners()])

    # -- starting -------------------------------------------------------------------------
    def submit(self, job: str, params: dict[str, Any], *, metrics: bool = True,
               parent: str | None = None, spark_session: str = "warm",
               stage: Callable[[str], None] | None = None,
               rerun_of: str | None = None) -> RunRecord:  # fmt: skip
        """Create the run and start its supervisor on the driver node; return once it has
        taken the run (its record says running, or already final). ``parent``: the run
        submitting this one (a suite): cancelling it cancels this run too. ``spark_session``:
        ``warm`` (the cluster's Spark Connect server) or ``classic`` (an application of the
        run's own). ``rerun_of``: the run this one repeats (``clusterkit rerun``), noted in
        its record. ``stage(folder)`` puts the run's inputs into its folder on the driver node
        before it starts; when it raises (ClusterkitError, OSError) the run is recorded failed
        with that reason and returned, nothing started (Ctrl-C: recorded cancelled, re-raised)."""
        setup = self.setup
        record = self.store.create(job=job, params=params, cluster=setup.cluster,
                                   provider=setup.provider, metrics_enabled=metrics,
                                   parent=parent, spark_session=spark_session,
                                   rerun_of=rerun_of)  # fmt: skip
        folder = setup.folder(record.id)
        self.driver.write_file(
            f"{folder}/{SETUP_FILE}", json_bytes(setup.for_run(record.id).to_dict())
        )
        if stage is not None:
            try:
                stage(folder)
            except (ClusterkitError, OSError, KeyboardInterrupt) as exc:
                stamp = now_iso()
                status = "cancelled" if isinstance(exc, KeyboardInterrupt) else "failed"
                why = str(exc) if isinstance(exc, ClusterkitError) else (
                    "interrupted while its inputs were copied" if status == "cancelled" else
                    f"its inputs could not be copied to {setup.node}: {exc}")  # fmt: skip
                record = replace(record, status=status, error=why, exit_code=None,
                                 started=stamp, ended=stamp, wall_s=0.0)  # fmt: skip
                self.store.save(record)
                if isinstance(exc, KeyboardInterrupt):
                    raise
                return record
        # a run submitted from inside a run must not carry that run's marker
        self.driver.spawn([setup.python, "-m", SUPERVISOR, "--run-dir", folder], cwd=folder,
                          log=f"{folder}/supervisor.log", unset_env=[RUN_MARKER])  # fmt: skip
        return self._taken(record)

    def _taken(self, record: RunRecord) -> RunRecord:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            self.store.refresh(record.id)
            current = self.store.load(record.id)
            if current.status != "queued":
                return current
            if time.monotonic() > deadline:
                log = self._tail(record.id, "supervisor.log")
                current = replace(current, status="failed", ended=now_iso(), exit_code=None,
                                  error=f"the supervisor on {self.setup.node} did not start the "
                                        f"run in {START_TIMEOUT_S:.0f} s: {log}")  # fmt: skip
                self.store.save(current)
                return current
            time.sleep(0.25)

    def _tail(self, run_id: str, name: str, lines: int = 5) -> str:
        try:
            text = self.driver.read_bytes(f"{self.setup.folder(run_id)}/{name}").decode(
                errors="replace"
            )
        except (FileNotFoundError, ClusterkitError):
            return f"no {name}"
        return " | ".join(text.strip().splitlines()[-lines:]) or f"{name} is empty"

    def record_refused(self, job: str, args: list[str], error: str, *,
                       exit_code: int = 2) -> RunRecord:  # fmt: skip
        """Record a submission refused before it started (a bad parameter): status failed,
        the error, nothing run. The history shows the attempt and why it did not run."""
        stamp = now_iso()
        record = self.store.create(job=job, params={"argv": args}, cluster=self.setup.cluster,
                                   provider=self.setup.provider)  # fmt: skip
        record = replace(record, status="failed", error=error, exit_code=exit_code,
                         started=stamp, ended=stamp, wall_s=0.0)  # fmt: skip
        self.store.save(record)
        return record

    # -- reaping --------------------------------------------------------------------------
    def reap_if_orphaned(self, record: RunRecord) -> RunRecord:
        """An active run whose supervisor is gone is recorded failed with that reason, once
        its processes on every node are stopped and what it left half-written there is
        removed (the supervisor's own sweep never ran). Any other run is returned as is."""
        supervisor = record.supervisor
        if record.final or supervisor is None:
            return record
        if self.driver.alive(int(supervisor["pid"]), marker=record.id):
            return record
        # it may have written the final record just before it exited: read it once more
        self.store.refresh(record.id)
        record = self.store.load(record.id)
        if record.final:
            return record
        node_side = [self.setup.python, "-m", "clusterkit.metrics", "--run-id", record.id]
        for step in (["--stop-processes"], ["--sweep-outputs", self.setup.storage_root]):
            for runner in self.nodes:  # every node stopped before any is swept
                with contextlib.suppress(ClusterkitError):  # a node gone has nothing to do
                    runner.run([*node_side, *step], check=False, timeout=60)
        node = supervisor.get("node") or self.setup.node
        reaped = replace(record, status="failed", ended=now_iso(), error=ORPHANED.format(node=node))
        self.store.save(reaped)
        return reaped

    # -- waiting --------------------------------------------------------------------------
    def wait(self, run_id: str, *, timeout_s: float | None = None) -> RunRecord:
        """Block until the run is final (or its supervisor is gone); return the record."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            self.store.refresh(run_id)
            record = self.reap_if_orphaned(self.store.load(run_id))
            if record.final or (deadline is not None and time.monotonic() > deadline):
                return record
            time.sleep(self.store.poll_s)

    def follow(self, run_id: str, *, stdout: IO[str], stderr: IO[str], until_final: bool = True,
               on_tick: Callable[[], None] | None = None) -> RunRecord:  # fmt: skip
        """Copy the run's stdout.log and stderr.log to the given streams as they grow.

        With ``until_final`` it returns when the run is final and both logs are drained,
        otherwise after printing what is there now. A remote master that stops answering is
        tried again (the run goes on there) for up to REATTACH_TIMEOUT_S.
        """
        tail = LogTail(self.store, run_id)
        targets = {"stdout.log": stdout, "stderr.log": stderr}
        lost_since: float | None = None
        while True:
            try:
                self.store.refresh(run_id)
                # the record first: whatever the job wrote before it was final is drained below
                record = self.reap_if_orphaned(self.store.load(run_id))
            except NodeUnreachable as exc:  # the run goes on on the cluster; try again
                if lost_since is None:
                    lost_since = time.monotonic()
                    stderr.write(f"{exc}; the run goes on there; reattaching ...\n")
                elif time.monotonic() - lost_since > REATTACH_TIMEOUT_S:
                    raise NodeUnreachable(
                        f"{exc}; run {run_id} goes on on the cluster: "
                        f"`clusterkit logs {run_id} --follow` reattaches"
                    ) from exc
                time.sleep(2.0)
                continue
            if lost_since is not None:
                stderr.write(f"reattached to run {run_id}\n")
                lost_since = None
            for name, chunk in tail.read():
                targets[name].write(chunk)
                targets[name].flush()
            if not until_final or record.final:
                return record
            if on_tick is not None:
                on_tick()
            time.sleep(self.store.poll_s)

    # -- cancelling -----------------------------------------------------------------------
    def cancel(self, ref: str, *, reason: str = "cancelled by the user") -> RunRecord:
        """Stop a run and wait until its supervisor recorded it cancelled (a final run is left
        as it is); then the runs it submitted (a suite's steps), so it cannot start more."""
        self.store.refresh()
        record = self._cancel_one(self.store.get(ref), reason)
        for child in self.store.active():
            if child.parent == record.id:
                self._cancel_one(child, f"{reason} (its parent run {record.id})")
        return record

    def _cancel_one(self, record: RunRecord, reason: str) -> RunRecord:
        """Ask the run's supervisor to stop (the reason first, then SIGTERM once it has taken
        the run; a run not yet taken is never started) and wait until it is final."""
        self.store.refresh(record.id)
        if self.store.load(record.id).final:
            return self.store.load(record.id)
        self.store.write_json(record.id, CANCEL_FILE, {"reason": reason, "at": now_iso()})
        signalled = False
        asked = time.monotonic()
        deadline = asked + CANCEL_TIMEOUT_S
        while True:
            self.store.refresh(record.id)
            record = self.reap_if_orphaned(self.store.load(record.id))
            if record.final:
                return record
            if record.supervisor is None and time.monotonic() - asked > UNTAKEN_CANCEL_S:
                untaken = replace(record, status="cancelled", ended=now_iso(),
                                  cancel_requested=reason,
                                  error=f"{reason} (no supervisor had taken it)")  # fmt: skip
                self.store.save(untaken)
                return untaken
            if record.supervisor is not None and not signalled:
                self.driver.run(["kill", "-TERM", str(int(record.supervisor["pid"]))],
                                check=False)  # fmt: skip
                signalled = True
            if time.monotonic() > deadline:
                raise ClusterkitError(
                    f"run {record.id} did not stop within {CANCEL_TIMEOUT_S:.0f} s; see "
                    f"{self.setup.folder(record.id)}/supervisor.log on {self.setup.node}"
                )
            time.sleep(self.store.poll_s)


class RunWatcher:
    """The store's records, each re-read only when its file changed: cheap to poll each second.

    The store is refreshed every ``refresh_s`` (a remote master's runs are copied in); each
    active run goes through ``reap`` (:meth:`Runs.reap_if_orphaned`, which records a run
    whose supervisor died failed, as ``clusterkit runs`` does).
    """

    def __init__(self, store: RunStore, *, reap: Callable[[RunRecord], RunRecord] = lambda r: r,
                 refresh_s: float = 2.0) -> None:  # fmt: skip
        self.store, self.reap = store, reap
        self.refresh_s = refresh_s
        self._refreshed = 0.0
        self._cache: dict[str, tuple[tuple[int, int], RunRecord]] = {}

    def poll(self) -> list[RunRecord]:
        """Every run, oldest first."""
        store = self.store
        if time.monotonic() - self._refreshed > self.refresh_s:
            self._refreshed = time.monotonic()
            with contextlib.suppress(ClusterkitError):  # else the copies here are what there is
                store.refresh()
        seen: dict[str, tuple[tuple[int, int], RunRecord]] = {}
        try:
            entries = sorted(os.scandir(store.root), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            try:
                info = os.stat(os.path.join(entry.path, "record.json"))
            except OSError:
                continue
            stamp = (info.st_mtime_ns, info.st_size)
            cached = self._cache.get(entry.name)
            if cached is not None and cached[0] == stamp:
                seen[entry.name] = cached
                continue
            try:
                record = store.load(entry.name)
            except (OSError, ValueError, StateError):  # a damaged record: doctor names it
                continue
            seen[entry.name] = (stamp, record)
        for name, (_, record) in list(seen.items()):
            if not record.final:
                with contextlib.suppress(ClusterkitError):
                    reaped = self.reap(record)
                    if reaped is not record:
                        seen[name] = ((0, 0), reaped)  # re-read next time: it was rewritten
        self._cache = seen
        return [record for _, record in seen.values()]
