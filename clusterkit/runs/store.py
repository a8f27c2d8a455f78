"""The run store: one folder per run, its ``record.json`` the one row for that run.

A run folder holds ``record.json``, ``setup.json`` (what its supervisor needs),
``stdout.log``, ``stderr.log``, ``metrics.jsonl`` (one sample a line), ``result.json`` (the
job's own, with the measured peaks added), ``stages.json`` and ``progress.json`` while it
runs and, on failure, ``error.json``. The CLI, the TUI, jobs and reports read runs through
:class:`RunStore`; nothing else keeps run history.

:class:`FolderRunStore` is a folder of this machine: the store of the node that drives the
runs (this machine for the local provider; the master's own, for its supervisors and jobs).
:class:`clusterkit.runs.master.MasterRunStore` is a remote master's store, read through its
runner into a folder here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from clusterkit.core.errors import RunNotFound, StateError
from clusterkit.core.files import write_json_atomic
from clusterkit.core.records import ACTIVE, RunRecord, new_run_id


class RunStore(Protocol):
    """Where a cluster's runs are read and written.

    Every store is read from run folders of this machine (``root``; a remote master's are
    copies there), which ``refresh`` brings up to date (NodeUnreachable when the runs' node
    does not answer; RunNotFound for a run neither there nor here). Every write is whole (a
    reader sees the old file or the new one) and goes where the run's supervisor reads it."""

    root: Path  # the run folders as read here
    poll_s: float  # how often to look again while waiting on a run

    def refresh(self, run_id: str | None = None) -> None: ...
    def create(self, **values: Any) -> RunRecord: ...
    def save(self, record: RunRecord) -> None: ...
    def load(self, run_id: str) -> RunRecord: ...
    def get(self, ref: str) -> RunRecord: ...
    def ids(self) -> list[str]: ...
    def all(self) -> list[RunRecord]: ...
    def active(self) -> list[RunRecord]: ...
    def dir(self, run_id: str) -> Path: ...
    def read_json(self, run_id: str, name: str) -> dict[str, Any] | None: ...
    def write_json(self, run_id: str, name: str, data: dict[str, Any]) -> None: ...
    def read_bytes(self, run_id: str, name: str, offset: int = 0) -> bytes: ...


class FolderRunStore:
    """Run folders under ``root`` on this machine."""

    poll_s = 0.2

    def __init__(self, root: Path) -> None:
        self.root = root

    def refresh(self, run_id: str | None = None) -> None:
        """Nothing to do: the folders are the truth."""

    def dir(self, run_id: str) -> Path:
        return self.root / run_id

    def save(self, record: RunRecord) -> None:
        write_json_atomic(self.dir(record.id) / "record.json", record.to_dict())

    def create(self, **values: Any) -> RunRecord:
        record = RunRecord(id=new_run_id(), **values)
        while self.dir(record.id).exists():
            record.id = new_run_id()
        self.dir(record.id).mkdir(parents=True, mode=0o700)
        self.save(record)
        return record

    def load(self, run_id: str) -> RunRecord:
        """The run's record; StateError naming the file when it is not a whole record (a
        crash of this machine, a full disk, an edit)."""
        path = self.dir(run_id) / "record.json"
        text = path.read_text()
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError("not a JSON object")
            return RunRecord.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise StateError(
                f"{path} is not a run record ({type(exc).__name__}: {exc}); set it aside "
                f"(`mv {path} {path}.unreadable`): see docs/runbooks/restore-after-crash.md"
            ) from exc

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

    def read_json(self, run_id: str, name: str) -> dict[str, Any] | None:
        """A JSON artifact of the run (``result.json``, ``stages.json`` ...), or None when it
        is not there or not whole."""
        try:
            data: dict[str, Any] = json.loads((self.dir(run_id) / name).read_text())
        except (OSError, ValueError):
            return None
        return data

    def write_json(self, run_id: str, name: str, data: dict[str, Any]) -> None:
        """Write a JSON file of the run's, whole (where its supervisor reads it)."""
        write_json_atomic(self.dir(run_id) / name, data)

    def read_bytes(self, run_id: str, name: str, offset: int = 0) -> bytes:
        """The bytes of a run's file from ``offset`` on (none when it is not there yet)."""
        try:
            with open(self.dir(run_id) / name, "rb") as handle:
                handle.seek(offset)
                return handle.read()
        except FileNotFoundError:
            return b""
