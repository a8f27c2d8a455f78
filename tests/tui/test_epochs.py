"""A training run's per-epoch figures in the console: the pure helpers, then run detail and the
catalog on a fake lenet run (result.json's epochs once over; epochs.json while it runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Sparkline, Static

from clusterkit import catalog
from clusterkit.core.jobspec import Job, Param
from clusterkit.core.records import RunRecord
from clusterkit.runs.epochs import epochs_of
from clusterkit.runs.store import FolderRunStore
from clusterkit.tui.screens.jobs import JobsScreen
from clusterkit.tui.screens.run_detail import RunDetailScreen
from clusterkit.tui.state import (
    accuracy_series,
    epoch_summary,
    epochs_param,
    planned_epochs,
    read_epochs,
    throughput,
)
from clusterkit.tui.widgets import EpochsLine, EpochsView, epoch_table
from tests.tui.conftest import NOW, FixedSource, fixed_app, settle, write_run

DONE = "20261121-110000-ffff"  # a lenet run that finished: result.json with its epochs
RUNNING = "20261121-115950-gggg"  # a lenet run going on: epochs.json only

TEST_ACCURACY = [0.912, 0.951, 0.968, 0.977, 0.983, 0.987]


def epoch(n: int, test: float | None, *, accuracy: float = 0.9, rate: float = 5230.0,
          seconds: float = 11.2) -> dict[str, Any]:  # fmt: skip
    return {"epoch": n, "loss": round(0.5 / n, 4), "accuracy": accuracy, "test_accuracy": test,
            "images_per_s": rate, "seconds": seconds, "lr": 0.0021}  # fmt: skip


def finished_epochs() -> list[dict[str, Any]]:
    return [epoch(i, t, accuracy=t - 0.02) for i, t in enumerate(TEST_ACCURACY, start=1)]


# --- the pure helpers ----------------------------------------------------------------------


def test_the_series_is_test_accuracy_where_measured_else_training():
    epochs = epochs_of([epoch(1, 0.91, accuracy=0.87), epoch(2, None, accuracy=0.93),
                        {"epoch": 3}, epoch(4, 0.97, accuracy=0.95)])  # fmt: skip
    assert accuracy_series(epochs) == [0.91, 0.93, 0.97]  # epoch 3 has no accuracy at all


def test_the_summary_line():
    epochs = epochs_of(finished_epochs())
    assert epoch_summary(epochs, 6) == "epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s"
    assert epoch_summary(epochs[:3]) == "epochs 3 · test accuracy 91.2% → 96.8% · 5,230 images/s"
    mixed = epochs_of([epoch(1, None, accuracy=0.87), epoch(2, 0.95)])
    assert epoch_summary(mixed, 6) == "epochs 2/6 · accuracy 87.0% → 95.0% · 5,230 images/s"
    assert epoch_summary(epochs_of([{"epoch": 1, "accuracy": 0.5}])) == "epochs 1 · accuracy 50.0%"
    assert epoch_summary([]) == "epochs: none yet"


def test_throughput_is_the_mean_of_the_epochs_figures():
    epochs = epochs_of([epoch(1, None, rate=1000.0), {"epoch": 2}, epoch(3, None, rate=5000.0)])
    assert throughput(epochs) == 3000.0  # as lenet's own images_per_s in result.json
    assert throughput(epochs_of([{"epoch": 1}])) is None


def test_the_planned_epochs():
    def record(status: str, params: dict[str, Any]) -> RunRecord:
        return RunRecord(id="r", job="lenet", params=params, cluster="demo", provider="netns",
                         status=status, created="2026-11-21T12:00:00.000+00:00")  # fmt: skip

    three = epochs_of(finished_epochs()[:3])
    assert planned_epochs(record("running", {"epochs": 10}), three, 6) == 10  # given wins
    assert planned_epochs(record("running", {}), three, 6) == 6  # else the job's default
    assert planned_epochs(record("running", {}), three) is None  # not known
    assert planned_epochs(record("succeeded", {}), three) == 3  # it did what it was to do
    job = Job("lenet", "LeNet-5", "ray", lambda ctx: {}, [Param("epochs", "int", 8, "epochs")])
    assert epochs_param(job) == 8 and epochs_param(None) is None
    assert epochs_param(Job("etl", "ETL", "spark", lambda ctx: {})) is None


def test_the_table_shows_the_latest_epochs():
    epochs = epochs_of(finished_epochs())
    lines = epoch_table(epochs, rows=5).splitlines()
    assert lines[0].split() == ["epoch", "loss", "accuracy", "test", "acc.", "images/s",
                                "seconds", "lr"]  # fmt: skip
    assert lines[1].split() == ["2", "0.2500", "93.1%", "95.1%", "5,230", "11.2", "0.0021"]
    assert lines[-1] == "(1 earlier epoch not shown)" and len(lines) == 7
    assert epoch_table(epochs_of([{"epoch": 1}])).splitlines()[1].split() == ["1"] + ["-"] * 6


def test_read_epochs_prefers_the_result_then_the_live_file(tmp_path: Path):
    store = FolderRunStore(tmp_path)
    store.dir("r").mkdir()
    assert read_epochs(store, "r") == []  # a job that reports none
    (store.dir("r") / "epochs.json").write_text(json.dumps(finished_epochs()[:2]))
    assert len(read_epochs(store, "r")) == 2
    assert len(read_epochs(store, "r", {"epochs": finished_epochs()})) == 6
    assert len(read_epochs(store, "r", {"wall_s": 3.0})) == 2  # a result without epochs
    (store.dir("r") / "epochs.json").write_text('[{"epoch": 1, "los')  # torn: none this time
    assert read_epochs(store, "r") == []


# --- the console on a fake lenet run -------------------------------------------------------

LENET_JOB = """
from clusterkit.jobkit import Job, Param

