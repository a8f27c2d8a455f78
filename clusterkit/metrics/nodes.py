"""Every node's memory and CPU, sampled on the node itself (``python -m clusterkit.metrics``)
through its runner: once for ``status`` (:func:`read_nodes`), or as a stream a console keeps
open (:class:`NodeWatch`: one long-lived sampler per node, not a process or connection per
reading).

A node that does not answer is listed with ``error`` instead of figures; nothing here raises
for a node that is down.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.exec.runner import CommandRunner
from clusterkit.metrics.sampling import sample_lines


def _row(runner: CommandRunner) -> dict[str, Any]:
    node = runner.node
    return {"name": node.name, "address": node.address, "roles": list(node.roles)}


def _argv(python: str, runner: CommandRunner, *extra: str) -> list[str]:
    return [python, "-m", "clusterkit.metrics", "--node", runner.node.name, *extra]


def read_nodes(
    runners: Sequence[CommandRunner], *, python: str, cpu_interval: float = 0.2
) -> list[dict[str, Any]]:
    """One sample of every node, all nodes at once, in the order given."""

    def sample(runner: CommandRunner) -> dict[str, Any]:
        row = _row(runner)
        try:
            result = runner.run(_argv(python, runner, "--count", "1", "--cpu-interval",
                                      str(cpu_interval)), timeout=30)  # fmt: skip
            row.update(json.loads(result.stdout.strip().splitlines()[-1]))
        except (ClusterkitError, ValueError, IndexError) as exc:
            row["error"] = str(exc)
        return row

    with ThreadPoolExecutor(max_workers=max(1, len(runners))) as pool:
        return list(pool.map(sample, runners))


class NodeWatch:
    """A sampler kept running on every node, printing a sample each ``interval_s``; the
    latest of each is what :meth:`latest` returns (a node whose sampler stopped is listed with
    its error, and its sampler is started again at the next reading)."""

    def __init__(
        self, runners: Sequence[CommandRunner], *, python: str, interval_s: float = 1.0
    ) -> None:
        self.runners, self.python, self.interval_s = list(runners), python, interval_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str] = {}
        self._threads: dict[str, threading.Thread] = {}

    def _watch(self, runner: CommandRunner) -> None:
        name = runner.node.name

        def take(sample: dict[str, Any]) -> None:
            with self._lock:
                self._latest[name] = sample
                self._errors.pop(name, None)

        try:
            runner.run(_argv(self.python, runner, "--interval", str(self.interval_s),
                             "--until-stdin-closes"),
                       timeout=None, on_line=sample_lines(take), stop=self._stop)  # fmt: skip
            error = "its sampler ended"
        except ClusterkitError as exc:
            error = str(exc)
        with self._lock:
            self._errors[name] = error
            self._latest.pop(name, None)

    def latest(self) -> list[dict[str, Any]]:
        """Every node's latest sample (or its error), in the order given; starts the
        samplers that are not running."""
        for runner in self.runners:
            name = runner.node.name
            thread = self._threads.get(name)
            if not self._stop.is_set() and (thread is None or not thread.is_alive()):
                thread = threading.Thread(target=self._watch, args=(runner,), daemon=True,
                                          name=f"nodewatch-{name}")  # fmt: skip
                self._threads[name] = thread
                thread.start()
        rows = []
        with self._lock:
            for runner in self.runners:
                row = _row(runner)
                sample = self._latest.get(runner.node.name)
                if sample is not None:
                    row.update(sample)
                elif runner.node.name in self._errors:
                    row["error"] = self._errors[runner.node.name]
                else:
                    continue  # started, no sample yet
                rows.append(row)
        return rows

    def close(self) -> None:
        """End every node's sampler."""
        self._stop.set()
        for thread in self._threads.values():
            thread.join(timeout=5)
