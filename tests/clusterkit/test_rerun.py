"""`clusterkit rerun` without a cluster: the plan (the same job, parameters, engine and Spark
session; arguments that change some), the new record's ``rerun_of``, the checksum verdict,
and bad input: an unknown run, a job that no longer exists, a run refused before it ran.
The same on the real local cluster: tests/jobs/test_rerun.py."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, cast

import pytest

from clusterkit import catalog, cli
from clusterkit.cluster import Cluster, plan_rerun, rerun_job
from clusterkit.core.errors import BadInput, UnknownJob
from clusterkit.core.records import RunRecord
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.exec.local import LocalRunner
from clusterkit.runs.compare import check_checksums
from clusterkit.runs.launcher import Runs, RunSetup
from clusterkit.runs.store import FolderRunStore


def _record(run_id: str, job: str, params: dict[str, Any], **values: Any) -> RunRecord:
    base: dict[str, Any] = {"cluster": "local", "provider": "local", "status": "succeeded"}
    return RunRecord(id=run_id, job=job, params=params, **(base | values))


def _keep(store: FolderRunStore, record: RunRecord, result: dict[str, Any] | None = None) -> None:
    store.dir(record.id).mkdir(parents=True)
    store.save(record)
    if result is not None:
        (store.dir(record.id) / "result.json").write_text(json.dumps(result))


# --- the plan --------------------------------------------------------------------------------


def test_the_same_job_parameters_and_engine():
    original = _record("r1", "etl", {"overwrite": True, "checksum": True})
    plan = plan_rerun(original, {"engine": "ray", "rows": 10})
    assert (plan.job, plan.changed) == ("etl", {})
    assert plan.params == {"overwrite": True, "checksum": True, "engine": "ray"}  # pinned
    given = _record("r2", "etl", {"engine": "duckdb"})
    assert plan_rerun(given, {"engine": "spark"}).params == {"engine": "duckdb"}
    assert plan_rerun(given, None).params == {"engine": "duckdb"}
    datagen = _record("r3", "datagen", {"rows": 3000, "seed": 7})
    assert plan_rerun(datagen, {"engine": "ray"}).params == {"rows": 3000, "seed": 7}  # no
    # engine parameter: nothing pinned


def test_arguments_change_a_parameter_and_are_checked():
    original = _record("r1", "datagen", {"rows": 3000, "seed": 7})
    plan = plan_rerun(original, None, ["--overwrite", "--rows", "2k"])
    assert plan.params == {"rows": 2000, "seed": 7, "overwrite": True}
    assert plan.changed == {"overwrite": True, "rows": 2000}
    with pytest.raises(UnknownJob, match="job datagen has no parameter --rowz"):
        plan_rerun(original, None, ["--rowz", "5"])


def test_a_job_that_no_longer_exists_is_said():
    original = _record("20261121-100000-aaaa", "gone-job", {})
    with pytest.raises(UnknownJob) as caught:
        plan_rerun(original, None)
    assert str(caught.value).startswith(
        "run 20261121-100000-aaaa ran job 'gone-job', which no longer exists: unknown job "
    )


def test_parameters_the_job_no_longer_takes_are_named():
    original = _record("r1", "datagen", {"rows": 3000, "colour": "blue"})
    with pytest.raises(UnknownJob, match="run r1's parameters no longer fit job datagen: job "
                                         "datagen has no parameter --colour"):  # fmt: skip
        plan_rerun(original, None)
    refused = _record("r2", "datagen", {"rows": "many"})
    with pytest.raises(UnknownJob, match="--rows of job datagen: 'many' is not a count"):
        plan_rerun(refused, None)


def test_a_bench_run_with_sizes_is_repeated_and_its_sizes_changed():
    params = {"jobs": ["etl"], "engines": ["spark", "duckdb"], "sizes": [1000, 2000]}
    original = _record("r1", "bench", params)  # as a run record keeps them: parsed
    assert plan_rerun(original, {"engine": "python"}).params == params
    plan = plan_rerun(original, None, ["--sizes", "1k"])
    assert plan.params == params | {"sizes": [1000]} and plan.changed == {"sizes": [1000]}
    for refused, said in ((["1k", "many"], "'many' is not a count"),
                          (5, "5: give a comma-separated list"), ([True], "True is not a count"),
                          ([], "without empty items")):  # fmt: skip
        with pytest.raises(UnknownJob, match=f"run r2's parameters no longer fit job bench: "
                                             f"--sizes of job bench: .*{said}"):  # fmt: skip
            plan_rerun(_record("r2", "bench", {"sizes": refused}), None)
    with pytest.raises(UnknownJob, match="--repeats of job bench: cannot convert float inf"):
        plan_rerun(_record("r3", "bench", {"repeats": float("inf")}), None)  # JSON's Infinity


#: a value to type for a parameter whose default has no text (None, "" or [])
_TYPED = {"str": "/srv/class", "words": "-v --band 5"}


def test_every_parameter_kind_of_the_catalog_round_trips_through_a_record():
    """Each job's parameters typed (their defaults, as the command line would take them),
    parsed, then kept in a record and checked again: the same values, for every kind."""
    kinds = set()
    for job in catalog.list_jobs():
        typed = [f"--{p.name.replace('_', '-')}={catalog.default_text(p) or _TYPED[p.kind]}"
                 for p in job.params]  # fmt: skip
        parsed = catalog.parse_job_args(job, typed)
        assert set(parsed) == {p.name for p in job.params}, job.name
        for param in job.params:
            kinds.add(param.kind)
            kept = json.loads(json.dumps(parsed[param.name]))  # as record.json holds it
            assert param.parse(kept) == parsed[param.name], (job.name, param.name)
        # no value equal to a default, so each is parsed again, not passed as the default
        no_defaults = dataclasses.replace(
            job, params=[dataclasses.replace(p, default=None) for p in job.params]
        )
        assert catalog.check_params(no_defaults, json.loads(json.dumps(parsed))) == parsed
        assert catalog.check_params(job, parsed) == parsed
    assert {"count", "counts", "int", "float", "bool", "choice", "choices", "words"} <= kinds


def test_a_run_refused_before_it_ran_or_a_staged_script_is_not_repeated():
    refused = _record("r1", "datagen", {"argv": ["--rowz", "5"]}, status="failed",
                      error="job datagen has no parameter --rowz")  # fmt: skip
    with pytest.raises(BadInput, match=r"run r1 was refused before it ran \(job datagen has no "):
        plan_rerun(refused, None)
    staged = _record("r2", "submit", {"script": "a.py", "workdir": "workdir", "args": []})
    with pytest.raises(BadInput, match="copied to the master for that run alone"):
        plan_rerun(staged, None)
    here = _record("r3", "submit", {"script": "a.py", "workdir": "/home/me/p", "args": ["-v"]})
    assert plan_rerun(here, None).params == here.params


# --- the new run's record --------------------------------------------------------------------


class _TakingRunner(LocalRunner):
    """This machine, but a supervisor that only takes the run (marks it running)."""

    def __init__(self, store: FolderRunStore) -> None:
        super().__init__()
        self.store = store

    def spawn(self, argv: Any, *, cwd: str, log: str, unset_env: Any = ()) -> None:
        record = self.store.load(Path(cwd).name)
        record.status = "running"
        self.store.save(record)


class _FinishingRunner(_TakingRunner):
    """A supervisor that runs the job at once: it succeeds with ``result``."""

    def __init__(self, store: FolderRunStore, result: dict[str, Any]) -> None:
        super().__init__(store)
        self.result = result

    def spawn(self, argv: Any, *, cwd: str, log: str, unset_env: Any = ()) -> None:
        record = self.store.load(Path(cwd).name)
        (Path(cwd) / "stdout.log").write_text(f"{record.job}: done\n")
        (Path(cwd) / "result.json").write_text(json.dumps(self.result))
        record.status, record.wall_s, record.exit_code = "succeeded", 1.0, 0
        self.store.save(record)


def _cluster_with(store: FolderRunStore, runner: _TakingRunner | None = None) -> Cluster:
    """A cluster whose runs are ``store``'s, started by ``runner`` (they stay running)."""
    runner = runner or _TakingRunner(store)
    setup = RunSetup(env={}, cluster="local", provider="local", node="local",
                     runs_dir=str(store.root), interval_s=1.0, storage_root="/nowhere",
                     python=sys.executable)  # fmt: skip
    runs = Runs(store, setup=setup, driver=runner, nodes=[runner])
    nothing = cast(Any, None)
    return Cluster(nothing, nothing, nothing, nothing, _runs=runs)


