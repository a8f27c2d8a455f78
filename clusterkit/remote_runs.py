"""Runs on a remote cluster: started on the master, detached; the local run store a copy.

The master's run folder (``/var/lib/clusterkit/runs/ID``) is the truth: its supervisor
(:mod:`clusterkit.supervisor` ``--run-dir``) owns ``record.json`` and writes the logs, the
samples of every node and the job's files there. It goes on when the SSH session that
started it ends. :class:`RunMirror` copies the folder into the local store whenever a command
looks (``runs``, ``logs --follow``, ``run``, the TUI), so any machine with the cluster's
state sees the same runs; append-only files (logs, samples) are copied from where the local
copy ends. Cancelling writes the reason into the master's record, then signals its supervisor.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clusterkit.errors import ClusterkitError
from clusterkit.inventory import Inventory
from clusterkit.remote import NodeUnreachable, SshSettings, connect, run
from clusterkit.remote_cluster import NODE_RUNS_DIR, remote_python
from clusterkit.runs import RunRecord, RunStore, now_iso
from clusterkit.supervisor import SETUP_FILE, RunSetup

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from clusterkit.cluster import Cluster

#: Files the supervisor only appends to: copied from where the local copy ends.
APPENDED = ("stdout.log", "stderr.log", "metrics.jsonl")
#: How long ``start`` waits for the supervisor on the master to take the run.
START_TIMEOUT_S = 60.0
ORPHANED = "the run's supervisor on {node} is gone; its processes were stopped"


class RunMirror:
    """The master's run folders, copied into a local :class:`RunStore` on demand.

    One SSH connection (to the master, the driver node), opened when first needed and opened
    again after a drop; an operation that cannot reach the master raises NodeUnreachable.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.inventory: Inventory = cluster.inventory
        self.ssh = SshSettings.from_dict(cluster.state["ssh"])
        self.master = self.inventory.driver().name
        self._context: AbstractContextManager[Any] | None = None
        self._conn: Any = None

    # -- the connection -------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None:
            self._context = connect(self.inventory, self.master, self.ssh)
            self._conn = self._context.__enter__()
        return self._conn

    def close(self) -> None:
        if self._context is not None:
            # a dead connection may fail to close; it is gone either way
            with contextlib.suppress(Exception):
                self._context.__exit__(None, None, None)
        self._context, self._conn = None, None

    def _do(self, what: str, action: Any) -> Any:
        """``action(conn)``; a dropped connection is closed and reported as NodeUnreachable."""
        try:
            return action(self._connection())
        except FileNotFoundError:
            raise  # the connection is fine; the file is not there
        except ClusterkitError:
            self.close()
            raise
        except Exception as exc:  # OSError, EOFError, paramiko's SSHException and kin
            self.close()
            raise NodeUnreachable(
                f"lost the connection to {self.master} of cluster {self.cluster.name!r} "
                f"while {what}: {exc or type(exc).__name__}"
            ) from exc

    # -- starting -------------------------------------------------------------------------
    def setup_for(self, run_id: str) -> RunSetup:
        """What the supervisor on the master needs for this run."""
        cluster = self.cluster
        return RunSetup(
            env={**cluster.job_env(), "CLUSTERKIT_RUN_DIR": _remote_dir(run_id)},
            node=self.master,
            interval_s=cluster.spec.metrics.interval_s,
            storage_root=cluster.storage_root,
            python=remote_python(cluster.state),
            peers=[{"name": n.name, "address": n.address}
                   for n in self.inventory.nodes if n.name != self.master],
        )  # fmt: skip

    def start(self, store: RunStore, record: RunRecord) -> RunRecord:
        """Put the run on the master and start its supervisor there, detached; return once
        it has taken the run (its record says running, or final)."""
        folder = _remote_dir(record.id)
        setup = self.setup_for(record.id)
        here, python = shlex.quote(folder), shlex.quote(setup.python)
        # setsid --fork: a session of its own, and the shell (with the channel's stdout)
        # returns at once, so the SSH session ends while the supervisor goes on
        command = (f"cd {here} && setsid --fork {python} -m clusterkit.supervisor "
                   f"--run-dir {here} </dev/null >supervisor.log 2>&1")  # fmt: skip

        def put(conn: Any) -> None:
            run(conn, f"mkdir -p -m 0700 {shlex.quote(folder)}")
            sftp = conn.sftp()
            _write_remote(sftp, f"{folder}/{SETUP_FILE}", setup.to_dict())
            _write_remote(sftp, f"{folder}/record.json", record.to_dict())
            run(conn, command)

        self._do(f"starting run {record.id}", put)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            current = self.sync(store, record.id)
            if current.status != "queued":
                return current
            if time.monotonic() > deadline:
                log = self._do("reading the supervisor's log",
                               lambda c: run(c, f"tail -n 5 {folder}/supervisor.log",
                                             check=False).stdout)  # fmt: skip
                tail = " | ".join(log.strip().splitlines())
                failed = replace(current, status="failed", ended=now_iso(),
                                 error=f"the supervisor on {self.master} did not start the run "
                                       f"in {START_TIMEOUT_S:.0f} s: {tail}")  # fmt: skip
                self._record(store, failed)
                return failed
            time.sleep(0.5)

    # -- copying --------------------------------------------------------------------------
    def sync(self, store: RunStore, run_id: str) -> RunRecord:
        """Copy the master's folder of ``run_id`` into the store; the run's record. A run
        whose supervisor died is recorded failed (on the master) with the reason."""
        record = self._do(f"reading run {run_id}", lambda c: self._copy(c, store, run_id))
        if record.final or record.supervisor is None:
            return record
        if self._do(f"checking run {run_id}'s supervisor", lambda c: _alive(c, record)):
            return record
        # it may have written the final record just before it exited: read it once more
        record = self._do(f"reading run {run_id}", lambda c: self._copy(c, store, run_id))
        return record if record.final else self._reap(store, record)

    def _copy(self, conn: Any, store: RunStore, run_id: str) -> RunRecord:
        sftp = conn.sftp()
        folder = _remote_dir(run_id)
        local = store.dir(run_id)
        local.mkdir(parents=True, exist_ok=True)
        with sftp.open(f"{folder}/record.json") as handle:
            record_text = handle.read()  # first: the files copied next are at least as new
        for entry in sftp.listdir_attr(folder):
            name = entry.filename
            if name.startswith(".") or name == "record.json" or not stat.S_ISREG(entry.st_mode):
                continue
            target = local / name
            have = target.stat() if target.exists() else None
            if name in APPENDED:
                if entry.st_size > (have.st_size if have else 0):
                    _append_from(sftp, f"{folder}/{name}", target, have.st_size if have else 0)
            elif have is None or (have.st_size, int(have.st_mtime)) != (
                entry.st_size,
                entry.st_mtime,
            ):
                _fetch_whole(sftp, f"{folder}/{name}", target, entry.st_mtime)
        record = RunRecord.from_dict(json.loads(record_text))
        store.save(record)
        return record

    def sync_all(self, store: RunStore) -> list[RunRecord]:
        """Copy every run the master holds that the store does not have final; all records."""

        def ids(conn: Any) -> list[str]:
            try:
                return sorted(conn.sftp().listdir(NODE_RUNS_DIR))
            except FileNotFoundError:
                return []

        for run_id in self._do("listing the runs", ids):
            cached = store.dir(run_id) / "record.json"
            if not cached.exists() or not store.load(run_id).final:
                try:
                    self.sync(store, run_id)
                except FileNotFoundError:
                    continue  # a folder without a record yet (being started)
        return store.all()

    # -- stopping -------------------------------------------------------------------------
    def cancel(self, store: RunStore, record: RunRecord, reason: str) -> None:
        """Write why into the master's record, then SIGTERM the run's supervisor there."""
        folder = _remote_dir(record.id)

        def signal(conn: Any) -> None:
            sftp = conn.sftp()
            with sftp.open(f"{folder}/record.json") as handle:
                current = RunRecord.from_dict(json.loads(handle.read()))
            if current.final:
                return
            current.cancel_requested = reason
            _write_remote(sftp, f"{folder}/record.json", current.to_dict())
            if current.supervisor and _alive(conn, current):
                run(conn, f"kill -TERM {int(current.supervisor['pid'])}", check=False)

        self._do(f"cancelling run {record.id}", signal)
        self.sync(store, record.id)

    def _reap(self, store: RunStore, record: RunRecord) -> RunRecord:
        """Mark a run whose supervisor died failed, on the master, and stop its processes on
        every node."""
        for node in self.inventory.nodes:
            try:
                with connect(self.inventory, node.name, self.ssh) as conn:
                    run(conn, shlex.join([remote_python(self.cluster.state), "-m",
                                          "clusterkit.metrics", "--run-id", record.id,
                                          "--stop-processes"]), check=False)  # fmt: skip
            except ClusterkitError:
                pass  # an unreachable node has nothing to stop that we could reach
        reaped = replace(record, status="failed", ended=now_iso(),
                         error=ORPHANED.format(node=self.master))  # fmt: skip
        self._record(store, reaped)
        return reaped

    def _record(self, store: RunStore, record: RunRecord) -> None:
        """Write ``record`` on the master (the truth), then here."""
        path = f"{_remote_dir(record.id)}/record.json"
        self._do(f"recording run {record.id}",
                 lambda c: _write_remote(c.sftp(), path, record.to_dict()))  # fmt: skip
        store.save(record)


