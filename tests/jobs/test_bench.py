"""clusterkit bench on the real local cluster: every cell of the table filled, every run in
the store; bad input refused with the reason, before the timed runs."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _runs(cluster: LocalCluster) -> list[dict[str, Any]]:
    result = cluster.cli("runs", "--json")
    assert result.code == 0, result.stderr
    runs: list[dict[str, Any]] = result.json()
    return runs


@pytest.fixture(scope="module")
def bench(local_cluster: LocalCluster) -> dict[str, Any]:
    """The default jobs and engines (the source's scripts included) at 2,000 rows, once."""
    result = local_cluster.cli("bench", "--sizes", "2k", "--repeats", "1", "--json", timeout=900)
    assert result.code == 0, result.stderr[-3000:]
    record: dict[str, Any] = result.json()
    return record


def test_bench_fills_every_cell(bench):
    table = bench["result"]["table"]
    cells = {(r["job"], r["engine"]) for r in table}
    assert cells == {(j, e) for j in ("etl", "top-earners", "age-extremes")
                     for e in ("spark", "ray", "duckdb", "seed-paper")}  # fmt: skip
    for row in table:
        assert row["rows"] == 2000 and row["runs"] == 1 and row["failed"] == 0, row
        assert row["median_s"] > 0 and row["min_s"] <= row["median_s"] <= row["max_s"], row
        assert row["ratio_to_fastest"] >= 1.0 and row["peak_rss_bytes"] > 50 * 2**20, row
        assert row["published"] == "none published"  # the source published 30M rows only
    for job in ("etl", "top-earners", "age-extremes"):
        ratios = [r["ratio_to_fastest"] for r in table if r["job"] == job]
        assert min(ratios) == 1.0
    markdown = Path(bench["result"]["markdown"]).read_text().splitlines()
    assert len(markdown) == 2 + 12 and all("| - |" not in line for line in markdown)
    rows = list(csv.DictReader(io.StringIO(Path(bench["result"]["csv"]).read_text())))
    assert len(rows) == 12 and all(all(v != "" for k, v in r.items() if k != "error")
                                   for r in rows)  # fmt: skip


def test_bench_writes_its_report_beside_its_table(bench):
    report = Path(bench["report"])
    assert report == Path(bench["result"]["markdown"]).parent / "report.html"
    html = report.read_text()
    assert "Engines compared" in html and f"run {bench['id']}" in html
    assert (report.parent / f"report-{bench['id']}-bench.png").exists()


def test_bench_runs_are_in_the_store(local_cluster: LocalCluster, bench):
    runs = {r["id"]: r for r in _runs(local_cluster)}
    children = [r for r in runs.values() if r["parent"] == bench["id"]]
    timed = [r["id"] for r in children
             if r["params"].get("output", "").endswith(("-spark", "-ray", "-duckdb", "-seed-paper"))
             and "/bench/" in r["params"]["output"]]  # fmt: skip
    assert sorted(timed) == sorted(bench["result"]["runs"]) and len(timed) == 12
    assert all(runs[i]["status"] == "succeeded" for i in timed)
    jobs = sorted((runs[i]["job"], runs[i]["params"].get("engine") or runs[i]["params"]["script"])
                  for i in timed)  # fmt: skip
    assert jobs.count(("seed-paper", "etl")) == 1 and jobs.count(("etl", "ray")) == 1
    assert not any((local_cluster.storage / "bench").glob("*")), "outputs are deleted"


def test_bench_refuses_an_unknown_job_or_engine(local_cluster: LocalCluster):
    before = len(_runs(local_cluster))
    for flag, value, known in (
        ("--jobs", "etl,wordcount", "etl, top-earners, age-extremes, digits-etl"),
        ("--engines", "spark,polars", "spark, ray, duckdb, seed-paper"),
    ):
        result = local_cluster.cli("bench", flag, value)
        assert result.code == 2
        message = " ".join(result.stderr.split())
        assert f"{flag} of job bench: unknown '{value.split(',')[1]}'; choose from {known}" \
            in message  # fmt: skip
    runs = _runs(local_cluster)
    assert len(runs) == before + 2 and all(r["status"] == "failed" for r in runs[before:])


def test_bench_refuses_a_size_that_does_not_fit_before_starting(local_cluster: LocalCluster):
    result = local_cluster.cli("bench", "--sizes", "2k,5000B", "--repeats", "1", "--json",
                               timeout=600)  # fmt: skip
    assert result.code == 1
    record = result.json()
    assert record["status"] == "failed" and record["exit_code"] == 2
    assert record["error"].startswith(
        "size 5,000,000,000,000 rows does not fit this machine's disk: the seed-paper dataset"
    )
    assert "bytes per row, measured on" in record["error"] and "GB free" in record["error"]
    children = [r for r in _runs(local_cluster) if r["parent"] == record["id"]]
    # only the data the check measures (nothing: the 2k dataset is already there); no timed run
    assert all(r["job"] in ("datagen", "etl") and "/bench/" not in json.dumps(r["params"])
               for r in children)  # fmt: skip


def test_bench_compares_the_digits_etl_on_the_three_engines(local_cluster: LocalCluster):
    """digits-etl on request: its own dataset (datagen-digits), no seed-paper cell (the
    source has no digits script), the engines' outputs equal."""
    result = local_cluster.cli("bench", "--jobs", "digits-etl", "--sizes", "1200", "--repeats",
                               "1", "--json", timeout=900)  # fmt: skip
    assert result.code == 0, result.stderr[-3000:]
    record = result.json()
    table = record["result"]["table"]
    assert {(r["job"], r["engine"]) for r in table} == {
        ("digits-etl", e) for e in ("spark", "ray", "duckdb")}  # fmt: skip
    assert all(r["rows"] == 1200 and r["failed"] == 0 and r["median_s"] > 0 for r in table)
    runs = {r["id"]: r for r in _runs(local_cluster)}
    made = [
        r for r in runs.values() if r["parent"] == record["id"] and r["job"] == "datagen-digits"
    ]
    assert len(made) == 1 and made[0]["params"]["rows"] == 1200
    sums = set()
    for run_id in record["result"]["runs"]:
        result_file = Path(local_cluster.up["state_dir"]) / "runs" / run_id / "result.json"
        sums.add(json.dumps(json.loads(result_file.read_text())["checksum"], sort_keys=True))
    assert len(sums) == 1, sums
