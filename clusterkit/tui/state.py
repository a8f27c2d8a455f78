"""What the console knows, and the messages its polling workers post to update it.

Workers read the core in threads and post one message per reading; the app folds each into
:class:`ConsoleState` on the UI thread and asks the active screen to show it. A reading that
failed carries its error, which the screens show in place of the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from clusterkit.core.records import RunRecord
from clusterkit.runs.compare import Measurement
from clusterkit.services.health import ServiceHealth
from clusterkit.watch import ClusterInfo, HealthBoard, NodeHistory


@dataclass
class ConsoleState:
    info: ClusterInfo = field(default_factory=lambda: ClusterInfo(None, "none", message="…"))
    board: HealthBoard = field(default_factory=HealthBoard)
    nodes: NodeHistory = field(default_factory=NodeHistory)
    records: list[RunRecord] = field(default_factory=list)
    live_peaks: dict[str, int] = field(default_factory=dict)  # active run id -> peak RSS so far
    # active run id -> its progress.json, or else the stage it is in ({"stage", "seconds"})
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    measured: dict[str, Measurement] = field(default_factory=dict)  # final runs, for compare
    errors: dict[str, str] = field(default_factory=dict)  # what failed to read: nodes, services…


class NodesRead(Message):
    def __init__(self, info: ClusterInfo, samples: list[dict[str, Any]], at: float,
                 error: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.info, self.samples, self.at, self.error = info, samples, at, error


class ServicesRead(Message):
    def __init__(self, readings: list[ServiceHealth], at: float, error: str | None = None) -> None:
        super().__init__()
        self.readings, self.at, self.error = readings, at, error


class RunsRead(Message):
    def __init__(
        self,
        records: list[RunRecord],
        live_peaks: dict[str, int],
        progress: dict[str, dict[str, Any]],
        measured: dict[str, Measurement],
        at: float,
        error: str | None = None,
    ) -> None:
        super().__init__()
        self.records, self.live_peaks, self.progress = records, live_peaks, progress
        self.measured = measured
        self.at, self.error = at, error
