"""age-extremes (query 2): among active rows, the N youngest and the N oldest.

One scan, no sort: each partition keeps its N youngest and N oldest candidates with Arrow's
``select_k`` as the batches stream by, and the driver picks the final rows from those few.
Ties are broken by id: youngest by (age, id), oldest by (age descending, id).
"""

from __future__ import annotations

from typing import Any

from jobs._lib import Job, JobContext, Param
from jobs._queries import publish, query_paths, rows_out
from jobs._storage import Storage, open_dataset, raise_input_error_for

COLUMNS = {"id": "integer", "full_name": "string", "age": "integer", "is_active": "boolean"}
YOUNGEST = [("age", "ascending"), ("id", "ascending")]
OLDEST = [("age", "descending"), ("id", "ascending")]


def partition_extremes(n: int) -> Any:
    """A mapInArrow function: per partition, the n youngest and n oldest rows."""

    def extremes(batches: Any) -> Any:
        import pyarrow as pa
        import pyarrow.compute as pc

        young: Any = None
        old: Any = None
        for batch in batches:
            table = pa.Table.from_batches([batch])
            young = table if young is None else pa.concat_tables([young, table])
            old = table if old is None else pa.concat_tables([old, table])
            young = young.take(pc.select_k_unstable(young, k=n, sort_keys=YOUNGEST))
            old = old.take(pc.select_k_unstable(old, k=n, sort_keys=OLDEST))
        for kept in (young, old):
            if kept is not None:
                yield from kept.to_batches()

    return extremes


def main(ctx: JobContext) -> dict[str, Any]:
    from pyspark.sql import functions as F

    n = int(ctx.params["count"])
    spark = ctx.spark()
    storage = Storage(spark)
    source, target = query_paths(ctx, "age-extremes")
    with ctx.stage("open"):
        df, rows = open_dataset(storage, source, COLUMNS, made_by="etl")
    active = df.filter(F.col("is_active"))
    with ctx.stage("scan"), raise_input_error_for(source):
        candidates = active.mapInArrow(partition_extremes(n), active.schema).toPandas()
    youngest = candidates.sort_values(["age", "id"], kind="stable").head(n)
    oldest = candidates.sort_values(["age", "id"], ascending=[False, True], kind="stable").head(n)
    youngest.insert(0, "extreme", "youngest")
    oldest.insert(0, "extreme", "oldest")
    import pandas as pd

    result = pd.concat([youngest, oldest], ignore_index=True)
    with ctx.stage("write"):
        publish(ctx, storage, result, target, f"the {n} youngest and {n} oldest active rows:")
    return {"rows": rows, "rows_out": rows_out(result), "input": source, "output": target}


JOB = Job(
    name="age-extremes",
    summary="Query 2: active rows only, the 5 youngest and the 5 oldest",
    engine="spark",
    main=main,
    params=[
        Param("count", "int", 5, "how many youngest and oldest rows"),
        Param("input", "str", "", "input (default: <storage>/datasets/people-processed)"),
        Param("output", "str", "", "output (default: <storage>/results/age-extremes)"),
    ],
)
