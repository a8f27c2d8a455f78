"""etl's ``--checksum`` without a cluster: the processed rows as each engine writes them
(Ray Data's transform, Spark's INT96 timestamps, DuckDB's TIMESTAMPTZ), read back, give
datagen's checksum of the input, in any order and partitioning; a changed row changes it.
On the cluster (etl and its rerun): tests/jobs/test_rerun.py."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from jobs._storage import ArrowStorage
from jobs.datagen import make_block, rows_checksum
from jobs.etl import output_checksum, to_processed


def _raw(folder: Path) -> tuple[pa.Table, str]:
    """Two blocks of datagen's rows written as its files are; their checksum."""
    blocks = [make_block(b, rows, seed=7, profile="realistic") for b, rows in ((0, 900), (1, 400))]
    total = sum(rows_checksum(columns) for columns in blocks) % 2**64
    table = pa.concat_tables([pa.table(columns) for columns in blocks])
    folder.mkdir()
    pq.write_table(table, folder / "part-00000.parquet")
    return table, f"{total:016x}"


def test_every_engines_output_gives_datagens_checksum(tmp_path: Path):
    raw, want = _raw(tmp_path / "raw")
    storage = ArrowStorage()
    ray = tmp_path / "ray"  # Ray Data's blocks, in another order and partitioning
    ray.mkdir()
    for i, batch in enumerate(reversed(raw.to_batches(max_chunksize=300))):
        pq.write_table(pa.Table.from_batches([to_processed(batch)]), ray / f"{i}_000.parquet")
    assert output_checksum(storage, str(ray)) == want
    spark = tmp_path / "spark"  # Spark's default: INT96 timestamps, and its marker files
    spark.mkdir()
    processed = pa.Table.from_batches([to_processed(b) for b in raw.to_batches()])
    pq.write_table(processed, spark / "part-00000.parquet", use_deprecated_int96_timestamps=True)
    (spark / "_SUCCESS").write_text("")
    (spark / ".part-00000.parquet.crc").write_bytes(b"crc")
    assert output_checksum(storage, str(spark)) == want
    duck = tmp_path / "duckdb"
    duck.mkdir()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # as jobs/_duckdb.py sets it
    con.execute(
        "COPY (SELECT id, name AS full_name, age, salary, CAST(signup_date AS TIMESTAMPTZ) AS "
        f"signup_date, is_active FROM read_parquet('{tmp_path}/raw/*.parquet')) TO "
        f"'{duck}/data.parquet' (FORMAT parquet)"
    )
    assert pq.read_schema(duck / "data.parquet").field("signup_date").type.tz == "UTC"
    assert output_checksum(storage, str(duck)) == want


def test_a_changed_row_changes_the_checksum(tmp_path: Path):
    raw, want = _raw(tmp_path / "raw")
    processed = to_processed(
        pa.Table.from_batches(raw.to_batches()).combine_chunks().to_batches()[0]
    )
    salary = processed.column(processed.schema.get_field_index("salary")).to_pylist()
    salary[17] += 0.01
    changed = processed.set_column(processed.schema.get_field_index("salary"), "salary",
                                   pa.array(salary))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    pq.write_table(pa.Table.from_batches([changed]), out / "part-0.parquet")
    assert output_checksum(ArrowStorage(), str(out)) != want
