"""`clusterkit rerun` on the real local cluster: datagen with a fixed seed and etl (its
default engine, pinned by the rerun) give the same result checksum as the runs they repeat,
and etl's equals its input's; `report` puts a run and its rerun side by side; the scripts
`clusterkit init --class` hands out run on the cluster. A few thousand rows: quick."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster

ROWS = 3000
ETL_PATHS = ("--input", "datasets/rerun-people", "--output", "datasets/rerun-processed")


def _rerun(cluster: LocalCluster, run_id: str, *args: str) -> dict[str, Any]:
    result = cluster.cli("rerun", run_id, *args, "--json", timeout=600)
    assert result.code == 0, result.stderr[-3000:]
    assert f"reruns run {run_id}" in result.stderr
    record: dict[str, Any] = result.json()
    return record


@pytest.fixture(scope="module")
def datagen(local_cluster: LocalCluster) -> dict[str, Any]:
    code, record = local_cluster.run("datagen", "--rows", str(ROWS), "--seed", "11", "--name",
                                     "rerun-people", "--overwrite")  # fmt: skip
    assert code == 0, record["error"]
    return record


def test_a_datagen_rerun_gives_the_same_checksum(local_cluster: LocalCluster, datagen):
    again = _rerun(local_cluster, datagen["id"])
    assert again["id"] != datagen["id"] and again["rerun_of"] == datagen["id"]
    assert (again["job"], again["params"]) == ("datagen", datagen["params"])
    assert again["status"] == "succeeded"
    checksum = datagen["result"]["checksum"]
    assert re.fullmatch(r"[0-9a-f]{16}", checksum)
    assert again["result"]["checksum"] == checksum
    assert again["checksum_check"]["same"] is True
    assert again["checksum_check"]["text"] == (
        f"checksum {checksum}: the same as run {datagen['id']}'s"
    )
    other = _rerun(local_cluster, datagen["id"], "--seed", "12", "--name", "rerun-other")
    assert other["params"] == datagen["params"] | {"seed": 12, "name": "rerun-other"}
    assert other["checksum_check"]["same"] is False  # another seed: other rows


def test_an_etl_rerun_gives_the_same_checksum_on_the_same_engine(
    local_cluster: LocalCluster, datagen, tmp_path: Path
):
    code, etl = local_cluster.run("etl", *ETL_PATHS, "--checksum", "--overwrite")
    assert code == 0, etl["error"]
    assert "engine" not in etl["params"] and etl["result"]["engine"] == "spark"
    checksum = etl["result"]["checksum"]
    assert checksum == datagen["result"]["checksum"]  # every row came through unchanged
    assert "checksum" in etl["result"]["stages"]
    again = _rerun(local_cluster, etl["id"])
    assert again["rerun_of"] == etl["id"] and again["params"]["engine"] == "spark"  # pinned
    assert again["result"]["engine"] == "spark" and again["result"]["checksum"] == checksum
    assert again["checksum_check"]["same"] is True
    out = tmp_path / "pair.html"
    report = local_cluster.cli("report", etl["id"], again["id"], "-o", str(out))
    assert report.code == 0, report.stderr
    html = out.read_text()
    assert f"Run {again['id']} reruns run {etl['id']}: checksum {checksum}: the same" in html
    assert "Environments: " in html


def test_a_rerun_of_an_unknown_run_is_refused(local_cluster: LocalCluster):
    before = local_cluster.cli("runs", "--json").json()
    result = local_cluster.cli("rerun", "no-such-run")
    assert result.code == 2 and result.stderr.startswith("error: no run matching 'no-such-run'")
    assert len(local_cluster.cli("runs", "--json").json()) == len(before)


def test_the_class_scripts_run_on_the_cluster(local_cluster: LocalCluster, datagen, tmp_path):
    """The two scripts of `init --class`, on datagen's rows and etl's (the test above made
    them; made here again when it ran alone)."""
    made = local_cluster.cli("init", "--class", str(tmp_path))
    assert made.code == 0, made.stderr
    storage = local_cluster.storage / "datasets"
    if not (storage / "rerun-processed").exists():
        code, etl = local_cluster.run("etl", *ETL_PATHS, "--overwrite")
        assert code == 0, etl["error"]
    examples = tmp_path / "examples"
    spark = local_cluster.cli("submit", str(examples / "salary_by_age.py"), "--json", "--",
                              "--input", str(storage / "rerun-processed"))  # fmt: skip
    assert spark.code == 0, spark.stderr[-3000:]
    bands = [line.split() for line in spark.stderr.splitlines()
             if re.match(r"\d+-\d+\s+[\d,]+\s", line)]  # fmt: skip
    assert [b[0] for b in bands] == ["10-19", "20-29", "30-39", "40-49", "50-59", "60-69"]
    assert sum(int(b[1].replace(",", "")) for b in bands) == ROWS
    ray = local_cluster.cli("submit", str(examples / "salary_stats_ray.py"), "--json", "--",
                            "--input", str(storage / "rerun-people"))  # fmt: skip
    assert ray.code == 0, ray.stderr[-3000:]
    said = re.findall(r"^(?:active|inactive)\s+([\d,]+) rows", ray.stderr, re.M)
    counts = [int(n.replace(",", "")) for n in said]
    assert len(counts) == 2 and sum(counts) == ROWS
