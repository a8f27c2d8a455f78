"""The comparison table: medians, ranges, ratios to the fastest, failures shown in place."""

from __future__ import annotations

from clusterkit.core.records import RunRecord
from clusterkit.runs.compare import Measurement, markdown, measurement, summarise, to_csv


def _m(engine: str, wall: float | None, *, job: str = "etl", rows: int = 30_000_000,
       status: str = "succeeded", peak: int = 2**30) -> Measurement:  # fmt: skip
    return Measurement(f"r-{engine}-{wall}", job, engine, rows, status, wall, peak,
                       None if status == "succeeded" else "killed")  # fmt: skip


def test_medians_ranges_and_ratios():
    rows = summarise(
        [_m("spark", 30.0), _m("spark", 20.0), _m("spark", 25.0), _m("duckdb", 5.0, peak=2**28),
         _m("duckdb", 6.0), _m("ray", None, status="failed")],
        engines=["spark", "ray", "duckdb"],
    )  # fmt: skip
    assert [r.engine for r in rows] == ["spark", "ray", "duckdb"]
    spark, ray, duck = rows
    assert (spark.median_s, spark.min_s, spark.max_s, spark.runs) == (25.0, 20.0, 30.0, 3)
    assert duck.median_s == 5.5 and duck.ratio_to_fastest == 1.0
    assert spark.ratio_to_fastest == 25.0 / 5.5
    assert duck.peak_rss_bytes == 2**30  # the highest of its runs
    assert ray.median_s is None and ray.failed == 1 and ray.error == "killed"
    assert spark.published.startswith("34.1 s median") and duck.published == spark.published
    table = markdown(rows)
    assert "| etl | 30,000,000 | spark | 3 | 25.00 | 20.00-30.00 | 4.55 | 1.0 GiB |" in table
    assert "| etl | 30,000,000 | ray | 0 (+1 failed) | failed: killed |" in table
    assert to_csv(rows).splitlines()[0].startswith("job,rows,engine,runs,failed,median_s")


def test_groups_are_per_job_and_size():
    rows = summarise(
        [
            _m("duckdb", 1.0, rows=1000),
            _m("spark", 2.0, rows=1000),
            _m("spark", 3.0, rows=2000),
            _m("duckdb", 9.0, job="top-earners"),
        ]
    )
    assert [(r.job, r.rows, r.engine, r.ratio_to_fastest) for r in rows] == [
        ("etl", 1000, "duckdb", 1.0), ("etl", 1000, "spark", 2.0), ("etl", 2000, "spark", 1.0),
        ("top-earners", 30_000_000, "duckdb", 1.0)]  # fmt: skip
    assert rows[0].published == "none published"


def test_a_seed_paper_run_counts_as_its_scripts_job():
    record = RunRecord(id="x", job="seed-paper", params={"script": "top-earners"}, cluster="c",
                       provider="local", status="succeeded", peak_rss_bytes=5)  # fmt: skip
    found = measurement(record, {"rows": 10, "wall_s": 1.5})
    assert (found.job, found.engine, found.rows, found.wall_s) == ("top-earners", "seed-paper",
                                                                   10, 1.5)  # fmt: skip
    record = RunRecord(id="y", job="etl", params={"engine": "ray"}, cluster="c", provider="local",
                       status="failed", error="boom")  # fmt: skip
    found = measurement(record, None, rows=99)
    assert (found.engine, found.rows, found.wall_s, found.error) == ("ray", 99, None, "boom")