def test_the_new_run_notes_which_run_it_repeats(tmp_path):
    store = FolderRunStore(tmp_path / "runs")
    original = _record("20261121-100000-aaaa", "etl", {"checksum": True}, metrics_enabled=False,
                       spark_session="classic")  # fmt: skip
    _keep(store, original, {"engine": "spark", "checksum": "00ff"})
    plan, record = rerun_job("20261121-1000", cluster=_cluster_with(store))
    assert plan.original.id == original.id
    assert record.rerun_of == original.id and record.id != original.id
    assert (record.job, record.params) == ("etl", {"checksum": True, "engine": "spark"})
    assert (record.spark_session, record.metrics_enabled) == ("classic", False)
    on_disk = json.loads((store.dir(record.id) / "record.json").read_text())
    assert on_disk["rerun_of"] == original.id
    assert store.load(record.id).rerun_of == original.id  # read back through the record


# --- the checksum verdict --------------------------------------------------------------------


def test_whether_the_checksums_are_the_same():
    a, b = _record("a", "datagen", {}), _record("b", "datagen", {}, rerun_of="a")
    same = check_checksums(a, {"checksum": "00ff"}, b, {"checksum": "00ff"})
    assert same.same is True and same.text() == "checksum 00ff: the same as run a's"
    differ = check_checksums(a, {"checksum": "00ff"}, b, {"checksum": "0100"})
    assert differ.same is False
    assert differ.text() == "checksum 0100: differs from run a's (00ff)"
    split = {"train": "01", "test": "02"}  # digits-etl's, per split
    assert check_checksums(a, {"checksum": split}, b, {"checksum": dict(split)}).same is True
    failed = _record("b", "datagen", {}, status="failed")
    unknown = check_checksums(a, {"rows": 1}, failed, None)
    assert unknown.same is None and unknown.text() == (
        "checksum: not compared: run a's result has no checksum (job datagen records none with "
        "these parameters); run b has no result (failed)"
    )
    assert unknown.to_dict()["same"] is None