JOB = Job(name="lenet", summary="LeNet-5 on handwritten digits (the tests' stand-in)",
          engine="ray", params=[Param("epochs", "int", 6, "epochs to train")],
          main=lambda ctx: {})
"""


@pytest.fixture
def lenet_in_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog has a lenet job: the real one if it is there, else a stand-in."""
    if any(job.name == "lenet" for job in catalog.list_jobs()):
        return
    folder = tmp_path / "userjobs"
    folder.mkdir()
    (folder / "lenet.py").write_text(LENET_JOB)
    paths = [str(folder), *filter(None, [os.environ.get(catalog.JOBS_PATH_ENV)])]
    monkeypatch.setenv(catalog.JOBS_PATH_ENV, os.pathsep.join(paths))


def write_lenet_done(root: Path) -> None:
    result = {"epochs": finished_epochs(), "test_accuracy": 0.987, "model": "digits:v1",
              "confusion_matrix": [[0] * 10 for _ in range(10)], "wall_s": 70.0}  # fmt: skip
    write_run(root, DONE, "lenet", status="succeeded", started=NOW - 3600, wall_s=72.0,
              peak=900 * 1024**2, params={"epochs": 6}, result=result)  # fmt: skip


def write_lenet_running(root: Path, epochs: list[dict[str, Any]]) -> None:
    write_run(root, RUNNING, "lenet", status="running", started=NOW - 10, wall_s=None,
              peak=None, params={"epochs": 6}, log="lenet: epoch 1\n")  # fmt: skip
    write_epochs(root, epochs)


def write_epochs(root: Path, epochs: list[dict[str, Any]]) -> None:
    path = FolderRunStore(root).dir(RUNNING) / "epochs.json"
    path.with_suffix(".tmp").write_text(json.dumps(epochs))
    path.with_suffix(".tmp").replace(path)  # whole, as the job writes it


def caption(widget: EpochsView | EpochsLine) -> str:
    return str(widget.caption.render())


@pytest.mark.usefixtures("lenet_in_catalog")
async def test_a_finished_lenet_run_shows_its_accuracy_per_epoch(fixed_store: Path):
    write_lenet_done(fixed_store)
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert app.model.epochs.keys() == {DONE}  # the other runs report no epochs
        await pilot.press("j")
        assert isinstance(app.screen, JobsScreen)
        line = app.screen.epoch_lines["lenet"]
        assert line.display and line.run_id == DONE
        assert line.spark.data == TEST_ACCURACY
        assert caption(line) == "epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s"
        assert line.spark.region.width == 12 and line.caption.region.height == 1  # fits 80 columns
        assert not app.screen.epoch_lines["etl"].display  # etl's runs have no epochs
        assert [w.job for w in app.screen.query(EpochsLine) if w.display] == ["lenet"]

        app.open_run(DONE)
        await settle(pilot)
        assert isinstance(app.screen, RunDetailScreen)
        view = app.screen.query_one("#epochs", EpochsView)
        assert view.display and view.region.height > 0
        sparkline = view.query_one(Sparkline)
        assert sparkline.data == TEST_ACCURACY
        assert caption(view) == "epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s"
        table = str(view.table.render())
        assert "images/s" in table and "98.7%" in table and "1 earlier epoch not shown" in table


