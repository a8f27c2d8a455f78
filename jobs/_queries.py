"""What etl and the two queries share: the engine choice, the checked input, the output.

Each of the three runs on Spark (the cluster, the default), on Ray Data (the cluster's Ray)
or on DuckDB (one process on the driver host). Whatever the engine, the input is checked the
same way before any work (files, Parquet magic bytes, columns, not empty), the result rows go
through the same pandas post-processing, and the run's ``result.json`` has the same keys and
the same stages, so runs of different engines compare side by side. Outputs stay inside the
storage root and replace an existing one only with ``--overwrite`` (jobs/_storage.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clusterkit.jobkit import JobContext, Param
from jobs._storage import (
    ArrowStorage,
    Output,
    check_columns,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    open_dataset,
    raise_input_error_for,
    spark_schema,
    write_table,
)

ENGINES = ("spark", "ray", "duckdb")
PROCESSED = "people-processed"
ENGINE_PARAM = Param(
    "engine", "choice", "spark",
    "Spark, Ray Data (both on the cluster) or DuckDB (one process)", ENGINES,
)  # fmt: skip


def query_paths(ctx: JobContext, storage: ArrowStorage, name: str) -> tuple[str, Output]:
    """(input, output): the processed dataset and <storage>/results/NAME unless given (the
    input's checksum read through ``storage``)."""
    source = input_path(ctx, ctx.params["input"], "datasets", PROCESSED, storage=storage)
    return source, job_output(ctx, ctx.params["output"], "results", name)


@dataclass
class Input:
    """A checked input dataset, opened for the run's engine."""

    engine: str
    storage: ArrowStorage
    path: str
    rows: int
    schema: dict[str, str]  # column -> Spark type name
    files: list[str] = field(default_factory=list)  # ray and duckdb
    df: Any = None  # the Spark DataFrame (spark only)

    def errors(self) -> Any:
        """A context that turns a failure reading one of this input's files into a
        JobInputError naming the file (see raise_input_error_for)."""
        if self.files:  # ray and duckdb: the files they read are named
            return raise_input_error_for(self.path, storage=self.storage, files=self.files)
        return raise_input_error_for(self.path)

    @property
    def arrow(self) -> ArrowStorage:
        return self.storage


def open_input(ctx: JobContext, arrow: ArrowStorage, path: str, columns: Mapping[str, str], *,
               made_by: str) -> Input:  # fmt: skip
    """Check ``path`` through ``arrow`` (stage ``open``) for the engine in
    ``ctx.params['engine']``."""
    engine = ctx.params["engine"]
    with ctx.stage("open"):
        if engine == "spark":
            df, rows = open_dataset(arrow, ctx.spark(), path, columns, made_by=made_by)
            return Input(engine, arrow, path, rows, spark_schema(df), df=df)
        dataset = inspect_parquet(arrow, path, made_by=made_by)
        check_columns(dataset.schema, path, columns)
        return Input(engine, arrow, path, dataset.rows, dataset.schema, files=dataset.files)


def open_query(ctx: JobContext, name: str, columns: Mapping[str, str]) -> tuple[Input, Output]:
    """A query's checked input (the processed dataset) and where its result goes, checked
    not to replace what it may not (see check_output)."""
    storage = ArrowStorage()
    source, out = query_paths(ctx, storage, name)
    query = open_input(ctx, storage, source, columns, made_by="etl")
    check_output(query.storage, out)
    return query, out


def result_table(frame: Any) -> Any:
    """A small pandas frame as an Arrow table, timestamps as UTC microseconds whatever the
    engine gave (Spark: naive UTC wall times; DuckDB and Arrow: UTC-aware)."""
    import pyarrow as pa

    frame.attrs = {}  # Spark Connect leaves its plan metrics there: not table metadata
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, column in enumerate(table.schema):
        if pa.types.is_timestamp(column.type):
            table = table.set_column(i, column.name, table[i].cast(pa.timestamp("us", tz="UTC")))
    return table


def rows_out(table: Any) -> list[dict[str, Any]]:
    """An Arrow table's rows, JSON-ready (timestamps as ISO strings)."""
    return [
        {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
        for row in table.to_pylist()
    ]


def publish(query: Input, frame: Any, out: Output, title: str) -> Any:
    """Write the result rows to ``out`` (temp + rename), print them; the Arrow table."""
    table = result_table(frame)
    write_table(query.storage, table, out)
    print(title)
    print(table.to_pandas().to_string(index=False))
    return table
