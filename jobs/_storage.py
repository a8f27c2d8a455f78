"""Datasets under the storage root, through Hadoop's FileSystem API (Spark's JVM).

The same calls work on a local folder (``file:``) and on HDFS (``hdfs://master:9000/...``),
so the jobs never bake in local paths. Outputs are written to a temporary folder beside the
target and committed by rename: a failed or cancelled job leaves no half-written dataset.
Inputs are checked before any work: the path exists, every Parquet file has Parquet's magic
bytes at both ends (a truncated or foreign file is named), the columns and their types are
the expected ones, and the dataset is not empty.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from jobs._lib import JobInputError

PARQUET_MAGIC = b"PAR1"
META_FILE = "_clusterkit.json"  # Spark's reader skips files that start with "_"

#: Spark type names (DataType.typeName()) accepted for each kind of column.
KINDS: dict[str, tuple[str, ...]] = {
    "integer": ("byte", "short", "integer", "long"),
    "number": ("byte", "short", "integer", "long", "float", "double", "decimal"),
    "string": ("string",),
    "boolean": ("boolean",),
    "date": ("date", "timestamp", "timestamp_ntz", "string"),
    "timestamp": ("timestamp", "timestamp_ntz"),
}


class Storage:
    """File operations on the storage root, for the job's SparkSession."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _path(self, path: str) -> Any:
        return self._jvm.org.apache.hadoop.fs.Path(path)

    def _fs(self, path: str) -> Any:
        return self._path(path).getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        return bool(self._fs(path).exists(self._path(path)))

    def delete(self, path: str) -> None:
        self._fs(path).delete(self._path(path), True)

    def files(self, path: str, suffix: str = ".parquet") -> list[str]:
        """Data files directly in ``path`` (or ``path`` itself if it is a file)."""
        fs = self._fs(path)
        status = fs.getFileStatus(self._path(path))
        if status.isFile():
            return [path]
        return sorted(
            str(s.getPath().toString())
            for s in fs.listStatus(self._path(path))
            if s.isFile() and s.getPath().getName().endswith(suffix)
        )

    def read_bytes(self, path: str, *, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file)."""
        stream = self._fs(path).open(self._path(path))
        try:
            stream.seek(offset)
            return bytes(stream.readNBytes(length))  # Java byte[] -> Python bytes
        finally:
            stream.close()

    def size(self, path: str) -> int:
        return int(self._fs(path).getFileStatus(self._path(path)).getLen())

    def write_text(self, path: str, text: str) -> None:
        out = self._fs(path).create(self._path(path), True)
        try:
            out.write(bytearray(text.encode()))
        finally:
            out.close()

    def read_text(self, path: str) -> str | None:
        if not self.exists(path):
            return None
        return self.read_bytes(path, offset=0, length=self.size(path)).decode()

    def commit(self, tmp: str, final: str) -> None:
        """Replace ``final`` by ``tmp`` (a rename on the same file system)."""
        if self.exists(final):
            self.delete(final)
        if not self._fs(final).rename(self._path(tmp), self._path(final)):
            raise RuntimeError(f"could not rename {tmp} to {final}")

    def metadata(self, dataset: str) -> dict[str, Any]:
        """The dataset's ``_clusterkit.json`` (written by datagen), or {}."""
        text = self.read_text(f"{dataset}/{META_FILE}")
        return json.loads(text) if text else {}


def write_dataset(
    df: Any,
    storage: Storage,
    path: str,
    *,
    run_id: str,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write ``df`` as Parquet to ``path`` via a temporary folder and a rename."""
    tmp = f"{path}.tmp-{run_id}"
    try:
        df.write.mode("overwrite").parquet(tmp)
        if meta is not None:
            storage.write_text(f"{tmp}/{META_FILE}", json.dumps(dict(meta), indent=2))
        storage.commit(tmp, path)
    except BaseException:
        if storage.exists(tmp):
            storage.delete(tmp)
        raise


def check_parquet_files(storage: Storage, path: str, *, made_by: str = "datagen") -> list[str]:
    """Every Parquet file in ``path``, each checked for Parquet's magic bytes at both ends.

    ``made_by`` names the job that makes this input, for the hint when it is missing.
    """
    if not storage.exists(path):
        raise JobInputError(
            f"input {path} does not exist; make it with `clusterkit run {made_by}` or pass --input"
        )
    files = storage.files(path)
    if not files:
        raise JobInputError(f"input {path} holds no .parquet files")
    for file in files:
        size = storage.size(file)
        head = storage.read_bytes(file, offset=0, length=4) if size >= 12 else b""
        tail = storage.read_bytes(file, offset=size - 4, length=4) if size >= 12 else b""
        if head != PARQUET_MAGIC or tail != PARQUET_MAGIC:
            raise JobInputError(
                f"{file} is not a valid Parquet file (truncated or overwritten: "
                f"{size} bytes, no PAR1 marker at {'start' if head != PARQUET_MAGIC else 'end'}); "
                f"regenerate the dataset or remove that file"
            )
    return files


def open_dataset(
    storage: Storage,
    path: str,
    columns: Mapping[str, str],
    *,
    made_by: str = "datagen",
    select: Sequence[str] = (),
) -> tuple[Any, int]:
    """Read ``path`` after checking it; return (DataFrame, row count).

    ``columns`` maps each required column to a kind in KINDS. A missing column, a column of
    the wrong type and an empty dataset are refused with a message naming them.
    """
    check_parquet_files(storage, path, made_by=made_by)
    try:
        df = storage.spark.read.parquet(path)
    except Exception as exc:  # e.g. a type Spark cannot read, such as nanosecond timestamps
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JobInputError(f"{path}: Spark cannot read this dataset's schema: {reason}") from exc
    found = {f.name: f.dataType.typeName() for f in df.schema.fields}
    missing = [c for c in columns if c not in found]
    if missing:
        raise JobInputError(
            f"{path}: missing column(s) {', '.join(missing)}; it has {', '.join(found)}"
        )
    for column, kind in columns.items():
        if found[column] not in KINDS[kind]:
            raise JobInputError(
                f"{path}: column {column} is {found[column]}, expected {kind} "
                f"({' or '.join(KINDS[kind])})"
            )
    rows = df.count()  # answered from Parquet footers, not a scan
    if rows == 0:
        raise JobInputError(f"{path}: the dataset is empty (0 rows)")
    return (df.select(*select) if select else df), rows


_DATA_FILE = re.compile(r"((?:file|hdfs):[^\s,'\"\]]+?\.parquet)")


@contextlib.contextmanager
def raise_input_error_for(dataset: str) -> Iterator[None]:
    """Turn a Spark failure that names one of ``dataset``'s files into a JobInputError."""
    try:
        yield
    except JobInputError:
        raise
    except Exception as exc:
        text = str(exc)
        bare = dataset.split(":", 1)[-1] if dataset.startswith(("file:", "hdfs:")) else dataset
        for match in _DATA_FILE.finditer(text):
            if bare in match.group(1):
                raise JobInputError(
                    f"{match.group(1)} could not be read ({type(exc).__name__}); the file is "
                    f"corrupted: regenerate the dataset or remove that file"
                ) from exc
        raise
