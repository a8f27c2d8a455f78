"""Where jobs may write and what they may replace, without a cluster: the jobs run through
``python -m jobs``'s entry point (:func:`clusterkit.jobkit.main`) in this process, datagen's
Ray tasks run inline by a stand-in for Ray, etl on DuckDB. Names and outputs stay inside the
storage root; an output is replaced only with ``--overwrite`` and only if the kit made it; a
commit whose rename fails keeps the previous copy; a full disk fails the run with
``no space left on PATH`` and leaves nothing behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from clusterkit import jobkit
from clusterkit.jobkit import Job, JobContext, JobInputError, is_no_space
from jobs._storage import META_FILE, ArrowStorage, Output, output_path, writing


class FakeRay:
    """The few Ray calls datagen makes, its tasks run inline in this process."""

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 1.0}

    def remote(self, **_options: Any) -> Callable[[Callable[..., Any]], Any]:
        return _FakeTask

    def wait(self, refs: list[Any], *, num_returns: int = 1,
             timeout: float | None = None) -> tuple[list[Any], list[Any]]:  # fmt: skip
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref: Future[Any]) -> Any:
        return ref.result()

    def cancel(self, ref: Future[Any], *, force: bool = False) -> None:
        ref.cancel()


class _FakeTask:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Future[Any]:
        done: Future[Any] = Future()
        try:
            done.set_result(self.fn(*args, **kwargs))
        except Exception as exc:
            done.set_exception(exc)
        return done


class Runner:
    """Runs jobs as their run's process would, with this storage root and a run folder each."""

    def __init__(self, root: Path, runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self.runs, self.monkeypatch = root, runs, monkeypatch
        monkeypatch.setattr(JobContext, "ray", lambda self: FakeRay())
        monkeypatch.setenv("CLUSTERKIT_STORAGE_ROOT", str(root))

    def __call__(self, job: str, run_id: str, **params: Any) -> tuple[int, dict[str, Any]]:
        """(exit code, the run's error.json or result.json)."""
        run_dir = self.runs / run_id
        run_dir.mkdir(parents=True)
        self.monkeypatch.setenv("CLUSTERKIT_RUN_DIR", str(run_dir))
        self.monkeypatch.setenv("CLUSTERKIT_RUN_ID", run_id)
        code = jobkit.main([job, "--params-json", json.dumps(params)])
        written = run_dir / ("result.json" if code == 0 else "error.json")
        return code, json.loads(written.read_text())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "area" / "storage"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def run(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runner:
    return Runner(root, tmp_path / "runs", monkeypatch)


def _marker(folder: Path) -> dict[str, Any]:
    marker: dict[str, Any] = json.loads((folder / META_FILE).read_text())
    return marker


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


# --- names and paths stay inside the storage root


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "People", "a_b"])
def test_a_dataset_name_the_rule_refuses_exits_2_and_writes_nothing(run, root, tmp_path, name):
    code, error = run("datagen", "r1", rows=1000, name=name)
    assert code == 2 and error["type"] == "bad input"
    message = error["message"]
    assert message.startswith(f"--name = {name!r} is not allowed: lowercase letters, digits")
    assert not (root / "datasets").exists()
    assert not [p for p in tmp_path.rglob("x") if p.name == "x"], "written outside the root"


def test_model_names_follow_the_rule_and_versions_still_resolve(run):
    code, error = run("train", "r1", name="../models")
    assert code == 2 and error["message"].startswith("--name = '../models' is not allowed")
    code, error = run("predict", "r2", model="Salary:v1")
    assert code == 2 and error["message"].startswith("--model = 'Salary' is not allowed")
    code, error = run("predict", "r3", model="salary:vx")
    assert code == 2 and "'vx' is not a version; give NAME:vN" in error["message"]
    code, error = run("predict", "r4", model="salary:v1")  # well formed: looked up
    assert code == 2 and error["message"].startswith("no model 'salary' under")


@pytest.mark.parametrize("job", ["etl", "top-earners", "age-extremes", "predict", "seed-paper"])
@pytest.mark.parametrize("where", ["absolute", "dotdot", "inside-then-out"])
def test_an_output_outside_the_root_is_refused_before_any_work(run, root, tmp_path, job, where):
    outside = tmp_path / "area" / "elsewhere"
    output = {"absolute": str(outside), "dotdot": "../elsewhere",
              "inside-then-out": f"{root}/results/../../elsewhere"}[where]  # fmt: skip
    code, error = run(job, "r1", output=output)
    assert code == 2 and error["type"] == "bad input"
    assert error["message"].startswith(f"--output {output!r} is outside the storage root {root}")
    assert not outside.exists() and list(root.iterdir()) == []


