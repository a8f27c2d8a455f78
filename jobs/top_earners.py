"""top-earners (query 1): drop duplicates on (full_name, salary), then the top N by salary.

The source project de-duplicated and sorted the whole dataset. Here the work is in the
algorithm, the same on every engine: take the top K rows by (salary descending, id) — Spark's
bounded heap per partition, a top-K per Ray Data block, DuckDB's ``ORDER BY ... LIMIT`` — with
no shuffle and no sort of the dataset; the duplicates are dropped among those, and K grows
until N distinct (full_name, salary) pairs are certain. Rows at the K-th salary may be
incomplete, so only rows strictly above it count; pairs tied with the N-th salary are all
kept. Of duplicate rows, the one with the smallest id is reported.
"""

from __future__ import annotations

from typing import Any

from clusterkit.jobkit import Job, JobContext, Param
from jobs._queries import ENGINE_PARAM, Input, open_query, publish, rows_out
from jobs._storage import OVERWRITE_PARAM

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
    n = int(ctx.params["top"])
    query, out = open_query(ctx, "top-earners", COLUMNS)
    top_k = {"spark": _spark, "ray": _ray, "duckdb": _duckdb}[query.engine]
    k, rounds = max(64, 8 * n), 0
    with ctx.stage("top_k"), query.errors():
        while True:
            rounds += 1
            candidates = top_k(ctx, query, k)
            top = top_distinct(candidates, n, complete=len(candidates) < k)
            if top is not None:
                break
            k *= 8
    with ctx.stage("write"):
        table = publish(query, top, out,
                        f"top {n} earners (distinct full_name, salary):")  # fmt: skip
    return {"rows": query.rows, "rows_out": rows_out(table), "candidates_k": k, "rounds": rounds,
            "input": query.path, "output": out.path}  # fmt: skip


def _spark(ctx: JobContext, query: Input, k: int) -> Any:
    from pyspark.sql import functions as F

    return query.df.orderBy(F.desc("salary"), F.asc("id")).limit(k).toPandas()


ORDER = [("salary", "descending"), ("id", "ascending")]


def block_top_k(batch: Any, *, k: int) -> Any:
    """The top ``k`` rows of one Arrow batch by (salary descending, id) (in Ray workers)."""
    import pyarrow.compute as pc

    return batch.take(pc.select_k_unstable(batch, k, ORDER))


def _ray(ctx: JobContext, query: Input, k: int) -> Any:
    from jobs._ray_data import reduce_blocks

    return reduce_blocks(ctx, query.arrow, query.files, block_top_k, rows=query.rows,
                         k=k).to_pandas()  # fmt: skip


def _duckdb(ctx: JobContext, query: Input, k: int) -> Any:
    from jobs import _duckdb as duck

    sql = f"SELECT * FROM {{source}} ORDER BY salary DESC, id LIMIT {int(k)}"
    return duck.frame(ctx, query.arrow, query.files, sql)


JOB = Job(
    name="top-earners",
    summary="Query 1: drop duplicates on (full_name, salary), top 10 by salary",
    engine="spark",
    main=main,
    params=[
        ENGINE_PARAM,
        Param("top", "int", 10, "how many distinct (full_name, salary) pairs"),
        Param("input", "str", "", "input (default: <storage>/datasets/people-processed)"),
        Param("output", "str", "", "output (default: <storage>/results/top-earners)"),
        OVERWRITE_PARAM,
    ],
)
