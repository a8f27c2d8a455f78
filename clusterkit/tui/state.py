"""What the console knows, and the messages its polling workers post to update it.

Workers read the core in threads and post one message per reading; the app folds each into
:class:`ConsoleState` on the UI thread and asks the active screen to show it. A reading that
failed carries its error, which the screens show in place of the data.

A training job's per-epoch figures (:class:`~clusterkit.runs.epochs.Epoch`) are read here
too, from the run store: ``result.json``'s ``epochs`` once it finished, else the
``epochs.json`` it rewrites whole after each epoch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from clusterkit.core.jobspec import Job
from clusterkit.core.records import RunRecord
from clusterkit.runs.compare import Measurement
from clusterkit.runs.epochs import EPOCHS_FILE, Epoch, epochs_of
from clusterkit.runs.store import RunStore
from clusterkit.services.health import ServiceHealth
from clusterkit.watch import ClusterInfo, HealthBoard, NodeHistory


def read_epochs(store: RunStore, run_id: str,
                result: Mapping[str, Any] | None = None) -> list[Epoch]:  # fmt: skip
    """The run's per-epoch figures, [] for a job that reports none (or none yet).

    ``result`` is the run's ``result.json`` if the caller read it: its ``epochs`` once the
    job finished; else (running, or stopped before writing its result) the ``epochs.json``
    the job rewrites whole after each epoch."""
    if result is not None and result.get("epochs") is not None:
        return epochs_of(result["epochs"])
    raw = store.read_bytes(run_id, EPOCHS_FILE)
    if not raw:
        return []
    try:
        return epochs_of(json.loads(raw))
    except ValueError:  # not whole: read again at the next tick
        return []


def accuracy_series(epochs: Sequence[Epoch]) -> list[float]:
    """Accuracy per epoch, as fractions: test accuracy where measured, else training."""
    return [a for a in (e.shown_accuracy for e in epochs) if a is not None]


def throughput(epochs: Sequence[Epoch]) -> float | None:
    """Images per second over the epochs: the mean of the epochs' figures (as lenet's own
    ``images_per_s`` in result.json), None if no epoch gives one."""
    rates = [e.images_per_s for e in epochs if e.images_per_s is not None]
    return sum(rates) / len(rates) if rates else None


def percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction * 100:.1f}%"


def epoch_summary(epochs: Sequence[Epoch], total: int | None = None) -> str:
    """One line: ``epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s``.

    ``total`` is the number of epochs the run is to train (None: not known, the count alone);
    the accuracy is the first and last of :func:`accuracy_series`, named test accuracy when
    every epoch was measured on the test set; images/s is :func:`throughput`."""
    if not epochs:
        return "epochs: none yet"
    done = epochs[-1].epoch
    parts = [f"epochs {done}/{total}" if total else f"epochs {done}"]
    series = accuracy_series(epochs)
    if series:
        tested = all(e.test_accuracy is not None for e in epochs)
        name = "test accuracy" if tested else "accuracy"
        shown = percent(series[0]) if len(series) == 1 else (
            f"{percent(series[0])} → {percent(series[-1])}")  # fmt: skip
        parts.append(f"{name} {shown}")
    rate = throughput(epochs)
    if rate is not None:
        parts.append(f"{rate:,.0f} images/s")
    return " · ".join(parts)


def epochs_param(job: Job | None) -> int | None:
    """The number of epochs ``job`` trains by default (its ``epochs`` parameter), if any."""
    param = job.param("epochs") if job is not None else None
    default = param.default if param is not None else None
    return default if isinstance(default, int) and not isinstance(default, bool) else None


def planned_epochs(record: RunRecord, epochs: Sequence[Epoch],
                   default: int | None = None) -> int | None:  # fmt: skip
    """How many epochs the run trains: its ``epochs`` parameter, else ``default`` (the job's);
    else, for a run that succeeded, the epochs it did; else None (not known)."""
    given = record.params.get("epochs")
    if isinstance(given, int) and not isinstance(given, bool) and given > 0:
        return given
    if default is not None and default > 0:
        return default
    if record.status == "succeeded" and epochs:
        return epochs[-1].epoch
    return None


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
    epochs: dict[str, list[Epoch]] = field(default_factory=dict)  # runs with per-epoch figures
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
        epochs: dict[str, list[Epoch]] | None = None,
    ) -> None:
        super().__init__()
        self.records, self.live_peaks, self.progress = records, live_peaks, progress
        self.measured = measured
        self.epochs = epochs if epochs is not None else {}
        self.at, self.error = at, error
