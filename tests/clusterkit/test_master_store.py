"""The store of a remote cluster's runs, and the one launcher, tested without root or a
cluster: the "master" is a folder of this machine reached through a LocalRunner, so the same
code that reads a master over SSH reads it here; the supervisor and jobs run for real."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clusterkit.core.errors import RunNotFound
from clusterkit.core.records import RunRecord
from clusterkit.exec.local import LocalRunner
from clusterkit.runs.launcher import ORPHANED, Runs, RunSetup
from clusterkit.runs.master import MasterRunStore
from clusterkit.runs.store import FolderRunStore
from tests.conftest import FIXTURE_JOBS


@pytest.fixture
def where(tmp_path: Path) -> tuple[Path, MasterRunStore]:
    master = tmp_path / "master" / "runs"
    return master, MasterRunStore(LocalRunner(), str(master), tmp_path / "laptop" / "runs")


def _write(path: Path, data: object) -> None:
    path.write_text(json.dumps(data))


def test_writes_go_to_the_master_then_here_and_refresh_copies_what_grew(where):
    master, store = where
    record = store.create(job="x", params={"a": 1}, cluster="c", provider="netns")
    on_master = master / record.id
    assert json.loads((on_master / "record.json").read_text())["params"] == {"a": 1}
    assert store.load(record.id).status == "queued"
    # the supervisor, on the master, moves the record on and writes the logs
    _write(on_master / "record.json", {**record.to_dict(), "status": "running"})
    (on_master / "stdout.log").write_text("one\n")
    assert store.load(record.id).status == "queued"  # nothing is read before a refresh
    store.refresh(record.id)
    assert store.load(record.id).status == "running"
    assert store.read_bytes(record.id, "stdout.log") == b"one\n"
    with open(on_master / "stdout.log", "a") as log:
        log.write("two\n")
    _write(on_master / "result.json", {"rows": 5})
    store.refresh(record.id)
    assert store.read_bytes(record.id, "stdout.log", 4) == b"two\n"
    assert store.read_json(record.id, "result.json") == {"rows": 5}
    _write(on_master / "result.json", {"rows": 500})  # rewritten whole: copied again
    store.refresh(record.id)
    assert store.read_json(record.id, "result.json") == {"rows": 500}
    assert sorted(p.name for p in store.dir(record.id).iterdir()) == [
        "record.json", "result.json", "stdout.log"]  # fmt: skip


def test_refresh_finds_runs_made_elsewhere_and_leaves_final_copies(where):
    master, store = where
    elsewhere = FolderRunStore(master).create(job="y", params={}, cluster="c", provider="netns")
    store.refresh()
    assert store.ids() == [elsewhere.id]
    done = store.load(elsewhere.id)
    done.status = "succeeded"
    store.save(done)  # to the master and here
    _write(master / elsewhere.id / "record.json", {**done.to_dict(), "error": "changed later"})
    store.refresh()
    assert store.load(elsewhere.id).error is None  # a final run's copy is not read again
    (master / "20990101-000000-half").mkdir()  # being started: no record yet
    store.refresh()
    assert store.ids() == [elsewhere.id]


def test_a_master_where_no_run_was_ever_started(tmp_path):
    store = MasterRunStore(LocalRunner(), str(tmp_path / "none"), tmp_path / "copy")
    store.refresh()
    assert store.all() == []


def _runs(tmp_path: Path, store: MasterRunStore, master: Path, **env: str) -> Runs:
    data = tmp_path / "data"
    setup = RunSetup(
        env={"CLUSTERKIT_JOBS_PATH": str(FIXTURE_JOBS), "CLUSTERKIT_STORAGE_ROOT": str(data),
             **env},
        cluster="c", provider="netns", node="master", runs_dir=str(master), interval_s=0.2,
        storage_root=str(data), python=sys.executable,
    )  # fmt: skip
    here = LocalRunner()
    return Runs(store, setup=setup, driver=here, nodes=[here])


def test_a_run_started_cancelled_and_reaped_through_the_masters_store(where, tmp_path):
    master, store = where
    runs = _runs(tmp_path, store, master)
    started = runs.submit("stages", {"seconds": 0.5})
    assert started.status in ("running", "succeeded")  # the supervisor has taken it
    final = runs.wait(started.id, timeout_s=120)
    assert final.status == "succeeded", final
    assert final.supervisor is not None and final.supervisor["node"] == "master"
    assert "stages: done" in store.read_bytes(final.id, "stdout.log").decode()
    assert store.read_json(final.id, "result.json")["held_bytes"] == 64 * 1024 * 1024
    assert store.read_bytes(final.id, "metrics.jsonl")  # sampled while it ran
    assert (master / final.id / "setup.json").exists()  # its setup, on the driver node

    long = runs.submit("stages", {"seconds": 60})
    cancelled = runs.cancel(long.id, reason="enough")
    assert (cancelled.status, cancelled.error) == ("cancelled", "enough")
    assert json.loads((master / long.id / "record.json").read_text())["status"] == "cancelled"

    orphan = runs.submit("stages", {"seconds": 60})
    record = runs.wait(orphan.id, timeout_s=0)
    assert record.supervisor is not None and record.job_pid is not None
    os.kill(int(record.supervisor["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 30
    while runs.driver.alive(int(record.supervisor["pid"]), marker=orphan.id):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    reaped = runs.reap_if_orphaned(record)
    assert (reaped.status, reaped.error) == ("failed", ORPHANED.format(node="master"))
    job_gone = time.monotonic() + 10
    while Path(f"/proc/{record.job_pid}").exists() and time.monotonic() < job_gone:
        time.sleep(0.1)
    assert not Path(f"/proc/{record.job_pid}").exists()  # its processes were stopped
    assert json.loads((master / orphan.id / "record.json").read_text())["status"] == "failed"


PARENT = textwrap.dedent('''
    """Test job: submits runs of its own through clusterkit.jobkit and waits for them."""

    from clusterkit.jobkit import Job, Param


    def main(ctx):
        children = ctx.children()
        done = [children.run("stages", {"seconds": 0.2}) for _ in range(ctx.params["count"])]
        return {"children": [r.id for r in done], "statuses": [r.status for r in done]}


    JOB = Job(name="parent", summary="submits runs", engine="python", main=main,
              params=[Param("count", "int", 2, "how many")])
''')


def test_a_job_submits_runs_of_its_own_on_the_driver_node(where, tmp_path):
    master, store = where
    jobs = tmp_path / "more-jobs"
    jobs.mkdir()
    (jobs / "parent.py").write_text(PARENT)
    paths = os.pathsep.join([str(FIXTURE_JOBS), str(jobs)])
    runs = _runs(tmp_path, store, master, CLUSTERKIT_JOBS_PATH=paths)
    parent = runs.wait(runs.submit("parent", {"count": 2}).id, timeout_s=180)
    assert parent.status == "succeeded", store.read_bytes(parent.id, "stderr.log").decode()
    store.refresh()  # the children were made on the master, not through this store
    children = [r for r in store.all() if r.parent == parent.id]
    assert [r.status for r in children] == ["succeeded", "succeeded"]
    assert sorted(parent.children) == sorted(r.id for r in children)
    result = store.read_json(parent.id, "result.json")
    assert result is not None and sorted(result["children"]) == sorted(r.id for r in children)
    # a child's processes do not carry its parent's marker
    assert all(isinstance(r, RunRecord) and r.supervisor for r in children)


def test_a_job_that_submits_runs_says_so_outside_a_run(tmp_path, monkeypatch):
    from clusterkit.core.jobspec import Job
    from clusterkit.jobkit import ChildRuns, JobContext, JobInputError

    monkeypatch.setenv("CLUSTERKIT_RUN_DIR", str(tmp_path))
    ctx = JobContext.from_env(Job("suite", "", "python", lambda c: {}), {})
    with pytest.raises(JobInputError, match=r"start it with `clusterkit run suite`"):
        ChildRuns(ctx)


def test_a_run_cancelled_before_its_supervisor_took_it_never_runs(tmp_path):
    """The canceller writes cancel.json first: a supervisor that finds it records the run
    cancelled with the reason and never starts the job."""
    store = FolderRunStore(tmp_path / "runs")
    setup = RunSetup(env={"CLUSTERKIT_JOBS_PATH": str(FIXTURE_JOBS)}, cluster="c",
                     provider="local", node="here", runs_dir=str(store.root), interval_s=0.2,
                     storage_root=str(tmp_path), python=sys.executable)  # fmt: skip
    record = store.create(job="stages", params={"seconds": 30}, cluster="c", provider="local")
    store.write_json(record.id, "setup.json", setup.for_run(record.id).to_dict())
    store.write_json(record.id, "cancel.json", {"reason": "not wanted any more"})
    proc = subprocess.run([sys.executable, "-m", "clusterkit.runs.supervisor", "--run-dir",
                           str(store.dir(record.id))], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    final = store.load(record.id)
    assert (final.status, final.error) == ("cancelled", "not wanted any more")
    assert final.job_pid is None and not (store.dir(record.id) / "stdout.log").exists()


def test_a_run_neither_on_the_master_nor_here_is_named(where):
    _, store = where
    with pytest.raises(RunNotFound, match=r"run 20990101-000000-aaaa is neither on the master"):
        store.refresh("20990101-000000-aaaa")
    kept = FolderRunStore(store.root).create(job="old", params={}, cluster="c", provider="x")
    store.refresh(kept.id)  # a copy here of a run the master no longer has: kept as it is
    assert store.load(kept.id).job == "old"


def test_cancelling_a_run_no_supervisor_took_records_it_cancelled(tmp_path, monkeypatch):
    from clusterkit.runs import launcher

    monkeypatch.setattr(launcher, "UNTAKEN_CANCEL_S", 0.5)
    runs_dir = tmp_path / "runs"
    store = FolderRunStore(runs_dir)
    setup = RunSetup(env={}, cluster="c", provider="local", node="master",
                     runs_dir=str(runs_dir), interval_s=0.2, storage_root=str(tmp_path),
                     python=sys.executable)  # fmt: skip
    here = LocalRunner()
    runs = Runs(store, setup=setup, driver=here, nodes=[here])
    queued = store.create(job="stages", params={}, cluster="c", provider="local")
    started = time.monotonic()
    cancelled = runs.cancel(queued.id, reason="enough")
    assert time.monotonic() - started < 10
    assert cancelled.status == "cancelled"
    assert cancelled.error == "enough (no supervisor had taken it)"
    assert store.load(queued.id).status == "cancelled"