def test_output_paths_are_normalised_against_the_root(tmp_path):
    assert output_path("/data", "results/x", param="--output") == "/data/results/x"
    assert output_path("/data/", "/data/a/../results/x", param="--output") == "/data/results/x"
    assert output_path("file:///data", "results/x", param="--output") == "file:///data/results/x"
    hdfs = "hdfs://master:9000/clusterkit"
    assert output_path(hdfs, "results/x", param="--output") == f"{hdfs}/results/x"
    assert output_path(hdfs, f"{hdfs}/results/x", param="--output") == f"{hdfs}/results/x"
    assert output_path(hdfs, "/clusterkit/x", param="--output") == f"{hdfs}/x"
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)  # a link inside that leads out
    refused = [("/data", "/data"), ("/data", "/data2/x"), ("/data", "a/../../x"),
               ("/data", "."), (hdfs, "hdfs://other:9000/clusterkit/x"),
               (hdfs, "file:///clusterkit/x"), (hdfs, "/elsewhere/x"),
               (str(tmp_path / "root"), "link/x")]  # fmt: skip
    for where, value in refused:
        with pytest.raises(JobInputError, match="is outside the storage root"):
            output_path(where, value, param="--output")


# --- what an output may replace


@pytest.fixture
def people(run, root) -> Path:
    """A small people dataset made by datagen (its tasks run inline)."""
    code, result = run("datagen", "gen", rows=1000, seed=3)
    assert code == 0, result
    path = root / "datasets" / "people"
    assert _marker(path)["run_id"] == "gen" and _marker(path)["job"] == "datagen"
    assert _marker(path)["checksum"] == result["checksum"]
    return path


def test_an_existing_output_is_kept_without_overwrite_and_replaced_with_it(run, root, people):
    out = root / "datasets" / "people-processed"
    code, result = run("etl", "e1", engine="duckdb")
    assert code == 0, result
    assert result["output"] == str(out) and _marker(out)["run_id"] == "e1"
    assert _marker(out)["job"] == "etl" and _marker(out)["written"]
    before = sorted(p.name for p in out.iterdir())
    code, error = run("etl", "e2", engine="duckdb")
    assert code == 2 and error["message"] == (
        f"{out} exists: pass --overwrite to replace it (or choose another --output)"
    )
    assert sorted(p.name for p in out.iterdir()) == before and _marker(out)["run_id"] == "e1"
    code, result = run("etl", "e3", engine="duckdb", overwrite=True)
    assert code == 0, result
    assert _marker(out)["run_id"] == "e3" and result["rows"] == 1000
    assert _leftovers(root) == []
    code, error = run("datagen", "g2", rows=1000)  # datagen's own name for its output: --name
    assert code == 2 and error["message"] == (
        f"{people} exists: pass --overwrite to replace it (or choose another --name)"
    )


def test_a_folder_the_kit_did_not_make_is_never_replaced(run, root, people):
    mine = root / "results" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        code, error = run("etl", f"e-{overwrite}", engine="duckdb", output="results/mine",
                          overwrite=overwrite)  # fmt: skip
        assert code == 2 and error["type"] == "bad input"
        assert error["message"].startswith(f"{mine} exists")
        if overwrite:
            assert "was not made by clusterkit (it holds no _clusterkit.json), so --overwrite " \
                   "does not replace it: remove it yourself" in error["message"]  # fmt: skip
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    assert (mine / "notes.txt").read_text() == "precious" and _leftovers(root) == []


# --- the commit


class _FailingMoves:
    """A pyarrow file system whose ``move`` calls numbered in ``failing`` raise OSError."""

    def __init__(self, fs: Any, failing: set[int]) -> None:
        self.fs, self.failing, self.calls = fs, failing, 0

    def move(self, source: str, target: str) -> None:
        self.calls += 1
        if self.calls in self.failing:
            raise OSError(f"injected: cannot rename {source} to {target}")
        self.fs.move(source, target)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fs, name)


def _previous(root: Path) -> Output:
    """A committed output of run r1 at ``root/ds`` (a file ``old`` in it); r2's Output."""
    storage = ArrowStorage()
    with writing(storage, Output(str(root / "ds"), "r1", "etl")) as tmp:
        storage.write_text(f"{tmp}/old", "old")
    return Output(str(root / "ds"), "r2", "etl", overwrite=True)