def _remote_dir(run_id: str) -> str:
    return f"{NODE_RUNS_DIR}/{run_id}"


def _alive(conn: Any, record: RunRecord) -> bool:
    """Whether the run's supervisor still runs on the master (its /proc entry names the run)."""
    assert record.supervisor is not None
    try:
        with conn.sftp().open(f"/proc/{int(record.supervisor['pid'])}/cmdline") as handle:
            return record.id.encode() in handle.read()
    except OSError:  # no such process
        return False


def _write_remote(sftp: Any, path: str, data: Any) -> None:
    """Write JSON on the node so that readers see the old file or the new one."""
    tmp = f"{path.rsplit('/', 1)[0]}/.{path.rsplit('/', 1)[1]}.laptop"
    with sftp.open(tmp, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sftp.posix_rename(tmp, path)


def _append_from(sftp: Any, path: str, target: Path, offset: int) -> None:
    with sftp.open(path, "rb") as remote_file:
        remote_file.seek(offset)
        data = remote_file.read()
    if data:
        with open(target, "ab") as local_file:
            local_file.write(data)


def _fetch_whole(sftp: Any, path: str, target: Path, mtime: int) -> None:
    tmp = target.with_name(f".{target.name}.copy")
    sftp.get(path, str(tmp))
    os.utime(tmp, (mtime, mtime))
    tmp.replace(target)