# --- the command, its cluster down -----------------------------------------------------------


@pytest.fixture
def down_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FolderRunStore:
    """A known cluster that is down, its runs kept here; its store."""
    for name in ("CLUSTERKIT_CLUSTER", "CLUSTERKIT_SPEC", "CLUSTERKIT_JOBS_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("CLUSTERKIT_HOME", str(home))
    Contexts(home).add("local", home / "clusters" / "local")
    store = FolderRunStore(ClusterPaths(home / "clusters" / "local").runs)
    _keep(store, _record("20261121-100000-aaaa", "datagen", {"rows": 3000}), {"checksum": "01"})
    _keep(store, _record("20261121-100100-bbbb", "gone-job", {}))
    return store


@pytest.mark.parametrize(("ref", "code", "said"), [
    ("no-such-run", 2, "error: no run matching 'no-such-run' in "),
    ("20261121-100100", 2, "error: run 20261121-100100-bbbb ran job 'gone-job', which no "
                           "longer exists"),
    ("20261121-100000", 1, "error: cluster 'local' is down: start it with `clusterkit up`"),
])  # fmt: skip
def test_rerun_names_what_is_wrong_in_one_line(down_cluster, capsys, ref, code, said):
    assert cli.main(["rerun", ref]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(said) and captured.err.count("\n") == 1
    assert captured.out == ""
    assert len(down_cluster.ids()) == 2  # nothing recorded


@pytest.mark.parametrize(("sizes", "args", "code", "said"), [
    ([1000, 2000], [], 1, "error: cluster 'local' is down"),  # checked, then the cluster
    ([1000, 2000], ["--sizes", "1k"], 1, "error: cluster 'local' is down"),
    ([1000, 2000], ["--sizes", "1q"], 2, "error: --sizes of job bench: '1q' is not a count"),
    (["many"], [], 2, "error: run 20261121-100200-cccc's parameters no longer fit job bench: "
                      "--sizes of job bench: 'many' is not a count"),
])  # fmt: skip
def test_rerun_of_a_bench_run_checks_its_sizes(down_cluster, capsys, sizes, args, code, said):
    bench = _record("20261121-100200-cccc", "bench", {"sizes": sizes, "repeats": 1})
    _keep(down_cluster, bench)
    assert cli.main(["rerun", bench.id, *args]) == code
    captured = capsys.readouterr()
    assert captured.err.startswith(said) and captured.err.count("\n") == 1
    assert len(down_cluster.ids()) == 3  # nothing recorded


@pytest.mark.parametrize(("checksum", "verdict"), [
    ("00ff", "checksum 00ff: the same as run 20261121-100000-aaaa's"),
    ("0100", "checksum 0100: differs from run 20261121-100000-aaaa's (00ff)"),
])  # fmt: skip
def test_rerun_follows_the_new_run_and_says_whether_the_checksum_is_the_same(
    tmp_path, monkeypatch, capsys, checksum, verdict
):
    store = FolderRunStore(tmp_path / "runs")
    original = _record("20261121-100000-aaaa", "datagen", {"rows": 3000, "seed": 7})
    _keep(store, original, {"checksum": "00ff"})
    runner = _FinishingRunner(store, {"checksum": checksum, "rows": 3000})
    monkeypatch.setattr(cli, "open_or_why", lambda name=None: _cluster_with(store, runner))
    assert cli.main(["rerun", "latest", "--overwrite"]) == 0
    captured = capsys.readouterr()
    new = store.get("latest")
    assert new.rerun_of == original.id and new.params == {"rows": 3000, "seed": 7,
                                                          "overwrite": True}  # fmt: skip
    assert f"run {new.id} reruns run {original.id} (datagen, with --overwrite)" in (captured.err)
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"run {new.id} · datagen · succeeded")
    assert f"  rerun of: run {original.id}" in lines and lines[-1] == verdict
    assert cli.main(["rerun", original.id, "--overwrite", "--json"]) == 0
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["rerun_of"] == original.id and data["result"]["checksum"] == checksum
    assert data["checksum_check"]["same"] is (checksum == "00ff")
    assert data["checksum_check"]["text"] == verdict
    assert captured.err.rstrip().endswith(verdict)  # --json: the line on stderr
