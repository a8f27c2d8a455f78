"""etl, top-earners and age-extremes on the real local cluster, checked against pandas."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _datasets(cluster: LocalCluster) -> Path:
    return cluster.storage / "datasets"


def _write(cluster: LocalCluster, name: str, frame: pd.DataFrame) -> str:
    folder = _datasets(cluster) / name
    folder.mkdir(parents=True, exist_ok=True)
    # microseconds: Spark does not read pandas' default nanosecond timestamps
    frame.to_parquet(folder / "part-00000.parquet", index=False, coerce_timestamps="us",
                     allow_truncated_timestamps=True)  # fmt: skip
    return str(folder)


def _no_temp_folders(cluster: LocalCluster) -> list[str]:
    return [str(p) for p in cluster.storage.rglob("*.tmp-*")]


@pytest.fixture(scope="module")
def processed(local_cluster: LocalCluster) -> pd.DataFrame:
    """datagen (seed-paper: five names, so many full_name duplicates) then etl, defaults chained."""
    code, gen = local_cluster.run(
        "datagen", "--rows", "200k", "--profile", "seed-paper", "--overwrite"
    )
    assert code == 0, gen["error"]
    code, etl = local_cluster.run("etl", "--overwrite")  # the default output: replaced
    assert code == 0, etl["error"]
    result = etl["result"]
    assert result["input"] == str(_datasets(local_cluster) / "people")
    assert result["output"] == str(_datasets(local_cluster) / "people-processed")
    assert result["rows"] == 200_000 and result["columns"] == 6
    assert set(result["stages"]) == {"open", "transform_write", "verify"}
    assert result["peak_rss_by_role"].get("driver", 0) > 0
    frame = pd.read_parquet(result["output"])
    assert list(frame.columns) == ["id", "full_name", "age", "salary", "signup_date", "is_active"]
    assert str(frame["signup_date"].dtype).startswith("datetime64")
    return frame


def test_etl_output_is_the_input_renamed_and_parsed(local_cluster, processed):
    raw = pd.read_parquet(_datasets(local_cluster) / "people").sort_values("id")
    out = processed.sort_values("id")
    assert (raw["name"].to_numpy() == out["full_name"].to_numpy()).all()
    assert (pd.to_datetime(raw["signup_date"]).to_numpy() ==
            out["signup_date"].dt.tz_localize(None).to_numpy()).all()  # fmt: skip
    assert _no_temp_folders(local_cluster) == []


def _pandas_top_earners(frame: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    ordered = frame.sort_values(["salary", "id"], ascending=[False, True], kind="stable")
    distinct = ordered.drop_duplicates(["full_name", "salary"])
    boundary = distinct["salary"].iloc[n - 1]
    return distinct[distinct["salary"] >= boundary]


def test_top_earners_equals_pandas(local_cluster, processed):
    code, record = local_cluster.run("top-earners", "--overwrite")
    assert code == 0, record["error"]
    got = pd.DataFrame(record["result"]["rows_out"])
    want = _pandas_top_earners(processed)
    assert list(got["id"]) == list(want["id"])
    assert list(zip(got["full_name"], got["salary"], strict=True)) == list(
        zip(want["full_name"], want["salary"], strict=True)
    )
    written = pd.read_parquet(record["result"]["output"])
    assert sorted(written["id"]) == sorted(want["id"])


@pytest.mark.parametrize("engine", ["spark", "ray", "duckdb"])
def test_top_earners_drops_duplicates_and_keeps_ties(local_cluster: LocalCluster, engine):
    rows = [  # the same (name, salary) many times, and a tie at the 3rd salary
        *[(i, "Ann", 900.0) for i in range(200)],
        (500, "Bob", 800.0), (501, "Bob", 800.0),
        (502, "Cy", 700.0), (503, "Di", 700.0),
        *[(1000 + i, f"p{i}", 100.0 + i) for i in range(300)],
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["id", "full_name", "salary"])
    path = _write(local_cluster, f"dupes-{engine}", frame)
    code, record = local_cluster.run("top-earners", "--engine", engine, "--top", "3",
                                     "--input", path, "--output", path + "-top")  # fmt: skip
    assert code == 0, record["error"]
    got = [(r["id"], r["full_name"], r["salary"]) for r in record["result"]["rows_out"]]
    assert got == [(0, "Ann", 900.0), (500, "Bob", 800.0), (502, "Cy", 700.0), (503, "Di", 700.0)]
    assert record["result"]["rounds"] >= 2  # 200 copies of one pair force a wider cut


def test_age_extremes_equals_pandas(local_cluster, processed):
    code, record = local_cluster.run("age-extremes", "--overwrite")
    assert code == 0, record["error"]
    got = pd.DataFrame(record["result"]["rows_out"])
    active = processed[processed["is_active"]]
    youngest = active.sort_values(["age", "id"], kind="stable").head(5)
    oldest = active.sort_values(["age", "id"], ascending=[False, True], kind="stable").head(5)
    assert list(got[got["extreme"] == "youngest"]["id"]) == list(youngest["id"])
    assert list(got[got["extreme"] == "oldest"]["id"]) == list(oldest["id"])
    assert (got["age"][:5] == 18).all() and (got["age"][5:] == 64).all()
    assert "the 5 youngest and 5 oldest active rows" in Path(
        record["artifacts"], "stdout.log").read_text()  # fmt: skip


# --- bad input: a clear error naming the path, column or file; run failed; nothing written


def _fails(cluster: LocalCluster, job: str, *args: str) -> dict:
    code, record = cluster.run(job, *args)
    assert code == 1 and record["status"] == "failed", record
    assert _no_temp_folders(cluster) == []
    return record


def test_missing_input_path(local_cluster: LocalCluster):
    missing = str(_datasets(local_cluster) / "nope")
    record = _fails(local_cluster, "etl", "--input", missing, "--output", missing + "-out")
    assert record["error"].startswith(f"input {missing} does not exist")
    assert "make it with `clusterkit run datagen`" in record["error"]
    assert not Path(missing + "-out").exists()
    record = _fails(local_cluster, "age-extremes", "--input", missing, "--output", missing + "-o")
    assert "make it with `clusterkit run etl`" in record["error"]


def test_missing_column(local_cluster: LocalCluster):
    frame = pd.DataFrame(
        {"id": [1], "name": ["a"], "age": [30], "signup_date": [pd.Timestamp("2021-01-01")],
         "is_active": [True]}
    )  # fmt: skip
    path = _write(local_cluster, "no-salary", frame)
    record = _fails(local_cluster, "etl", "--input", path, "--output", path + "-out")
    assert record["error"].startswith(f"{path}: missing column(s) salary; it has id, name")


def test_mistyped_column(local_cluster: LocalCluster):
    frame = pd.DataFrame({"id": [1], "full_name": ["a"], "salary": ["lots"]})
    path = _write(local_cluster, "text-salary", frame)
    record = _fails(local_cluster, "top-earners", "--input", path, "--output", path + "-out")
    assert record["error"] == f"{path}: column salary is string, expected number " \
        "(byte or short or integer or long or float or double or decimal)"  # fmt: skip


def test_empty_dataset(local_cluster: LocalCluster):
    frame = pd.DataFrame({"id": pd.Series([], dtype="int64"),
                          "full_name": pd.Series([], dtype="string"),
                          "age": pd.Series([], dtype="int32"),
                          "is_active": pd.Series([], dtype=bool)})  # fmt: skip
    path = _write(local_cluster, "empty", frame)
    record = _fails(local_cluster, "age-extremes", "--input", path, "--output", path + "-out")
    assert record["error"] == f"{path}: the dataset is empty (0 rows)"


def test_truncated_parquet_file_is_named(local_cluster: LocalCluster, processed):
    frame = processed.head(1000)
    path = _write(local_cluster, "truncated", frame)
    part = Path(path) / "part-00000.parquet"
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    record = _fails(local_cluster, "top-earners", "--input", path, "--output", path + "-out")
    assert record["error"].startswith(f"{part} is not a valid Parquet file (truncated")


def test_unreadable_schema_is_named(local_cluster: LocalCluster):
    folder = _datasets(local_cluster) / "nanos"
    folder.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame({"id": [1], "full_name": ["a"], "salary": [1.0],
                          "when": [pd.Timestamp("2021-01-01")]})  # fmt: skip
    frame.to_parquet(folder / "part-00000.parquet", index=False)  # nanosecond timestamps
    record = _fails(local_cluster, "top-earners", "--input", str(folder),
                    "--output", str(folder) + "-out")  # fmt: skip
    assert record["error"].startswith(f"{folder}: Spark cannot read this dataset's schema:")
    assert "TIMESTAMP(NANOS" in record["error"]


def test_corrupted_parquet_body_is_named(local_cluster: LocalCluster, processed):
    path = _write(local_cluster, "garbled", processed.head(50_000))
    part = Path(path) / "part-00000.parquet"
    data = bytearray(part.read_bytes())
    middle = len(data) // 2
    data[middle - 2000 : middle + 2000] = b"\x07" * 4000  # keeps PAR1 at both ends
    part.write_bytes(bytes(data))
    record = _fails(local_cluster, "top-earners", "--input", path, "--output", path + "-out")
    assert f"{part}" in record["error"] and "could not be read" in record["error"]
    assert not Path(path + "-out").exists()


def test_a_cancelled_job_leaves_no_temporary_output(local_cluster: LocalCluster):
    """Cancelled mid-write, etl leaves neither its output nor its temporary folder."""
    code, gen = local_cluster.run("datagen", "--rows", "5M", "--name", "cancel-src", "--overwrite")
    assert code == 0, gen["error"]
    out = _datasets(local_cluster) / "cancel-out"
    source = str(_datasets(local_cluster) / "cancel-src")
    # classic: the job's process is killed mid-write and its supervisor sweeps (a warm job
    # interrupts the server's write and deletes its temporary folder itself)
    started = local_cluster.cli("run", "etl", "--input", source, "--output", str(out),
                                "--spark-session", "classic", "--detach")  # fmt: skip
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    tmp = Path(f"{out}.tmp-{run_id}")
    deadline = time.monotonic() + 120
    while not tmp.exists():
        assert time.monotonic() < deadline, "etl never started writing"
        time.sleep(0.1)
    cancelled = local_cluster.cli("cancel", run_id, "--json")
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled", cancelled.stdout
    assert not tmp.exists() and not out.exists()
    log = (Path(local_cluster.up["state_dir"]) / "runs" / run_id / "supervisor.log").read_text()
    assert f"removed {tmp}: a temporary output the run left unfinished" in log
    assert _no_temp_folders(local_cluster) == []
