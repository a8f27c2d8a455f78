"""The run store: one folder per run, its ``record.json`` the one row for that run.

States: ``queued → running → succeeded | failed | cancelled``. A run folder holds
``record.json``, ``stdout.log``, ``stderr.log``, ``metrics.jsonl`` (one sample a line),
``result.json`` (the job's own, with the measured peaks added) and, on failure, ``error.json``.
The CLI, the TUI and reports read this store; nothing else keeps run history.

``submit`` creates the record and starts a detached supervisor (:mod:`clusterkit.supervisor`)
that runs the job, samples it and finishes the record, so a run outlives the command that
started it. ``cancel`` asks the supervisor to stop the run and waits until it has.

On a remote cluster the supervisor runs on the master and the run folder there is the truth:
the store has a ``mirror`` (:class:`clusterkit.remote_runs.RunMirror`) and ``refresh`` copies
the master's folders in before anything here reads them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psutil

from clusterkit import daemons
from clusterkit.errors import ClusterkitError, RunNotFound
from clusterkit.metrics import RUN_MARKER, RunProcessFinder
from clusterkit.remote import NodeUnreachable
from clusterkit.state import write_json_atomic

if TYPE_CHECKING:
    from clusterkit.cluster import Cluster
    from clusterkit.remote_runs import RunMirror

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "cancelled")
CANCEL_TIMEOUT_S = 60.0
#: How long ``follow`` keeps trying to reach a remote cluster's master after a drop.
REATTACH_TIMEOUT_S = 120.0


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class RunRecord:
    id: str
    job: str
    params: dict[str, Any]
    cluster: str
    provider: str
    status: str = "queued"
    created: str = field(default_factory=now_iso)
    started: str | None = None
    ended: str | None = None
    wall_s: float | None = None
    error: str | None = None
    exit_code: int | None = None
    metrics_enabled: bool = True
    supervisor: dict[str, Any] | None = None  # {"pid", "create_time"}
    job_pid: int | None = None
    peak_rss_bytes: int | None = None
    nodes: dict[str, Any] = field(default_factory=dict)  # per-node peaks
    cancel_requested: str | None = None
    parent: str | None = None  # the run that submitted this one (a suite's steps)

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def elapsed_s(self, now: float) -> float | None:
        """Seconds it ran: ``wall_s`` once final, else since it started (None if it has not)."""
        if self.final and self.wall_s is not None:
            return self.wall_s
        if self.started is None:
            return None
        return max(0.0, now - datetime.fromisoformat(self.started).timestamp())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def new_run_id() -> str:
    """Sortable by start time, unique: 20261121-083012-3f2a."""
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


class RunStore:
    """Run folders under ``root``; every write is atomic (temp file + rename).

    With a ``mirror`` (a remote cluster's runs), the folders are copies of the master's and
    :meth:`refresh` brings them up to date; without one, ``refresh`` does nothing.
    """

    def __init__(self, root: Path, mirror: RunMirror | None = None) -> None:
        self.root = root
        self.mirror = mirror

    @property
    def poll_s(self) -> float:
        """How often to look again while waiting on a run (a remote look is an SSH trip)."""
        return 0.2 if self.mirror is None else 1.0

    def refresh(self, run_id: str | None = None) -> None:
        """Copy the cluster's run folders (one run's, or every run's) into this store.

        Raises NodeUnreachable when the master does not answer."""
        if self.mirror is None:
            return
        if run_id is None:
            self.mirror.sync_all(self)
        else:
            self.mirror.sync(self, run_id)

    def dir(self, run_id: str) -> Path:
        return self.root / run_id

    def save(self, record: RunRecord) -> None:
        write_json_atomic(self.dir(record.id) / "record.json", record.to_dict())

    def create(self, **values: Any) -> RunRecord:
        record = RunRecord(id=new_run_id(), **values)
        while self.dir(record.id).exists():
            record.id = new_run_id()
        self.dir(record.id).mkdir(parents=True)
        self.save(record)
        return record

    def load(self, run_id: str) -> RunRecord:
        path = self.dir(run_id) / "record.json"
        return RunRecord.from_dict(json.loads(path.read_text()))

    def get(self, ref: str) -> RunRecord:
        """A run by id or unique id prefix (``latest`` or ``-1`` for the newest)."""
        ids = self.ids()
        if ref in ("latest", "-1") and ids:
            return self.load(ids[-1])
        matches = [i for i in ids if i == ref] or [i for i in ids if i.startswith(ref)]
        if len(matches) != 1:
            what = "no run" if not matches else f"{len(matches)} runs"
            raise RunNotFound(
                f"{what} matching {ref!r} in {self.root}; list them with `clusterkit runs`"
            )
        return self.load(matches[0])

    def ids(self) -> list[str]:
        if not self.root.exists():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "record.json").exists())

    def all(self) -> list[RunRecord]:
        """Every run, oldest first."""
        return [self.load(i) for i in self.ids()]

    def active(self) -> list[RunRecord]:
        return [r for r in self.all() if r.status in ACTIVE]

    def result(self, run_id: str) -> dict[str, Any] | None:
        path = self.dir(run_id) / "result.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        return data


def progress(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The job's latest progress report ({"done", "total", "unit"}), or None."""
    path = store.dir(run_id) / "progress.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def supervisor_process(record: RunRecord) -> psutil.Process | None:
    if not record.supervisor:
        return None
    return daemons.process_of(
        daemons.Daemon(
            "supervisor", record.supervisor["pid"], record.supervisor["create_time"], [], ""
        )
    )


def submit(
    cluster: Cluster,
    job: str,
    params: dict[str, Any],
    *,
    metrics_enabled: bool = True,
    parent: str | None = None,
) -> RunRecord:
    """Create the run record and start its supervisor, detached; return the queued record.

    ``parent`` is the run submitting this one (a suite): cancelling it cancels this run too.
    """
    store = cluster.run_store()
    record = store.create(
        job=job,
        params=params,
        cluster=cluster.name,
        provider=cluster.provider,
        metrics_enabled=metrics_enabled,
        parent=parent,
    )
    if store.mirror is not None:  # the supervisor runs on the master
        return store.mirror.start(store, record)
    run_dir = store.dir(record.id)
    argv = [
        sys.executable,
        "-m",
        "clusterkit.supervisor",
        "--cluster",
        cluster.name,
        "--run-id",
        record.id,
    ]
    with open(run_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # a run submitted from inside a run must not carry that run's marker
            env={k: v for k, v in os.environ.items() if k != RUN_MARKER},
        )
    record.supervisor = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time()}
    # The supervisor may already have moved the record on; only add what we know.
    current = store.load(record.id)
    current.supervisor = record.supervisor
    store.save(current)
    return current


