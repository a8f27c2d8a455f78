"""What the two queries share: their input, their output, and how they report rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jobs._lib import JobContext
from jobs._storage import Storage, open_dataset, write_dataset

PROCESSED = "people-processed"


def query_paths(ctx: JobContext, name: str) -> tuple[str, str]:
    """(input, output): the processed dataset and <storage>/results/NAME unless given."""
    source = ctx.params["input"] or ctx.storage_path("datasets", PROCESSED)
    target = ctx.params["output"] or ctx.storage_path("results", name)
    return source, target


@dataclass
class QueryInput:
    storage: Storage
    df: Any  # the checked input DataFrame
    rows: int
    source: str
    target: str


def open_query(ctx: JobContext, name: str, columns: Mapping[str, str]) -> QueryInput:
    """The query's checked input (stage ``open``) and where its result goes."""
    storage = Storage(ctx.spark())
    source, target = query_paths(ctx, name)
    with ctx.stage("open"):
        df, rows = open_dataset(storage, source, columns, made_by="etl")
    return QueryInput(storage, df, rows, source, target)


def rows_out(frame: Any) -> list[dict[str, Any]]:
    """A small pandas frame as JSON-ready rows (timestamps as ISO strings)."""
    out = []
    for record in frame.to_dict(orient="records"):
        out.append(
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in record.items()}
        )
    return out


def publish(ctx: JobContext, storage: Storage, frame: Any, target: str, title: str) -> None:
    """Write the result rows to storage (temp + rename) and print them as a table."""
    spark = storage.spark
    write_dataset(spark.createDataFrame(frame).coalesce(1), storage, target, run_id=ctx.run_id)
    print(title)
    print(frame.to_string(index=False))
