"""etl: the ETL benchmark of the source project, on Spark, Ray Data or DuckDB.

Reads the people dataset, renames ``name`` to ``full_name``, makes ``signup_date`` a UTC
timestamp and writes the processed dataset (via a temporary folder and a rename), the other
columns unchanged and in their order. The three engines write the same rows with the same
schema. Stages: ``open`` (check the input's files and columns), ``transform_write`` (the work
itself: reading, transforming and writing happen here) and ``verify`` (rows written, from the
output's Parquet footers). Memory is sampled by the kit while the work runs. An existing
output is replaced only with ``--overwrite`` (see jobs/_storage.py).
"""

from __future__ import annotations

import contextlib
from typing import Any

from clusterkit.jobkit import Job, JobContext, Param
from jobs._queries import ENGINE_PARAM, Input, open_input
from jobs._storage import (
    OVERWRITE_PARAM,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    writing,
)

RAW_COLUMNS = {
    "id": "integer", "name": "string", "age": "integer", "salary": "number",
    "signup_date": "date", "is_active": "boolean",
}  # fmt: skip
RENAMED = {"name": "full_name"}
TIMESTAMP = "signup_date"


def main(ctx: JobContext) -> dict[str, Any]:
    source = input_path(ctx, ctx.params["input"], "datasets", "people")
    out = job_output(ctx, ctx.params["output"], "datasets", "people-processed")
    data = open_input(ctx, source, RAW_COLUMNS, made_by="datagen")
    check_output(data.storage, out)
    meta = {**data.storage.metadata(source), "source": source, "made_by": "etl"}
    transform_write = {"spark": _spark, "ray": _ray, "duckdb": _duckdb}[data.engine]
    with data.errors(), writing(data.storage, out, meta=meta) as tmp:
        with ctx.stage("transform_write"):
            columns = transform_write(ctx, data, tmp)
        with ctx.stage("verify"):
            rows = _rows_written(ctx, data, tmp)
        if rows != data.rows:
            raise RuntimeError(f"etl wrote {rows} rows for {data.rows} input rows")
    print(f"etl ({data.engine}): {rows} rows, {len(columns)} columns -> {out.path}")
    return {"rows": rows, "columns": len(columns), "input": source, "output": out.path}


def output_columns(schema: dict[str, str]) -> list[str]:
    """The processed dataset's columns: the input's, in order, ``name`` renamed."""
    return [RENAMED.get(c, c) for c in schema]


def _rows_written(ctx: JobContext, data: Input, folder: str) -> int:
    if data.engine == "spark":
        return int(ctx.spark().read.parquet(folder).count())  # from the footers
    return inspect_parquet(data.arrow, folder, made_by="etl").rows


def _spark(ctx: JobContext, data: Input, folder: str) -> list[str]:
    from pyspark.sql import functions as F

    processed = data.df.withColumnRenamed("name", RENAMED["name"]).withColumn(
        TIMESTAMP, F.to_timestamp(TIMESTAMP)
    )
    with ctx.spark_progress(data.rows, "rows"):
        processed.write.mode("overwrite").parquet(folder)
    return list(processed.columns)


def to_processed(batch: Any) -> Any:
    """One Arrow batch of raw rows -> processed rows (runs in Ray Data's workers)."""
    import pyarrow as pa

    index = batch.schema.get_field_index(TIMESTAMP)
    dates = batch[TIMESTAMP]
    if pa.types.is_string(dates.type) or pa.types.is_large_string(dates.type):
        dates = dates.cast(pa.timestamp("us"))  # ISO text, read as UTC wall time
    batch = batch.set_column(index, TIMESTAMP, dates.cast(pa.timestamp("us", tz="UTC")))
    for i, field in enumerate(batch.schema):  # Arrow may read strings dictionary-encoded
        if pa.types.is_dictionary(field.type):
            batch = batch.set_column(i, field.name, batch[i].cast(field.type.value_type))
    return batch.rename_columns(output_columns(dict.fromkeys(batch.column_names, "")))


def _ray(ctx: JobContext, data: Input, folder: str) -> list[str]:
    from jobs._ray_data import read_parquet

    dataset = read_parquet(ctx, data.arrow, data.files, rows=data.rows)
    dataset.map_batches(to_processed, batch_format="pyarrow", batch_size=None).write_parquet(
        data.arrow.uri(folder)
    )
    return output_columns(data.schema)


def _duckdb(ctx: JobContext, data: Input, folder: str) -> list[str]:
    from jobs import _duckdb as duck

    select = []
    for column in data.schema:
        value = f'"{column}"'
        if column == TIMESTAMP:
            value = f"CAST({value} AS TIMESTAMPTZ)"
        select.append(f'{value} AS "{RENAMED.get(column, column)}"')
    with contextlib.closing(duck.connect(ctx)) as con:
        query = f"SELECT {', '.join(select)} FROM {duck.scan(con, data.arrow, data.files)}"
        duck.copy_to(con, query, data.arrow, folder)
    return output_columns(data.schema)


JOB = Job(
    name="etl",
    summary="ETL benchmark: rename name->full_name, parse signup_date, write Parquet",
    engine="spark",
    main=main,
    params=[
        ENGINE_PARAM,
        Param("input", "str", "", "input dataset (default: <storage>/datasets/people)"),
        Param("output", "str", "", "output (default: <storage>/datasets/people-processed)"),
        OVERWRITE_PARAM,
    ],
)