def record_refused(
    cluster: Cluster, job: str, args: list[str], error: str, *, exit_code: int = 2
) -> RunRecord:
    """Record a submission refused before it started (a bad parameter): status failed, the
    error, nothing run. The history shows the attempt and why it did not run."""
    store = RunStore(cluster.paths.runs)
    record = store.create(job=job, params={"argv": args}, cluster=cluster.name,
                          provider=cluster.provider)  # fmt: skip
    stamp = now_iso()
    record.status, record.error, record.exit_code = "failed", error, exit_code
    record.started, record.ended, record.wall_s = stamp, stamp, 0.0
    store.save(record)
    return record


def wait(store: RunStore, run_id: str, *, timeout_s: float | None = None) -> RunRecord:
    """Block until the run is final (or its supervisor is gone); return the record."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        store.refresh(run_id)
        record = reap_if_orphaned(store, store.load(run_id))
        if record.final:
            return record
        if deadline is not None and time.monotonic() > deadline:
            return record
        time.sleep(store.poll_s)


def reap_if_orphaned(store: RunStore, record: RunRecord) -> RunRecord:
    """An active run whose supervisor died is marked failed, with that reason (a remote run's
    supervisor is checked on the master when the store is refreshed)."""
    if record.final or record.supervisor is None or store.mirror is not None:
        return record
    if supervisor_process(record) is not None:
        return record
    time.sleep(0.2)  # the supervisor may have written the final record just now
    record = store.load(record.id)
    if record.final:
        return record
    kill_run_processes(record.id)
    record.status = "failed"
    record.error = "the run's supervisor process died; its processes were stopped"
    record.ended = now_iso()
    store.save(record)
    return record


def kill_run_processes(run_id: str, *, grace_s: float = 5.0) -> list[int]:
    """Stop every process on this node that carries the run's marker."""
    me = os.getpid()
    procs = [p for p in RunProcessFinder(run_id).find() if p.pid != me]
    return daemons.terminate_all(procs, grace_s=grace_s) if procs else []


