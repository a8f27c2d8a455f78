"""The source project's query 1: de-duplicate, sort everything, write it all, show the top 10."""

from typing import Any

from _common import args, timed


def work(spark: Any) -> dict[str, Any]:
    from pyspark.sql.functions import col

    source, target = args()
    df = spark.read.parquet(source)
    top = df.dropDuplicates(["full_name", "salary"]).orderBy(col("salary").desc())
    top.write.mode("overwrite").parquet(target)
    rows = top.limit(10).collect()
    return {"top": [[r["full_name"], r["salary"]] for r in rows]}


timed("seed-paper-query1", work)