@pytest.mark.usefixtures("lenet_in_catalog")
async def test_a_running_lenet_run_follows_epochs_json(fixed_store: Path):
    write_lenet_done(fixed_store)  # an earlier run: the catalog shows the latest, this one
    first = [epoch(1, 0.912, accuracy=0.87), epoch(2, None, accuracy=0.93),
             epoch(3, 0.968, accuracy=0.95)]  # fmt: skip
    write_lenet_running(fixed_store, first)
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        screen = app.screen
        assert isinstance(screen, JobsScreen)
        line = screen.epoch_lines["lenet"]
        assert line.run_id == RUNNING and line.spark.data == [0.912, 0.93, 0.968]
        assert caption(line) == "epochs 3/6 · accuracy 91.2% → 96.8% · 5,230 images/s"

        write_epochs(fixed_store, [*first, epoch(4, 0.977, accuracy=0.96)])  # one more epoch
        await settle(pilot)
        assert line.spark.data == [0.912, 0.93, 0.968, 0.977]
        assert caption(line).startswith("epochs 4/6 · accuracy 91.2% → 97.7%")

        app.open_run(RUNNING)
        await settle(pilot)
        detail = app.screen
        assert isinstance(detail, RunDetailScreen)
        view = detail.query_one("#epochs", EpochsView)
        assert view.query_one(Sparkline).data == [0.912, 0.93, 0.968, 0.977]
        assert caption(view) == "epochs 4/6 · accuracy 91.2% → 97.7% · 5,230 images/s"
        write_epochs(fixed_store, [*first, epoch(4, 0.977), epoch(5, 0.983)])
        detail.poll()  # what its timer does twice a tick
        await settle(pilot)
        assert view.query_one(Sparkline).data == [0.912, 0.93, 0.968, 0.977, 0.983]
        assert caption(view).startswith("epochs 5/6 ·")
        assert str(view.table.render()).splitlines()[-1].split()[0] == "5"  # the newest last

        store = FolderRunStore(fixed_store)  # it finishes: its result.json has every epoch
        store.write_json(RUNNING, "result.json", {"epochs": finished_epochs(),
                                                   "test_accuracy": 0.987})  # fmt: skip
        record = store.load(RUNNING)
        record.status, record.ended, record.wall_s = "succeeded", record.started, 75.0
        store.save(record)
        detail.poll()
        await settle(pilot)
        assert view.query_one(Sparkline).data == TEST_ACCURACY
        assert caption(view) == "epochs 6/6 · test accuracy 91.2% → 98.7% · 5,230 images/s"
        await pilot.press("escape")
        assert line.spark.data == TEST_ACCURACY and caption(line) == caption(view)


@pytest.mark.usefixtures("lenet_in_catalog")
async def test_a_failed_run_keeps_the_epochs_it_got_through(fixed_store: Path):
    write_lenet_running(fixed_store, [epoch(1, 0.912), epoch(2, 0.951)])
    store = FolderRunStore(fixed_store)
    record = store.load(RUNNING)
    record.status, record.error = "failed", "worker died"
    store.save(record)  # and no result.json
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        assert isinstance(app.screen, JobsScreen)
        line = app.screen.epoch_lines["lenet"]
        assert caption(line) == "FAILED · epochs 2/6 · test accuracy 91.2% → 95.1% · 5,230 images/s"


async def test_a_run_without_epochs_shows_none(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        assert not app.screen.query_one("#catalog-epochs").display
        app.open_run("20261121-115920-eeee")
        await settle(pilot)
        assert not app.screen.query_one("#epochs", EpochsView).display
        assert "search" in str(app.screen.query_one("#stages", Static).render())
