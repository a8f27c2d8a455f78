"""Processes of this machine that the kit starts, finds again and stops for sure.

A :class:`~clusterkit.core.records.Daemon` is identified by pid *and* create time, so a
reused pid is never mistaken for ours. ``stop`` ends the whole process tree (Spark
executors, Ray workers and agents are descendants of what we started) and returns only when
every process in it is gone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from clusterkit.core.records import Daemon


def spawn(
    name: str, argv: Sequence[str], *, env: Mapping[str, str], log: Path, cwd: Path
) -> Daemon:
    """Start ``argv`` in its own session, output to ``log``; return at once."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    create_time = psutil.Process(proc.pid).create_time()
    return Daemon(name, proc.pid, create_time, list(argv), str(log))


def process_of(daemon: Daemon) -> psutil.Process | None:
    """The live process behind ``daemon``, or None if it exited or the pid was reused."""
    try:
        proc = psutil.Process(daemon.pid)
        if abs(proc.create_time() - daemon.create_time) > 0.01:
            return None
        if proc.status() == psutil.STATUS_ZOMBIE:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(daemon.pid, os.WNOHANG)
            return None
        return proc
    except psutil.NoSuchProcess:
        return None


def is_alive(daemon: Daemon) -> bool:
    return process_of(daemon) is not None


def terminate_trees(
    roots: Sequence[psutil.Process],
    *,
    grace_s: float = 5.0,
    prune: Callable[[psutil.Process], bool] = lambda proc: False,
) -> list[int]:
    """Stop process trees: SIGTERM each root, SIGKILL whatever of the trees is left after
    ``grace_s``.

    Only the roots are signalled first, so that a root that cleans up its own children (the
    ``ray start --block`` parent, a Spark worker with executors) does so in its own order;
    descendants are snapshotted beforehand, so none escapes by being re-parented. A
    descendant for which ``prune`` is true is left alone, with everything below it. Returns
    the pids of all processes in the trees; every one is gone when this returns.
    """
    procs: list[psutil.Process] = []
    for root in roots:
        procs += _tree(root, prune)
    _signal(roots, "terminate")
    return _kill_after(procs, grace_s=grace_s)


def _tree(root: psutil.Process, prune: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    """``root`` and its descendants, less the pruned subtrees."""
    try:
        children = root.children()
    except psutil.NoSuchProcess:
        return []
    found = [root]
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            if not prune(child):
                found += _tree(child, prune)
    return found


def terminate_tree(
    root: psutil.Process,
    *,
    grace_s: float = 5.0,
    prune: Callable[[psutil.Process], bool] = lambda proc: False,
) -> list[int]:
    """Stop one process tree (see :func:`terminate_trees`)."""
    return terminate_trees([root], grace_s=grace_s, prune=prune)


def terminate_all(procs: Sequence[psutil.Process], *, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process, wait up to ``grace_s``, SIGKILL the survivors, reap."""
    _signal(procs, "terminate")
    return _kill_after(procs, grace_s=grace_s)


def _signal(procs: Sequence[psutil.Process], method: str) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            getattr(proc, method)()


def _kill_after(procs: Sequence[psutil.Process], *, grace_s: float) -> list[int]:
    """Wait up to ``grace_s`` for ``procs`` to end, SIGKILL the rest, reap; their pids."""
    _gone, alive = psutil.wait_procs(procs, timeout=grace_s)
    _signal(alive, "kill")
    psutil.wait_procs(alive, timeout=5)
    return [p.pid for p in procs]


def stop_all(started: Sequence[Daemon], *, grace_s: float = 2.0) -> list[int]:
    """Stop every daemon (and its descendants) at once; return the pids that were stopped.

    The grace period is short on purpose: none of the daemons keeps state that a graceful
    exit protects (Spark standalone runs without recovery mode, Ray's head without
    persistence); Spark's JVMs exit within it, and what is left of Ray's sequential
    shutdown is killed.
    """
    roots = [p for p in (process_of(d) for d in started) if p is not None]
    return terminate_trees(roots, grace_s=grace_s) if roots else []


def wait_until(predicate: Any, *, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate()`` until it is truthy or ``timeout_s`` passes; return the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
