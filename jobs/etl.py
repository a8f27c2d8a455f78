"""etl: the ETL benchmark of the source project, measured honestly.

Reads the people dataset, renames ``name`` to ``full_name``, parses ``signup_date`` to a
timestamp and writes the processed dataset (via a temporary folder and a rename). Stages:
``open`` (check and read the input's footers), ``transform_write`` (the work itself: Spark
is lazy, so reading, transforming and writing happen here) and ``verify`` (rows written).
Memory is sampled by the kit while the work runs (driver, executors: ``peak_rss_by_role``).
"""

from __future__ import annotations

from typing import Any

from jobs._lib import Job, JobContext, Param
from jobs._storage import Storage, open_dataset, raise_input_error_for, write_dataset

RAW_COLUMNS = {
    "id": "integer", "name": "string", "age": "integer", "salary": "number",
    "signup_date": "date", "is_active": "boolean",
}  # fmt: skip


def main(ctx: JobContext) -> dict[str, Any]:
    from pyspark.sql import functions as F

    spark = ctx.spark()
    storage = Storage(spark)
    source = ctx.params["input"] or ctx.storage_path("datasets", "people")
    target = ctx.params["output"] or ctx.storage_path("datasets", "people-processed")
    with ctx.stage("open"):
        df, rows_in = open_dataset(storage, source, RAW_COLUMNS)
    processed = df.withColumnRenamed("name", "full_name").withColumn(
        "signup_date", F.to_timestamp("signup_date")
    )
    meta = {**storage.metadata(source), "source": source, "made_by": "etl"}
    with ctx.stage("transform_write"), ctx.spark_progress(rows_in, "rows"), \
            raise_input_error_for(source):  # fmt: skip
        write_dataset(processed, storage, target, run_id=ctx.run_id, meta=meta)
    with ctx.stage("verify"):
        rows = spark.read.parquet(target).count()
    print(f"etl: {rows} rows, {len(processed.columns)} columns -> {target}")
    return {"rows": rows, "columns": len(processed.columns), "input": source, "output": target}


JOB = Job(
    name="etl",
    summary="ETL benchmark: rename name->full_name, parse signup_date, write Parquet",
    engine="spark",
    main=main,
    params=[
        Param("input", "str", "", "input dataset (default: <storage>/datasets/people)"),
        Param("output", "str", "", "output (default: <storage>/datasets/people-processed)"),
    ],
)
