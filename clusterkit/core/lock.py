"""A cluster's lock: one ``up``, ``down``, ``provision`` or ``scale`` at a time.

An ``fcntl`` lock on ``.lock`` in the cluster's state folder: the kernel drops it when its
holder exits, however it exits, so a crash never leaves a stale lock. The file holds the
holder's pid and command line, so that the one kept waiting can say who holds it.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterkit.core.errors import ClusterkitError

#: How long a second command waits for the lock before it gives up.
WAIT_S = 5.0


class ClusterBusy(ClusterkitError):
    """Another command holds the cluster's lock."""


@contextmanager
def state_lock(root: Path) -> Iterator[None]:
    """Hold ``cluster.json``'s write lock while it is read, changed and written back (the
    local keeper and ``up`` both do), so that neither loses what the other wrote."""
    fd = os.open(root / ".state.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "a process that did not say who it is"


@contextmanager
def cluster_lock(root: Path, what: str, *, wait_s: float | None = None) -> Iterator[None]:
    """Hold the lock of the cluster whose state folder is ``root`` while ``what`` runs
    (e.g. "up"); ClusterBusy naming the holder's pid and command after ``wait_s`` seconds
    (default :data:`WAIT_S`)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + (WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ClusterBusy(
                        f"cluster state {root} is locked by {_holder(path)}; wait for it to "
                        f"finish (or stop it) and run `clusterkit {what}` again"
                    ) from None
                time.sleep(0.1)
        os.ftruncate(fd, 0)
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else what
        os.pwrite(fd, f"pid {os.getpid()} ({command})\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock
