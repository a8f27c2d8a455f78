"""etl: the ETL benchmark of the source project, on Spark, Ray Data or DuckDB.

Reads the people dataset, renames ``name`` to ``full_name``, makes ``signup_date`` a UTC
timestamp and writes the processed dataset (via a temporary folder and a rename), the other
columns unchanged and in their order. The three engines write the same rows with the same
schema. Stages: ``open`` (check the input's files and columns), ``transform_write`` (the work
itself: reading, transforming and writing happen here) and ``verify`` (rows written, from the
output's Parquet footers). Memory is sampled by the kit while the work runs. An existing
output is replaced only with ``--overwrite`` (see jobs/_storage.py).

``--checksum`` adds a stage, ``checksum``, that reads the written rows back with pyarrow and
records ``checksum`` in the result: datagen's row hash (jobs/datagen.py) of every row, with
``full_name`` as the name and ``signup_date`` as its UTC day, summed in any order. So it is
the same for every engine and every partitioning, and equals the input's own ``checksum``
when the input is datagen's and every row came through unchanged. It is off by default: the
pass costs time that a comparison of the engines (``bench``) must not count.
"""

from __future__ import annotations

import contextlib
from typing import Any

from clusterkit.jobkit import Job, JobContext, Param
from jobs._queries import ENGINE_PARAM, Input, open_input
from jobs._storage import (
    OVERWRITE_PARAM,
    ArrowStorage,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    writing,
)
from jobs.datagen import rows_checksum

RAW_COLUMNS = {
    "id": "integer", "name": "string", "age": "integer", "salary": "number",
    "signup_date": "date", "is_active": "boolean",
}  # fmt: skip
RENAMED = {"name": "full_name"}
TIMESTAMP = "signup_date"
#: rows per batch read back by the checksum
CHECKSUM_BATCH_ROWS = 100_000
_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": 86_400_000_000_000}


def main(ctx: JobContext) -> dict[str, Any]:
    storage = ArrowStorage()
    source = input_path(ctx, ctx.params["input"], "datasets", "people", storage=storage)
    out = job_output(ctx, ctx.params["output"], "datasets", "people-processed")
    data = open_input(ctx, storage, source, RAW_COLUMNS, made_by="datagen")
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
        checksum = None
        if ctx.params["checksum"]:
            with ctx.stage("checksum"):
                checksum = output_checksum(data.storage, tmp)
    print(f"etl ({data.engine}): {rows} rows, {len(columns)} columns -> {out.path}")
    result = {"rows": rows, "columns": len(columns), "input": source, "output": out.path}
    if checksum is not None:
        print(f"etl: checksum {checksum}")
        result["checksum"] = checksum
    return result


def output_checksum(storage: ArrowStorage, folder: str) -> str:
    """datagen's checksum of the processed rows in ``folder`` (16 hex digits): ``full_name``
    hashed as the name, ``signup_date`` as its day since 1970-01-01 UTC."""
    import pyarrow.parquet as pq

    total = 0
    names = ["id", RENAMED["name"], "age", "salary", TIMESTAMP, "is_active"]
    for file in storage.files(folder):
        if file.rsplit("/", 1)[-1].startswith(("_", ".")):  # what Spark leaves out
            continue
        fs, local = storage.file_system(file)
        with fs.open_input_file(local) as handle:
            reader = pq.ParquetFile(handle, read_dictionary=[RENAMED["name"]])
            for batch in reader.iter_batches(batch_size=CHECKSUM_BATCH_ROWS, columns=names):
                if batch.num_rows:
                    total = (total + rows_checksum(_as_generated(batch))) % 2**64
    return f"{total:016x}"


def _as_generated(batch: Any) -> dict[str, Any]:
    """A batch of processed rows as datagen's columns (what its ``rows_checksum`` takes)."""
    import numpy as np
    import pyarrow as pa

    def values(name: str) -> Any:
        return batch.column(name).to_numpy(zero_copy_only=False)

    dates = batch.column(TIMESTAMP)
    if pa.types.is_timestamp(dates.type):
        days = np.floor_divide(dates.cast(pa.int64()).to_numpy(zero_copy_only=False),
                               _PER_DAY[dates.type.unit])  # fmt: skip
    else:  # a date
        days = dates.cast(pa.int32()).to_numpy(zero_copy_only=False).astype(np.int64)
    names = batch.column(RENAMED["name"])
    return {"id": values("id"), "name": names, "age": values("age"),
            "salary": values("salary").astype(np.float64), "signup_date": days,
            "is_active": values("is_active")}  # fmt: skip


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
        Param(
            "checksum",
            "bool",
            False,
            "read the rows written back and record their checksum (a pass over the output)",
        ),
    ],
)
