"""A run's samples from the cluster's other nodes, read through their runners by the run's
supervisor on the driver node.

The worker's executors and Ray workers are sampled on the worker itself (``python -m
clusterkit.metrics --run-id ID``, through its :class:`~clusterkit.exec.runner.CommandRunner`);
its JSON lines come back as they are printed. Closing the command's stdin ends the sampler
there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from clusterkit.core.errors import ClusterkitError
from clusterkit.exec.runner import CommandRunner
from clusterkit.metrics.sampling import sample_lines


class PeerSampler:
    """``python -m clusterkit.metrics`` on another node, its samples handed to ``on_sample``.

    ``error`` says why there are none (the node did not answer, the sampler failed); a run is
    not failed for want of one node's metrics.
    """

    def __init__(
        self,
        runner: CommandRunner,
        *,
        python: str,
        run_id: str,
        interval_s: float,
        on_sample: Callable[[dict[str, Any]], None],
    ) -> None:
        self.runner, self.python, self.run_id = runner, python, run_id
        self.name = runner.node.name
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.error: str | None = None
        self.latest: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"peer-{self.name}", daemon=True)

    def _argv(self, *extra: str) -> list[str]:
        return [self.python, "-m", "clusterkit.metrics", "--run-id", self.run_id,
                "--node", self.name, *extra]  # fmt: skip

    def start(self) -> PeerSampler:
        self._thread.start()
        return self

    def _read(self) -> None:
        def take(sample: dict[str, Any]) -> None:
            self.latest = sample
            self.on_sample(sample)

        argv = self._argv("--interval", str(self.interval_s), "--until-stdin-closes",
                          "--default-role", "other")  # fmt: skip
        try:
            self.runner.run(argv, timeout=None, on_line=sample_lines(take), stop=self._stop)
        except ClusterkitError as exc:
            self.error = f"node {self.name} was not sampled: {exc}"

    def stop(self) -> None:
        """End the node's sampler (its stdin closes) and wait for its last lines."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=3 * self.interval_s + 10)

    def stop_run_processes(self) -> list[int]:
        """End the run's processes on that node (its executors, Ray workers); their pids."""
        try:
            result = self.runner.run(self._argv("--stop-processes"), timeout=60)
        except ClusterkitError as exc:
            self.error = f"node {self.name}: could not stop the run: {exc}"
            return []
        pids: list[int] = json.loads(result.stdout or "[]")
        return pids