def cancel(cluster: Cluster, ref: str, *, reason: str = "cancelled by the user",
           store: RunStore | None = None) -> RunRecord:  # fmt: skip
    """Stop a run and wait until its supervisor recorded it cancelled; a final run is left as is.

    The runs it submitted (a suite's steps) are cancelled after it, so it cannot start more.
    ``store``: the cluster's store, already refreshed (else one is made and refreshed here).
    """
    if store is None:
        store = cluster.run_store()
        store.refresh()
    record = _cancel_one(store, store.get(ref), reason)
    for child in store.active():
        if child.parent == record.id:
            _cancel_one(store, child, f"{reason} (its parent run {record.id})")
    return record


def _cancel_one(store: RunStore, record: RunRecord, reason: str) -> RunRecord:
    if record.final:
        return record
    if store.mirror is not None:
        store.mirror.cancel(store, record, reason)
        return _wait_cancelled(store, record.id)
    record.cancel_requested = reason
    store.save(record)
    proc = supervisor_process(record)
    if proc is None:
        return reap_if_orphaned(store, record)
    proc.send_signal(signal.SIGTERM)
    return _wait_cancelled(store, record.id)


def _wait_cancelled(store: RunStore, run_id: str) -> RunRecord:
    record = wait(store, run_id, timeout_s=CANCEL_TIMEOUT_S)
    if not record.final:
        raise ClusterkitError(
            f"run {record.id} did not stop within {CANCEL_TIMEOUT_S:.0f} s; see "
            f"{store.dir(record.id) / 'supervisor.log'}"
        )
    return record


def follow(
    store: RunStore,
    run_id: str,
    *,
    stdout: IO[str],
    stderr: IO[str],
    until_final: bool = True,
    on_tick: Callable[[], None] | None = None,
) -> RunRecord:
    """Copy the run's stdout.log and stderr.log to the given streams as they grow.

    With ``until_final`` it returns when the run is final and both logs are drained;
    otherwise after printing what is there now.
    """
    tail = LogTail(store, run_id)
    targets = {"stdout.log": stdout, "stderr.log": stderr}
    lost_since: float | None = None
    while True:
        try:
            store.refresh(run_id)
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
        # read the record first: whatever the job wrote before it was final is drained below
        record = reap_if_orphaned(store, store.load(run_id))
        for name, chunk in tail.read():
            targets[name].write(chunk)
            targets[name].flush()
        if not until_final or record.final:
            return record
        if on_tick is not None:
            on_tick()
        time.sleep(store.poll_s)


class LogTail:
    """A run's ``stdout.log`` and ``stderr.log`` read incrementally: each :meth:`read` returns
    what was appended since the previous one, as (file name, text) pairs."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.dir = store.dir(run_id)
        self.offsets = {"stdout.log": 0, "stderr.log": 0}

    def read(self) -> list[tuple[str, str]]:
        chunks = [(name, _read_new(self.dir / name, self.offsets, name)) for name in self.offsets]
        return [(name, text) for name, text in chunks if text]


def _read_from(path: Path, offset: int) -> bytes:
    """The bytes of ``path`` from ``offset`` on (none if the file is not there yet)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except FileNotFoundError:
        return b""


