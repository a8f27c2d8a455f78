"""The DuckDB engine's two storage paths (its own reader/writer for local folders, pyarrow's
file systems for hdfs://) give the same rows; checked here on local files, no cluster."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from clusterkit.jobkit import Job, JobContext
from jobs import _duckdb as duck
from jobs._storage import ArrowStorage


def _ctx(tmp_path: Path) -> JobContext:
    job = Job(name="t", summary="", engine="duckdb", main=lambda ctx: {})
    return JobContext(job=job, params={}, run_id="t", run_dir=tmp_path, storage_root=str(tmp_path))


def test_native_and_arrow_paths_agree(tmp_path: Path):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(3):
        table = pa.table({"id": list(range(i * 1000, (i + 1) * 1000)),
                          "x": [float(v) * 0.5 for v in range(1000)]})  # fmt: skip
        pq.write_table(table, source / f"part-{i}.parquet")
    storage = ArrowStorage()
    files = storage.files(str(source))
    con = duck.connect(_ctx(tmp_path))
    query = "SELECT id, x * 2 AS y FROM {src} WHERE id % 7 = 0"
    written = {}
    for native in (True, False):
        src = duck.scan(con, storage, files, native=native)
        folder = str(tmp_path / f"out-{native}")
        rows = duck.copy_to(con, query.format(src=src), storage, folder, native=native)
        written[native] = pq.ParquetDataset(folder).read().sort_by("id")
        assert rows == written[native].num_rows == len(range(0, 3000, 7))
    assert written[True].equals(written[False])
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchone() == (False,)