def _with_failing_moves(monkeypatch: pytest.MonkeyPatch, failing: set[int]) -> ArrowStorage:
    storage = ArrowStorage()
    real = storage.file_system
    systems: dict[int, _FailingMoves] = {}

    def file_system(path: str) -> tuple[Any, str]:
        fs, local = real(path)
        return systems.setdefault(id(fs), _FailingMoves(fs, failing)), local

    monkeypatch.setattr(storage, "file_system", file_system)
    return storage


def test_a_failed_rename_during_the_commit_keeps_the_previous_copy(root, monkeypatch):
    out = _previous(root)
    storage = _with_failing_moves(monkeypatch, {2})  # 1: old aside; 2: new into place
    with pytest.raises(OSError, match="injected"), writing(storage, out) as tmp:
        storage.write_text(f"{tmp}/new", "new")
    assert sorted(p.name for p in (root / "ds").iterdir()) == [META_FILE, "old"]
    assert _marker(root / "ds")["run_id"] == "r1"
    assert [p.name for p in root.iterdir()] == ["ds"]  # no temporary folder, no old copy aside


def test_a_commit_that_cannot_put_the_old_copy_back_says_where_it_is(root, monkeypatch):
    out = _previous(root)
    storage = _with_failing_moves(monkeypatch, {2, 3})
    aside = r"the previous copy is .*/\.ds\.old-r2; rename it to .*/ds"
    with pytest.raises(RuntimeError, match=aside), writing(storage, out) as tmp:
        storage.write_text(f"{tmp}/new", "new")
    assert (root / ".ds.old-r2" / "old").read_text() == "old"


def test_a_commit_replaces_the_previous_copy_and_removes_it(root):
    out = _previous(root)
    storage = ArrowStorage()
    with writing(storage, out, meta={"rows": 1}) as tmp:
        storage.write_text(f"{tmp}/new", "new")
    assert sorted(p.name for p in (root / "ds").iterdir()) == [META_FILE, "new"]
    assert _marker(root / "ds")["run_id"] == "r2" and _marker(root / "ds")["rows"] == 1
    assert [p.name for p in root.iterdir()] == ["ds"]


# --- a full disk


def test_a_full_disk_is_recognised_through_the_engines_wrappers():
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    wrapped = RuntimeError("task failed")
    wrapped.__cause__ = OSError("Error writing bytes to file. Detail: [errno 28] No space left "
                                "on device")  # fmt: skip
    assert is_no_space(wrapped)
    assert is_no_space(RuntimeError("IO Error: Could not write file: No space left on device"))
    assert not is_no_space(OSError(errno.EACCES, "Permission denied"))


def test_a_full_disk_the_job_did_not_name_fails_the_run_without_a_traceback(
    root, tmp_path, monkeypatch, capsys
):
    def full(ctx: JobContext) -> None:
        raise RuntimeError("writing failed") from OSError(errno.ENOSPC, "No space left on device")

    job = Job(name="fills", summary="", engine="python", main=full)
    monkeypatch.setattr(jobkit, "find_job", lambda name: job)
    code, error = Runner(root, tmp_path / "runs", monkeypatch)("fills", "r1")
    assert code == 1 and error == {"type": "failed", "message": f"no space left on {root}: free "
                                   f"space on its file system (or write less) and run the job "
                                   f"again"}  # fmt: skip
    assert "Traceback" not in capsys.readouterr().err


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (root only: ``mount``), unmounted afterwards."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is simulated with a 2 MiB tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_a_full_disk_fails_the_run_by_name_and_leaves_nothing_half_written(
    small_disk, tmp_path, monkeypatch
):
    run = Runner(small_disk, tmp_path / "runs", monkeypatch)
    code, result = run("datagen", "small", rows=1000, name="full")  # fits: kept
    assert code == 0, result
    dataset = small_disk / "datasets" / "full"
    code, error = run("datagen", "big", rows=400_000, name="full", overwrite=True)
    assert code == 1 and error["type"] == "failed"
    assert error["message"].startswith(f"no space left on {dataset}: free space")
    assert _marker(dataset)["run_id"] == "small" and _marker(dataset)["rows"] == 1000
    assert sorted(p.name for p in small_disk.rglob("*")) == sorted(
        ["datasets", "full", META_FILE, "part-00000.parquet"]
    )  # no temporary folder, no copy aside
