"""Salaries by age band with PySpark, read from the kit's storage (etl's output).

    clusterkit submit examples/salary_by_age.py [-- --band 10] [--input PATH]

Run `clusterkit run datagen` and `clusterkit run etl` first: this reads
$CLUSTERKIT_STORAGE/datasets/people-processed, which `clusterkit submit` sets (a folder on
this machine locally, hdfs://... on AWS). A plain ``SparkSession.builder.getOrCreate()``
attaches to the cluster's warm Spark Connect server. Prints, per band of ages: the people,
their mean salary and the share of them active.
"""

from __future__ import annotations

import argparse
import os
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--band", type=int, default=10, help="years per age band")
    parser.add_argument("--input", help="a Parquet dataset (default: etl's output)")
    args = parser.parse_args()
    storage = os.environ.get("CLUSTERKIT_STORAGE")
    if args.input is None and not storage:
        sys.exit("CLUSTERKIT_STORAGE is not set: run this with `clusterkit submit`, or give "
                 "--input")  # fmt: skip
    path = args.input or f"{storage}/datasets/people-processed"
    if args.band < 1:
        sys.exit(f"--band {args.band}: give a number of years, 1 or more")

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = SparkSession.builder.appName("salary-by-age").getOrCreate()
    people = spark.read.parquet(path)
    band = (F.floor(F.col("age") / args.band) * args.band).cast("int")
    active = F.avg(F.col("is_active").cast("int")).alias("active")
    table = (
        people.withColumn("band", band)
        .groupBy("band")
        .agg(F.count("*").alias("people"), F.avg("salary").alias("mean_salary"), active)
        .orderBy("band")
    )
    print(f"{'ages':<8}{'people':>10}{'mean salary':>14}{'active':>9}")
    for row in table.collect():
        ages = f"{row['band']}-{row['band'] + args.band - 1}"
        print(f"{ages:<8}{row['people']:>10,}{row['mean_salary']:>14,.2f}{row['active']:>9.1%}")
    spark.stop()


if __name__ == "__main__":
    main()
