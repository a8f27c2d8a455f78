"""etl, top-earners and age-extremes on Spark, Ray Data and DuckDB: the same results, the same
record keys, the same refusals (real local cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster

ENGINES = ["spark", "ray", "duckdb"]
#: keys every engine's run of a job has; the job's own keys are compared engine to engine
COMMON = {"job", "engine", "params", "wall_s", "stages", "peak_rss_bytes", "peak_rss_by_role",
          "driver_max_rss_bytes", "rows", "input", "output"}  # fmt: skip


def _ok(cluster: LocalCluster, job: str, *args: str) -> dict[str, Any]:
    code, record = cluster.run(job, *args)
    assert code == 0, record["error"]
    result: dict[str, Any] = record["result"]
    return result


def _table(path: str) -> Any:
    return pq.ParquetDataset(path).read().sort_by([("id", "ascending")])


@pytest.fixture(scope="module")
def raw(local_cluster: LocalCluster) -> str:
    """60k rows of the seed-paper profile (five names: many duplicate names)."""
    result = _ok(local_cluster, "datagen", "--rows", "60k", "--profile", "seed-paper",
                 "--name", "engines-raw", "--overwrite")  # fmt: skip
    return str(Path(result["path"]))


@pytest.fixture(scope="module")
def etl_runs(local_cluster: LocalCluster, raw: str) -> dict[str, dict[str, Any]]:
    return {e: _ok(local_cluster, "etl", "--engine", e, "--input", raw,
                   "--output", f"{raw}-etl-{e}") for e in ENGINES}  # fmt: skip


def _same_shape(results: dict[str, dict[str, Any]]) -> None:
    """Every engine's result has the same keys and the same stages, and names its engine."""
    keys = {e: set(r) for e, r in results.items()}
    assert all(k == keys["spark"] for k in keys.values()), keys
    assert keys["spark"] >= COMMON
    stages = {e: list(r["stages"]) for e, r in results.items()}
    assert all(s == stages["spark"] for s in stages.values()), stages
    assert {e: r["engine"] for e, r in results.items()} == {e: e for e in results}


def test_etl_engines_write_the_same_dataset(etl_runs):
    _same_shape(etl_runs)
    tables = {e: _table(r["output"]) for e, r in etl_runs.items()}
    spark = tables["spark"]
    assert spark.num_rows == 60_000
    assert spark.column_names == ["id", "full_name", "age", "salary", "signup_date", "is_active"]
    assert str(spark.schema.field("signup_date").type) == "timestamp[us, tz=UTC]"
    for engine in ("ray", "duckdb"):
        assert tables[engine].schema == spark.schema, engine
        assert tables[engine].equals(spark), f"{engine}'s etl output differs from Spark's"


def _pandas_answer(job: str, frame: Any) -> list[dict[str, Any]]:
    """What the query must return, computed with pandas from the whole processed dataset."""
    import pandas as pd

    if job == "top-earners":
        ordered = frame.sort_values(["salary", "id"], ascending=[False, True], kind="stable")
        distinct = ordered.drop_duplicates(["full_name", "salary"])
        want = distinct[distinct["salary"] >= distinct["salary"].iloc[9]]
    else:
        active = frame[frame["is_active"]]
        young = active.sort_values(["age", "id"], kind="stable").head(5)
        old = active.sort_values(["age", "id"], ascending=[False, True], kind="stable").head(5)
        want = pd.concat([young.assign(extreme="youngest"), old.assign(extreme="oldest")])
    rows = want.to_dict(orient="records")
    return [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in rows]  # fmt: skip


@pytest.mark.parametrize("job", ["top-earners", "age-extremes"])
def test_queries_agree_across_engines(local_cluster: LocalCluster, etl_runs, job):
    """Ray Data and DuckDB against each other and against pandas on the whole dataset (Spark
    against pandas: tests/jobs/test_etl_and_queries.py), every column of every row."""
    source = etl_runs["spark"]["output"]
    results = {e: _ok(local_cluster, job, "--engine", e, "--input", source,
                      "--output", f"{source}-{job}-{e}") for e in ("ray", "duckdb")}  # fmt: skip
    assert set(results["ray"]) == set(results["duckdb"]) >= COMMON
    assert list(results["ray"]["stages"]) == list(results["duckdb"]["stages"])
    want = _pandas_answer(job, _table(source).to_pandas())
    assert len(want) >= 10
    for engine, result in results.items():
        assert [dict(sorted(r.items())) for r in result["rows_out"]] == \
            [dict(sorted(r.items())) for r in want], engine  # fmt: skip
    written = {e: pq.read_table(r["output"]) for e, r in results.items()}
    assert written["ray"].equals(written["duckdb"])


def test_the_engines_read_each_others_outputs(local_cluster: LocalCluster, etl_runs):
    """DuckDB's and Ray's etl outputs are valid inputs of the Spark queries, and back."""
    top = {e: _ok(local_cluster, "top-earners", "--engine", q, "--input", etl_runs[e]["output"],
                  "--output", f"{etl_runs[e]['output']}-top-{q}")["rows_out"]
           for e, q in (("duckdb", "spark"), ("spark", "duckdb"), ("ray", "duckdb"))}  # fmt: skip
    assert top["duckdb"] == top["spark"] == top["ray"]


def test_an_unknown_engine_is_refused_before_the_run(local_cluster: LocalCluster):
    result = local_cluster.cli("run", "etl", "--engine", "polars")
    assert result.code == 2
    message = " ".join(result.stderr.split())
    assert "--engine of job etl: 'polars' is not one of spark, ray, duckdb" in message
    assert "recorded as run" in message


@pytest.mark.parametrize("engine", ["ray", "duckdb"])
def test_a_corrupted_file_is_named_by_every_engine(local_cluster: LocalCluster, etl_runs, engine):
    source = Path(etl_runs["spark"]["output"])
    folder = source.parent / f"garbled-{engine}"
    folder.mkdir()
    part = folder / "part-00000.parquet"
    data = bytearray(next(source.glob("*.parquet")).read_bytes())
    middle = len(data) // 2
    data[middle - 2000 : middle + 2000] = b"\x07" * 4000  # keeps PAR1 at both ends
    part.write_bytes(bytes(data))
    code, record = local_cluster.run("top-earners", "--engine", engine, "--input", str(folder),
                                     "--output", f"{folder}-out")  # fmt: skip
    assert code == 1 and record["status"] == "failed" and record["exit_code"] == 2
    assert record["error"].startswith(f"{part} could not be read")
    assert not Path(f"{folder}-out").exists()
