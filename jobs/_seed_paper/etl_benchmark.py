"""The source project's ETL: read, rename name -> full_name, to_timestamp, write, count."""

from typing import Any

from _common import args, timed


def work(spark: Any) -> dict[str, Any]:
    from pyspark.sql.functions import col, to_timestamp

    source, target = args()
    df = spark.read.parquet(source)
    df = df.withColumnRenamed("name", "full_name")
    df = df.withColumn("signup_date", to_timestamp(col("signup_date")))
    df.write.mode("overwrite").parquet(target)
    return {"rows": df.count(), "columns": len(df.columns)}


timed("seed-paper-etl", work)
