"""A run's files read as they grow, through any :class:`~clusterkit.runs.store.RunStore`:
its logs (:class:`LogTail`), its samples (:class:`MetricsTail`), its stages and progress."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from clusterkit.runs.store import RunStore

LOGS = ("stdout.log", "stderr.log")


def progress(store: RunStore, run_id: str) -> dict[str, Any] | None:
    """The job's latest progress report ({"done", "total", "unit"}), or None."""
    return store.read_json(run_id, "progress.json")


class LogTail:
    """A run's ``stdout.log`` and ``stderr.log`` read incrementally: each :meth:`read` returns
    what was appended since the previous one, as (file name, text) pairs."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.offsets = dict.fromkeys(LOGS, 0)

    def read(self) -> list[tuple[str, str]]:
        chunks = []
        for name, offset in self.offsets.items():
            data = self.store.read_bytes(self.run_id, name, offset)
            self.offsets[name] += len(data)
            if data:
                chunks.append((name, data.decode(errors="replace")))
        return chunks


class MetricsTail:
    """A run's ``metrics.jsonl`` read incrementally: per node, the run's memory over time.

    ``series[node]`` is a list of (unix time, run RSS bytes); ``peak_rss_bytes`` the highest
    run RSS of any one sample so far (on one node, the record's peak once the run is over).
    Only complete lines are consumed, so a line being written is read next time.
    """

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.offset = 0
        self.series: dict[str, list[tuple[float, int]]] = {}
        self.peak_rss_bytes = 0

    def read(self) -> int:
        """Take in the samples written since the last call; return how many."""
        data = self.store.read_bytes(self.run_id, "metrics.jsonl", self.offset)
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
    result = store.read_json(run_id, "result.json") or {}
    if result.get("stages"):
        return [Stage(name, float(sec)) for name, sec in result["stages"].items()]
    live = store.read_json(run_id, "stages.json")
    if live is None:
        return []
    done = [Stage(name, float(sec)) for name, sec in live.get("done", {}).items()]
    if live.get("current"):
        since = float(live.get("since") or 0.0)
        running = max(0.0, (now if now is not None else time.time()) - since)
        done.append(Stage(str(live["current"]), running, running=True))
    return done
