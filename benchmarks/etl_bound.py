"""What bounds the ETL: the same read, transform and write, taken apart on the same data.

    .venv/bin/python benchmarks/etl_bound.py DATASET [--repeats 3]

Spark in local mode on this machine (as the source project ran), session start excluded:
1. scan: read every column and drop the rows (Spark's ``noop`` sink);
2. transform: read, rename, to_timestamp, into the ``noop`` sink;
3. etl: read, rename, to_timestamp, write Parquet (what the ETL job does).
(3) - (2) is what writing Parquet costs; (2) - (1) what the transform costs. Prints medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    spark = SparkSession.builder.master("local[*]").appName("etl-bound").getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    out = tempfile.mkdtemp(prefix="etl-bound-")

    def frame(transform: bool) -> Any:
        df = spark.read.parquet(args.dataset)
        if transform:
            df = df.withColumnRenamed("name", "full_name").withColumn(
                "signup_date", F.to_timestamp("signup_date")
            )
        return df

    steps = {
        "scan": lambda: frame(False).write.format("noop").mode("overwrite").save(),
        "transform": lambda: frame(True).write.format("noop").mode("overwrite").save(),
        "etl": lambda: frame(True).write.mode("overwrite").parquet(out),
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    steps["scan"]()  # warm-up: JIT and page cache
    for _ in range(args.repeats):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - started)
    med = {name: statistics.median(values) for name, values in times.items()}
    for name in steps:
        print(f"{name:<10} median {med[name]:6.2f} s  {[round(t, 2) for t in times[name]]}")
    print(
        f"writing Parquet: {med['etl'] - med['transform']:.2f} s of {med['etl']:.2f} s "
        f"({100 * (med['etl'] - med['transform']) / med['etl']:.0f}%); "
        f"transform: {med['transform'] - med['scan']:.2f} s; scan: {med['scan']:.2f} s"
    )
    spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
