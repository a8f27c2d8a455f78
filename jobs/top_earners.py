"""top-earners (query 1): drop duplicates on (full_name, salary), then the top N by salary.

The source project de-duplicated and sorted the whole dataset. Here the work is in the
algorithm: Spark takes the top K rows by salary (a bounded heap per partition, no shuffle
and no sort of the dataset), the duplicates are dropped among those, and K grows until N
distinct (full_name, salary) pairs are certain. Rows at the K-th salary may be incomplete, so
only rows strictly above it count; pairs tied with the N-th salary are all kept. Of
duplicate rows, the one with the smallest id is reported.
"""

from __future__ import annotations

from typing import Any

from jobs._lib import Job, JobContext, Param
from jobs._queries import open_query, publish, rows_out
from jobs._storage import raise_input_error_for

COLUMNS = {"id": "integer", "full_name": "string", "salary": "number"}


def top_distinct(candidates: Any, n: int, *, complete: bool) -> Any | None:
    """The top ``n`` distinct (full_name, salary) rows from the candidates, ties kept; None if
    the candidates cannot tell yet (then K must grow)."""
    pool = candidates
    if not complete:
        pool = candidates[candidates["salary"] > candidates["salary"].min()]
    ordered = pool.sort_values(["salary", "id"], ascending=[False, True], kind="stable")
    distinct = ordered.drop_duplicates(["full_name", "salary"], keep="first")
    if len(distinct) < n and not complete:
        return None
    if distinct.empty:
        return distinct
    boundary = distinct["salary"].iloc[min(n, len(distinct)) - 1]
    return distinct[distinct["salary"] >= boundary].reset_index(drop=True)


def main(ctx: JobContext) -> dict[str, Any]:
    from pyspark.sql import functions as F

    n = int(ctx.params["top"])
    query = open_query(ctx, "top-earners", COLUMNS)
    df, source = query.df, query.source
    k, rounds = max(64, 8 * n), 0
    with ctx.stage("top_k"), raise_input_error_for(source):
        while True:
            rounds += 1
            candidates = df.orderBy(F.desc("salary"), F.asc("id")).limit(k).toPandas()
            top = top_distinct(candidates, n, complete=len(candidates) < k)
            if top is not None:
                break
            k *= 8
    with ctx.stage("write"):
        publish(ctx, query.storage, top, query.target,
                f"top {n} earners (distinct full_name, salary):")  # fmt: skip
    return {"rows": query.rows, "rows_out": rows_out(top), "candidates_k": k, "rounds": rounds,
            "input": source, "output": query.target}  # fmt: skip


JOB = Job(
    name="top-earners",
    summary="Query 1: drop duplicates on (full_name, salary), top 10 by salary",
    engine="spark",
    main=main,
    params=[
        Param("top", "int", 10, "how many distinct (full_name, salary) pairs"),
        Param("input", "str", "", "input (default: <storage>/datasets/people-processed)"),
        Param("output", "str", "", "output (default: <storage>/results/top-earners)"),
    ],
)
