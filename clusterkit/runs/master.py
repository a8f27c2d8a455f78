"""The runs of a cluster whose driver node is another machine: the master's run folders
(the truth: its supervisors own the records and write the logs, the samples and the jobs'
files there) read through the master's runner into a folder here.

Every read is of the copy here, brought up to date by :meth:`MasterRunStore.refresh` (one
run's folder, or every run the copy does not yet hold final); files the supervisor only
appends to are copied from where the copy ends. Writes go to the master first, then here,
so any machine holding the cluster's state sees the same runs.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from clusterkit.core.errors import RunNotFound
from clusterkit.core.files import json_bytes, write_bytes_atomic
from clusterkit.core.records import RunRecord
from clusterkit.exec.runner import CommandRunner
from clusterkit.runs.store import FolderRunStore

#: Files the supervisor only appends to: copied from where the copy here ends.
APPENDED = ("stdout.log", "stderr.log", "metrics.jsonl")


class MasterRunStore(FolderRunStore):
    """The run folders under ``remote_root`` on the node of ``runner``, copied into ``root``
    (a folder here) on :meth:`refresh`. NodeUnreachable when that node does not answer."""

    poll_s = 1.0  # a look is a round trip to the master

    def __init__(self, runner: CommandRunner, remote_root: str, root: Path) -> None:
        super().__init__(root)
        self.runner, self.remote_root = runner, remote_root.rstrip("/")
        self._lock = threading.Lock()

    def remote(self, run_id: str, name: str = "") -> str:
        return f"{self.remote_root}/{run_id}" + (f"/{name}" if name else "")

    def save(self, record: RunRecord) -> None:
        """Write the record on the master (the truth), then here."""
        self.runner.write_file(self.remote(record.id, "record.json"), json_bytes(record.to_dict()))
        super().save(record)

    def write_json(self, run_id: str, name: str, data: dict[str, Any]) -> None:
        """Write the file on the master (where the run's supervisor reads it), then here."""
        self.runner.write_file(self.remote(run_id, name), json_bytes(data))
        super().write_json(run_id, name, data)

    def refresh(self, run_id: str | None = None) -> None:
        if run_id is not None:
            try:
                self._copy(run_id)
            except FileNotFoundError:  # not on this master (an earlier cluster's, say)
                if not (self.dir(run_id) / "record.json").exists():
                    raise RunNotFound(
                        f"run {run_id} is neither on the master of cluster "
                        f"{self.runner.node.name!r} nor copied here ({self.root})"
                    ) from None
            return
        try:
            remote_ids = sorted(e.name for e in self.runner.list_dir(self.remote_root) if e.is_dir)
        except FileNotFoundError:
            return  # no run was ever started there
        for each in remote_ids:
            cached = self.dir(each) / "record.json"
            if not cached.exists() or not self.load(each).final:
                try:
                    self._copy(each)
                except FileNotFoundError:
                    continue  # a folder without a record yet (being started)

    def _copy(self, run_id: str) -> None:
        """Bring this run's copy up to date with the master's folder (one copy at a time in
        this process; another process copying the same bytes writes them at the same place)."""
        with self._lock:
            self._copy_locked(run_id)

    def _copy_locked(self, run_id: str) -> None:
        record_bytes = self.runner.read_bytes(self.remote(run_id, "record.json"))  # first: the
        local = self.dir(run_id)  # files copied next are at least as new as the record
        local.mkdir(parents=True, exist_ok=True, mode=0o700)
        for entry in self.runner.list_dir(self.remote(run_id)):
            name = entry.name
            if name.startswith(".") or name == "record.json" or entry.is_dir:
                continue
            target = local / name
            have = target.stat() if target.exists() else None
            if name in APPENDED:
                offset = have.st_size if have else 0
                if entry.size > offset:
                    data = self.runner.read_bytes(self.remote(run_id, name), offset)
                    with open(target, "r+b" if have else "wb") as out:
                        out.seek(offset)
                        out.write(data)
            elif have is None or (have.st_size, int(have.st_mtime)) != (
                entry.size,
                int(entry.mtime),
            ):
                write_bytes_atomic(target, self.runner.read_bytes(self.remote(run_id, name)))
                os.utime(target, (entry.mtime, entry.mtime))
        FolderRunStore.save(self, RunRecord.from_dict(json.loads(record_bytes)))
