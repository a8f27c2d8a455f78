"""The source project's query 2: active rows, ordered by age twice, 5 youngest and 5 oldest."""

from typing import Any

from _common import args, timed


def work(spark: Any) -> dict[str, Any]:
    from pyspark.sql.functions import col

    source, target = args()
    active = spark.read.parquet(source).filter(col("is_active") == True)  # noqa: E712
    youngest = active.orderBy(col("age").asc()).limit(5)
    oldest = active.orderBy(col("age").desc()).limit(5)
    both = youngest.union(oldest)
    both.write.mode("overwrite").parquet(target)
    return {"ages": [r["age"] for r in both.collect()]}


timed("seed-paper-query2", work)