def _read_new(path: Path, offsets: dict[str, int], name: str) -> str:
    """What was appended to ``path`` since ``offsets[name]`` (advanced past it)."""
    data = _read_from(path, offsets[name])
    offsets[name] += len(data)
    return data.decode(errors="replace")


class MetricsTail:
    """A run's ``metrics.jsonl`` read incrementally: per node, the run's memory over time.

    ``series[node]`` is a list of (unix time, run RSS bytes); ``peak_rss_bytes`` the highest
    run RSS of any one sample so far (on one node, the record's peak once the run is over).
    Only complete lines are consumed, so a line being written is read next time.
    """

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.path = store.dir(run_id) / "metrics.jsonl"
        self.offset = 0
        self.series: dict[str, list[tuple[float, int]]] = {}
        self.peak_rss_bytes = 0

    def read(self) -> int:
        """Take in the samples written since the last call; return how many."""
        data = _read_from(self.path, self.offset)
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        taken = 0
        for line in complete.splitlines():
            try:
                sample = json.loads(line)
                point = (float(sample["t"]), int(sample["run_rss_bytes"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line is skipped, not fatal
            self.series.setdefault(str(sample.get("node", "?")), []).append(point)
            self.peak_rss_bytes = max(self.peak_rss_bytes, point[1])
            taken += 1
        return taken


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: float
    running: bool = False


def stages(store: RunStore, run_id: str, *, now: float | None = None) -> list[Stage]:
    """The run's stages in order with their seconds; the one running now (if any) last.

    From ``result.json`` once the job finished, else from the ``stages.json`` the job keeps
    while it runs (a failed run keeps the stages it got through). Empty if the job has none.
    """
    result = store.result(run_id) or {}
    if result.get("stages"):
        return [Stage(name, float(sec)) for name, sec in result["stages"].items()]
    try:
        live = json.loads((store.dir(run_id) / "stages.json").read_text())
    except (OSError, ValueError):
        return []
    done = [Stage(name, float(sec)) for name, sec in live.get("done", {}).items()]
    if live.get("current"):
        since = float(live.get("since") or 0.0)
        running = max(0.0, (now if now is not None else time.time()) - since)
        done.append(Stage(str(live["current"]), running, running=True))
    return done


class RunWatcher:
    """The store's records, each re-read only when its file changed: cheap to poll each second.

    Active runs whose supervisor died are reaped (marked failed) as in ``clusterkit runs``.
    """

    def __init__(self, store: RunStore, *, refresh_s: float = 2.0) -> None:
        self.store = store
        self.refresh_s = refresh_s
        self._refreshed = 0.0
        self._cache: dict[str, tuple[tuple[int, int], RunRecord]] = {}

    def poll(self) -> list[RunRecord]:
        """Every run, oldest first (a remote cluster's copied in every ``refresh_s``)."""
        if self.store.mirror is not None and time.monotonic() - self._refreshed > self.refresh_s:
            self._refreshed = time.monotonic()
            with contextlib.suppress(ClusterkitError):  # else the copies here are what there is
                self.store.refresh()
        seen: dict[str, tuple[tuple[int, int], RunRecord]] = {}
        try:
            entries = sorted(os.scandir(self.store.root), key=lambda e: e.name)
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
                record = self.store.load(entry.name)
            except (OSError, ValueError):
                continue
            seen[entry.name] = (stamp, record)
        for name, (_, record) in list(seen.items()):
            if not record.final:
                reaped = reap_if_orphaned(self.store, record)
                if reaped is not record:
                    seen[name] = ((0, 0), reaped)  # re-read next time: the file was rewritten
        self._cache = seen
        return [record for _, record in seen.values()]
