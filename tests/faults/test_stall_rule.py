"""The stall rule's arithmetic, with its readings given (the cluster tests kill real daemons)."""

from collections.abc import Callable
from pathlib import Path

from clusterkit.runs.stall import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(tmp_path: Path, clock: Clock, readings: dict[str, set[str]]) -> StallWatch:
    watch = StallWatch("r1", tmp_path, timeout_s=120, spark_master_ui="http://x",
                       ray_dashboard="http://y", clock=clock)  # fmt: skip

    def reader(engine: str) -> Callable[[], set[str]]:
        return lambda: readings[engine]

    watch.readers = {engine: reader(engine) for engine in readings}
    watch.uses = lambda: set(readings)  # type: ignore[method-assign]
    return watch


def test_a_worker_gone_longer_than_the_timeout_fails_the_run_naming_it(tmp_path):
    clock, readings = Clock(), {"spark": {"127.0.0.1:7078"}}
    watch = _watch(tmp_path, clock, readings)
    assert watch.tick() is None
    readings["spark"] = set()
    for clock.now in (2.0, 60.0, 121.0):
        assert watch.tick() is None  # 119 s without one: not yet
    clock.now = 122.5
    error = watch.tick()
    assert error is not None
    assert error.startswith("stalled: no Spark worker has been ALIVE for 120 s")
    assert "127.0.0.1:7078 at" in error and "`clusterkit up`" in error


def test_a_worker_that_comes_back_is_noted_and_the_run_goes_on(tmp_path):
    clock, readings = Clock(), {"spark": {"127.0.0.1:7078"}, "ray": {"127.0.0.1"}}
    watch = _watch(tmp_path, clock, readings)
    watch.tick()
    readings["spark"] = set()
    clock.now = 100.0
    assert watch.tick() is None
    readings["spark"] = {"127.0.0.1:7078"}
    clock.now = 200.0  # longer than the timeout in all, but never 120 s without a worker
    assert watch.tick() is None
    assert [n.split(" at ")[0] for n in watch.notes] == [  # in the run's record
        "Spark worker 127.0.0.1:7078 was lost", "Spark worker 127.0.0.1:7078 joined"]  # fmt: skip


def test_an_engine_the_run_does_not_use_is_not_watched(tmp_path):
    clock = Clock()
    watch = _watch(tmp_path, clock, {"spark": set(), "ray": set()})
    watch.uses = lambda: {"ray"}  # type: ignore[method-assign]
    watch.readers["ray"] = lambda: {"127.0.0.1"}
    for clock.now in (0.0, 500.0):
        assert watch.tick() is None
    assert watch.notes == []
