"""DuckDB, the one-machine engine: the job's own process on the driver host, every core.

Local datasets are read and written by DuckDB itself (``read_parquet``, ``COPY``); other
storage (``hdfs://``) goes through pyarrow's file systems: the files are scanned as a pyarrow
dataset (projections and filters pushed down) and results written with pyarrow's Parquet
writer. Timestamps are UTC (``TIMESTAMPTZ``), the type Spark reads as its ``timestamp``.
DuckDB gets the memory of one Spark worker (``CLUSTERKIT_SPARK_EXECUTOR_MEMORY``), not its
default 80% of the machine that the cluster's services share, so neither engine is given more
than the other; it spills what does not fit to a folder inside the run's folder, and does not
keep rows in insertion order (none of these jobs needs it; DuckDB's own advice to avoid
running out of memory when writing large Parquet outputs).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from clusterkit.jobkit import JobContext
from jobs._storage import ArrowStorage


def connect(ctx: JobContext) -> Any:
    """An in-memory DuckDB connection for this run (UTC, no progress bar)."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(f"SET temp_directory = {quote(str(ctx.run_dir / 'duckdb-spill'))}")
    con.execute("SET preserve_insertion_order = false")
    budget = os.environ.get("CLUSTERKIT_SPARK_EXECUTOR_MEMORY", "")
    if budget.lower().endswith("m") and budget[:-1].isdigit():
        con.execute(f"SET memory_limit = '{int(budget[:-1])}MiB'")
    return con


def frame(ctx: JobContext, storage: ArrowStorage, files: Sequence[str], sql: str) -> Any:
    """The result of ``sql`` as a pandas frame, ``{source}`` in it standing for ``files``."""
    with contextlib.closing(connect(ctx)) as con:
        return con.execute(sql.format(source=scan(con, storage, files))).df()


def quote(text: str) -> str:
    """``text`` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def is_local(storage: ArrowStorage, path: str) -> bool:
    return storage.uri(path).startswith("file://")


def scan(
    con: Any, storage: ArrowStorage, files: Sequence[str], *, native: bool | None = None
) -> str:
    """A table expression for SQL reading ``files``: DuckDB's own reader for local files,
    else a pyarrow dataset registered on the connection. ``native`` forces one or the other."""
    if native is None:
        native = all(is_local(storage, f) for f in files)
    if native:
        paths = ", ".join(quote(storage.file_system(f)[1]) for f in files)
        return f"read_parquet([{paths}])"
    import pyarrow.dataset as pads

    fs = storage.file_system(files[0])[0]
    dataset = pads.dataset([storage.file_system(f)[1] for f in files], filesystem=fs,
                           format="parquet")  # fmt: skip
    con.register("clusterkit_input", dataset)
    return "clusterkit_input"


def copy_to(
    con: Any, query: str, storage: ArrowStorage, folder: str, *, native: bool | None = None
) -> int:
    """Write the rows of ``query`` as Parquet files into ``folder``; the number of rows."""
    if native is None:
        native = is_local(storage, folder)
    if native:
        local = storage.file_system(folder)[1]
        copied = con.execute(
            f"COPY ({query}) TO {quote(local)} (FORMAT parquet, PER_THREAD_OUTPUT true)"
        ).fetchone()
        return int(copied[0])
    import pyarrow.parquet as pq

    reader = con.execute(query).fetch_record_batch()
    fs, local = storage.file_system(f"{folder}/part-00000.parquet")
    fs.create_dir(local.rsplit("/", 1)[0], recursive=True)
    rows = 0
    with fs.open_output_stream(local) as out, pq.ParquetWriter(out, reader.schema) as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
