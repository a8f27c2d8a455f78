"""Datasets under the storage root, through pyarrow's file systems (:class:`ArrowStorage`).

The same calls work on a local folder (``file:``) and on HDFS (``hdfs://master:9000/...``,
through libhdfs on the node), whichever engine does the work (a Spark session attached to the
cluster's Spark Connect server has no JVM of its own to reach Hadoop's FileSystem through),
so the jobs never bake in local paths.

Outputs (:class:`Output`, :func:`job_output`) lie inside the storage root: a relative path is
taken from the root, and an absolute path or a URL that leaves it (``..`` included) is
refused. An output is written to a temporary folder beside the target and committed by
renames (:func:`writing`): a failed or cancelled job leaves no half-written dataset, a full
disk fails the run with ``no space left on PATH``, and what was there before is replaced only
when the kit made it (its ``_clusterkit.json`` marker) and the run was given ``--overwrite``.
Inputs are checked before any work: the path exists, every Parquet file has Parquet's magic
bytes at both ends (a truncated or foreign file is named), the columns and their types are
the expected ones, and the dataset is not empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from clusterkit.jobkit import (
    JobContext,
    JobFailed,
    JobInputError,
    NoSpaceLeft,
    Param,
    is_no_space,
)

PARQUET_MAGIC = b"PAR1"
#: The marker of every output the kit commits (its metadata: run, job, time and the job's own
#: figures). Spark's reader skips files that start with "_".
META_FILE = "_clusterkit.json"
OVERWRITE_PARAM = Param(
    "overwrite", "bool", False,
    f"replace an existing output (only one the kit made: it holds {META_FILE})",
)  # fmt: skip

#: Spark type names (DataType.typeName()) accepted for each kind of column.
KINDS: dict[str, tuple[str, ...]] = {
    "integer": ("byte", "short", "integer", "long"),
    "number": ("byte", "short", "integer", "long", "float", "double", "decimal"),
    "string": ("string",),
    "boolean": ("boolean",),
    "date": ("date", "timestamp", "timestamp_ntz", "string"),
    "timestamp": ("timestamp", "timestamp_ntz"),
}


class FileStore(ABC):
    """File operations on the storage root (:class:`ArrowStorage`, and the fakes of tests):
    subclasses give the primitives; the rest is built on them here, once."""

    @abstractmethod
    def exists(self, path: str) -> bool: ...
    @abstractmethod
    def delete(self, path: str) -> None: ...
    @abstractmethod
    def files(self, path: str, suffix: str = ".parquet") -> list[str]:
        """Data files directly in ``path`` (or ``path`` itself if it is a file)."""

    @abstractmethod
    def read_bytes(self, path: str, *, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer at the end of the file)."""

    @abstractmethod
    def size(self, path: str) -> int: ...
    @abstractmethod
    def write_bytes(self, path: str, data: bytes) -> None:
        """Create (or replace) ``path`` holding ``data``."""

    @abstractmethod
    def list_dirs(self, path: str) -> list[str]:
        """Names of the folders directly in ``path`` ([] if it does not exist)."""

    @abstractmethod
    def rename(self, source: str, target: str) -> bool:
        """Rename ``source`` to ``target``; False if ``target`` exists (nothing replaced)."""

    def write_text(self, path: str, text: str) -> None:
        self.write_bytes(path, text.encode())

    def read_all(self, path: str) -> bytes:
        """The whole file (for small artifacts such as a model, not for datasets)."""
        return self.read_bytes(path, offset=0, length=self.size(path))

    def read_text(self, path: str) -> str | None:
        return self.read_all(path).decode() if self.exists(path) else None

    def commit(self, tmp: str, final: str, *, run_id: str) -> None:
        """Put ``tmp`` in ``final``'s place by renames on one file system: what is at
        ``final`` goes aside (:func:`aside_path`), ``tmp`` is renamed to ``final``, and only
        then is the old copy deleted. If that second rename fails, the old copy is renamed
        back, so no failure loses both. Whether ``final`` may be replaced is the caller's
        check (:func:`check_output`)."""
        aside = aside_path(final, run_id)
        replacing = self.exists(final)
        if replacing:
            self.move(final, aside)
        try:
            self.move(tmp, final)
        except BaseException as exc:
            if replacing:
                self._restore(aside, final, exc)
            raise
        if replacing:
            try:
                self.delete(aside)
            except Exception as exc:  # committed all the same: say what is left over
                print(f"warning: {final} is committed, but its previous copy {aside} could "
                      f"not be deleted ({exc}); delete it by hand", file=sys.stderr)  # fmt: skip

    def move(self, source: str, target: str) -> None:
        """Rename ``source`` to ``target``, which must not exist (RuntimeError if it does)."""
        if not self.rename(source, target):
            raise RuntimeError(f"could not rename {source} to {target}: {target} exists; "
                               f"remove it or choose another output")  # fmt: skip

    def _restore(self, aside: str, final: str, cause: BaseException) -> None:
        """Rename the previous copy back after a failed commit; if even that fails, the
        error says where the previous copy is."""
        try:
            self.move(aside, final)
        except Exception as exc:
            raise RuntimeError(
                f"could not commit {final} ({cause}) nor put its previous copy back ({exc}): "
                f"the previous copy is {aside}; rename it to {final}"
            ) from cause

    def metadata(self, dataset: str) -> dict[str, Any]:
        """The dataset's ``_clusterkit.json`` (written by the job that made it), or {}."""
        text = self.read_text(f"{dataset}/{META_FILE}")
        return json.loads(text) if text else {}


def aside_path(final: str, run_id: str) -> str:
    """Where a commit keeps ``final``'s previous copy until the new one is in place: a hidden
    sibling, ``.NAME.old-RUNID`` (the engines' readers skip names starting with ".")."""
    parent, _, name = final.rpartition("/")
    return f"{parent}/.{name}.old-{run_id}"


@dataclass(frozen=True)
class Output:
    """Where a run writes one output: ``path`` (inside the storage root), whether it may
    replace an output the kit made there (``--overwrite``), the run and job its marker
    records, and the parameter that chose the path (named in errors)."""

    path: str
    run_id: str
    job: str
    overwrite: bool = False
    param: str = "--output"


def split_root(path: str) -> tuple[str, str]:
    """(file system, path in it) of a storage path: ``('hdfs://master:9000', '/clusterkit')``,
    or ``('', '/data')`` for a local path (with or without ``file://``)."""
    if path.startswith("file://"):
        return "", path.removeprefix("file://")
    if "://" in path:
        parsed = urlparse(path)
        return f"{parsed.scheme}://{parsed.netloc}", parsed.path or "/"
    return "", path


def _strictly_inside(path: str, root: str) -> bool:
    return path != root and path.startswith(root.rstrip("/") + "/")


def output_path(root: str, value: str, *, param: str) -> str:
    """``value`` as a normalised path strictly inside the storage root ``root``: a relative
    path is taken from the root; an absolute path or a URL must lie under the root once
    ``..`` (and, on a local root, symbolic links) are resolved. JobInputError naming
    ``param`` and the root otherwise."""
    root_fs, root_dir = split_root(root)
    root_dir = posixpath.normpath(root_dir)
    fs, path = split_root(value) if "://" in value else (root_fs, value)
    if not path.startswith("/"):
        path = f"{root_dir}/{path}"
    path = posixpath.normpath(path)
    inside = fs == root_fs and _strictly_inside(path, root_dir)
    if inside and not fs:  # a local root: where the path really leads
        inside = _strictly_inside(os.path.realpath(path), os.path.realpath(root_dir))
    if not inside:
        raise JobInputError(
            f"{param} {value!r} is outside the storage root {root}: give a path inside it "
            f"(a relative path is taken from the root, e.g. results/mine)"
        )
    return f"{'file://' if root.startswith('file://') else root_fs}{path}"


def job_output(ctx: JobContext, value: str, *default: str, param: str = "--output") -> Output:
    """The output ``value`` names (see :func:`output_path`), else ``<root>/<default...>``,
    replaceable when the run has ``--overwrite``; JobInputError if it leaves the root."""
    path = output_path(ctx.storage_root, value or "/".join(default), param=param)
    return Output(path, ctx.run_id, ctx.job.name, bool(ctx.params.get("overwrite")), param)


def input_path(ctx: JobContext, value: str, *default: str, storage: FileStore) -> str:
    """The input ``value`` names (a relative path is taken from the storage root, as an
    output's is), else ``<root>/<default...>``; named in the run's record with the checksum
    its writer recorded in its ``_clusterkit.json`` (:meth:`JobContext.record_input`), read
    through ``storage``: the job's own (on HDFS, its one connection)."""
    if not value:
        path = ctx.storage_path(*default)
    else:
        path = value if "://" in value or value.startswith("/") else ctx.storage_path(value)
    ctx.record_input(path, recorded_checksum(storage, path))
    return path


def recorded_checksum(storage: FileStore, dataset: str) -> Any:
    """The ``checksum`` in ``dataset``'s ``_clusterkit.json`` (datagen's, which etl's output
    carries on), or None: none recorded, no such file, or one that is not a JSON object (the
    input's own checks, which come next, say what is wrong with the dataset). Any other
    failure (the file system's: a connection, a permission) is said on stderr with the path
    and the checksum left out: it must not fail the job before its own checks."""
    try:
        meta = storage.metadata(dataset)
    except (FileNotFoundError, ValueError):  # gone since, or not JSON (nor UTF-8)
        return None
    except Exception as exc:
        print(f"warning: could not read {dataset}/{META_FILE} ({type(exc).__name__}: {exc}); "
              "the run's record names its input without a checksum", file=sys.stderr)  # fmt: skip
        return None
    return meta.get("checksum") if isinstance(meta, dict) else None


def check_output(storage: FileStore, out: Output) -> None:
    """Refuse (JobInputError) to write ``out`` over what is there: anything without
    ``--overwrite``; with it, anything the kit did not make (no ``_clusterkit.json``)."""
    if not storage.exists(out.path):
        return
    if not out.overwrite:
        raise JobInputError(
            f"{out.path} exists: pass --overwrite to replace it (or choose another {out.param})"
        )
    if not storage.exists(f"{out.path}/{META_FILE}"):
        raise JobInputError(
            f"{out.path} exists and was not made by clusterkit (it holds no {META_FILE}), so "
            f"--overwrite does not replace it: remove it yourself or choose another {out.param}"
        )


def marker(*, run_id: str, job: str, meta: Mapping[str, Any] | None = None) -> str:
    """The text of an output's ``_clusterkit.json``: ``meta`` and the run, job and time."""
    written = datetime.now(UTC).isoformat(timespec="seconds")
    return json.dumps({**(meta or {}), "run_id": run_id, "job": job, "written": written},
                      indent=2)  # fmt: skip


@contextlib.contextmanager
def writing(
    storage: FileStore,
    out: Output,
    *,
    meta: Mapping[str, Any] | None = None,
    stage: AbstractContextManager[Any] | None = None,
) -> Iterator[str]:
    """Yield a temporary folder beside ``out.path`` to write into.

    When the block ends without an error, the marker (``meta``, read then, with the run, the
    job and the time) goes into the folder, :func:`check_output` is asked again, and the
    folder replaces ``out.path`` (:meth:`FileStore.commit`), timed by ``stage`` if given
    (e.g. ``ctx.stage("commit")``). On any error (a cancel included) the temporary folder is
    deleted and ``out.path`` left as it was; a full disk is raised as NoSpaceLeft naming
    ``out.path``.
    """
    tmp = f"{out.path}.tmp-{out.run_id}"
    try:
        yield tmp
        with stage or contextlib.nullcontext():
            storage.write_text(f"{tmp}/{META_FILE}", marker(run_id=out.run_id, job=out.job,
                                                            meta=meta))  # fmt: skip
            check_output(storage, out)
            storage.commit(tmp, out.path, run_id=out.run_id)
    except Exception as exc:
        if is_no_space(exc) and not isinstance(exc, NoSpaceLeft):
            raise NoSpaceLeft(out.path) from exc
        raise
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)


def write_table(storage: FileStore, table: Any, out: Output) -> None:
    """Write a small Arrow table as one Parquet file in the folder ``out`` (temp + rename),
    through any engine's storage: how the queries publish their few result rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, coerce_timestamps="us")
    with writing(storage, out) as tmp:
        storage.write_bytes(f"{tmp}/part-00000.parquet", buffer.getvalue().to_pybytes())


def check_parquet_files(storage: FileStore, path: str, *, made_by: str = "datagen") -> list[str]:
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
    storage: FileStore,
    spark: Any,
    path: str,
    columns: Mapping[str, str],
    *,
    made_by: str = "datagen",
    select: Sequence[str] = (),
) -> tuple[Any, int]:
    """Read ``path`` with ``spark`` after checking it; return (DataFrame, row count).

    ``columns`` maps each required column to a kind in KINDS. A missing column, a column of
    the wrong type and an empty dataset are refused with a message naming them.
    """
    files = check_parquet_files(storage, path, made_by=made_by)
    try:  # the schema read here: a Spark Connect session reads it only when asked
        df = spark.read.parquet(path)
        schema = spark_schema(df)
    except Exception as exc:  # e.g. a type Spark cannot read, such as nanosecond timestamps
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise JobInputError(f"{path}: Spark cannot read this dataset's schema: {reason}") from exc
    check_columns(schema, path, columns)
    rows = footer_rows(storage, files)
    if rows is None:
        rows = int(df.count())  # Spark answers it from the footers too, as a job
    if rows == 0:
        raise JobInputError(f"{path}: the dataset is empty (0 rows)")
    return (df.select(*select) if select else df), rows


def spark_schema(df: Any) -> dict[str, str]:
    """Column -> Spark type name (as KINDS lists them) of a DataFrame."""
    return {f.name: f.dataType.typeName() for f in df.schema.fields}


def check_columns(
    found: Mapping[str, str], path: str, columns: Mapping[str, str], *, needed_by: str = ""
) -> None:
    """Refuse a schema (column -> Spark type name) that lacks one of ``columns`` or has one
    of the wrong kind."""
    missing = [c for c in columns if c not in found]
    if missing:
        raise JobInputError(
            f"{path}: missing column(s) {', '.join(missing)}{needed_by}; it has {', '.join(found)}"
        )
    for column, kind in columns.items():
        if found[column] not in KINDS[kind]:
            raise JobInputError(
                f"{path}: column {column} is {found[column]}, expected {kind} "
                f"({' or '.join(KINDS[kind])})"
            )


@contextlib.contextmanager
def raise_input_error_for(
    dataset: str, *, storage: ArrowStorage | None = None, files: Sequence[str] = ()
) -> Iterator[None]:
    """Turn an engine's failure that names one of ``dataset``'s files (Spark names them as
    ``file:``/``hdfs:`` URIs, DuckDB and Arrow as paths) into a JobInputError. A failure that
    names none (Ray Data's) is traced, when ``storage`` and ``files`` are given, by reading
    each file through once: the first unreadable one is named."""
    try:
        yield
    except (JobInputError, JobFailed):  # already named (a full disk is a JobFailed)
        raise
    except Exception as exc:
        bare = dataset.split(":", 1)[-1] if dataset.startswith(("file:", "hdfs:")) else dataset
        bare = bare.removeprefix("//") if dataset.startswith("file:") else bare
        named = _named_file(bare).search(str(exc))
        culprit = (named.group(1), type(exc).__name__) if named else None
        if culprit is None and storage is not None:
            culprit = unreadable_file(storage, files)
        if culprit is not None:
            raise JobInputError(
                f"{culprit[0]} could not be read ({culprit[1]}); the file is corrupted: "
                f"regenerate the dataset or remove that file"
            ) from exc
        raise


def _named_file(folder: str) -> re.Pattern[str]:
    """A Parquet file of ``folder`` as an engine's message names it (with a ``file:`` or
    ``hdfs:`` scheme from Spark, a bare path from DuckDB and Arrow)."""
    unquoted = r"[^\s,'\"\]]"
    return re.compile(rf"({unquoted}*{re.escape(folder)}/{unquoted}+?\.parquet)")


def unreadable_file(storage: ArrowStorage, files: Sequence[str]) -> tuple[str, str] | None:
    """(file, reason) of the first of ``files`` that pyarrow cannot read through, or None."""
    import pyarrow.parquet as pq

    for file in files:
        fs, local = storage.file_system(file)
        try:
            with fs.open_input_file(local) as handle:
                for _ in pq.ParquetFile(handle).iter_batches(batch_size=65_536):
                    pass
        except Exception as exc:
            return file, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    return None


def footer_rows(storage: FileStore, files: Sequence[str]) -> int | None:
    """The rows of ``files`` as their Parquet footers say (no Spark job: a warm run's first
    query is its own), or None when ``storage`` cannot open them as pyarrow files."""
    if not isinstance(storage, ArrowStorage):
        return None
    import pyarrow.parquet as pq

    total = 0
    for file in files:
        if file.rsplit("/", 1)[-1].startswith(("_", ".")):  # what Spark leaves out
            continue
        fs, local = storage.file_system(file)
        try:
            with fs.open_input_file(local) as stream:
                total += pq.ParquetFile(stream).metadata.num_rows
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            why = f"{type(exc).__name__}: {first}"
            raise JobInputError(f"{file} could not be read as Parquet ({why}); regenerate the "
                                "dataset or remove that file") from exc  # fmt: skip
    return total


class ArrowStorage(FileStore):
    """The storage root's file operations through pyarrow's file systems (local folders;
    hdfs:// needs libhdfs on the node)."""

    def __init__(self) -> None:
        self._systems: dict[str, Any] = {}

    def file_system(self, path: str) -> tuple[Any, str]:
        """(the pyarrow FileSystem, the path within it) of ``path``."""
        import pyarrow.fs as pafs

        uri = self.uri(path)
        parsed = urlparse(uri)
        system = f"{parsed.scheme}://{parsed.netloc}"
        if system not in self._systems:  # one connection per file system (HDFS connects)
            self._systems[system] = pafs.FileSystem.from_uri(uri)[0]
        return self._systems[system], parsed.path

    def _info(self, path: str) -> Any:
        fs, local = self.file_system(path)
        return fs.get_file_info(local)

    def uri(self, path: str) -> str:
        """``path`` as a URI for pyarrow and Ray Data (``file://`` for a local path)."""
        return path if "://" in path else f"file://{path}"

    def exists(self, path: str) -> bool:
        import pyarrow.fs as pafs

        return bool(self._info(path).type != pafs.FileType.NotFound)

    def delete(self, path: str) -> None:
        import pyarrow.fs as pafs

        fs, local = self.file_system(path)
        kind = fs.get_file_info(local).type
        if kind == pafs.FileType.Directory:
            fs.delete_dir(local)
        elif kind == pafs.FileType.File:
            fs.delete_file(local)

    def files(self, path: str, suffix: str = ".parquet") -> list[str]:
        import pyarrow.fs as pafs

        fs, local = self.file_system(path)
        if fs.get_file_info(local).type == pafs.FileType.File:
            return [path]
        prefix = path[: len(path) - len(local)] if path.endswith(local) else ""
        infos = fs.get_file_info(pafs.FileSelector(local))
        return sorted(prefix + i.path for i in infos
                      if i.type == pafs.FileType.File and i.base_name.endswith(suffix))  # fmt: skip

    def read_bytes(self, path: str, *, offset: int, length: int) -> bytes:
        fs, local = self.file_system(path)
        with fs.open_input_file(local) as stream:
            stream.seek(offset)
            return bytes(stream.read(length))

    def size(self, path: str) -> int:
        return int(self._info(path).size)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Create (or replace) ``path`` holding ``data``; missing parent folders are made."""
        fs, local = self.file_system(path)
        fs.create_dir(local.rsplit("/", 1)[0] or "/", recursive=True)
        with fs.open_output_stream(local) as out:
            out.write(data)

    def make_dir(self, path: str) -> None:
        """Create the folder ``path`` and its missing parents (nothing if it exists)."""
        fs, local = self.file_system(path)
        fs.create_dir(local, recursive=True)

    def list_dirs(self, path: str) -> list[str]:
        import pyarrow.fs as pafs

        if not self.exists(path):
            return []
        fs, local = self.file_system(path)
        infos = fs.get_file_info(pafs.FileSelector(local))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)

    def rename(self, source: str, target: str) -> bool:
        if self.exists(target):
            return False
        fs, local = self.file_system(source)
        fs.move(local, self.file_system(target)[1])
        return True


def arrow_kind(arrow_type: Any) -> str:
    """The Spark type name (as KINDS lists them) of an Arrow type."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    checks = [
        (pa.types.is_boolean, "boolean"), (pa.types.is_integer, "long"),
        (pa.types.is_floating, "double"), (pa.types.is_decimal, "decimal"),
        (lambda x: pa.types.is_string(x) or pa.types.is_large_string(x), "string"),
        (pa.types.is_date, "date"), (pa.types.is_timestamp, "timestamp"),
    ]  # fmt: skip
    return next((name for check, name in checks if check(t)), str(t))


@dataclass
class ArrowDataset:
    """A checked Parquet dataset read without Spark: its files, schema and row count."""

    path: str
    files: list[str]
    schema: dict[str, str]  # column -> Spark type name
    rows: int


def inspect_parquet(storage: ArrowStorage, path: str, *, made_by: str = "datagen") -> ArrowDataset:
    """Check ``path`` like :func:`open_dataset` does (files, magic bytes, schema, not empty),
    from the Parquet footers alone."""
    import pyarrow.parquet as pq

    files = check_parquet_files(storage, path, made_by=made_by)
    schema: dict[str, str] | None = None
    rows = 0
    for file in files:
        fs, local = storage.file_system(file)
        try:
            with fs.open_input_file(local) as handle:
                meta = pq.ParquetFile(handle).metadata
                file_schema = meta.schema.to_arrow_schema()
        except Exception as exc:
            raise JobInputError(f"{file}: not a readable Parquet file ({exc})") from exc
        kinds = {f.name: arrow_kind(f.type) for f in file_schema}
        if schema is None:
            schema = kinds
        elif kinds != schema:
            raise JobInputError(f"{file}: its columns differ from the other files of {path}")
        rows += meta.num_rows
    if rows == 0:
        raise JobInputError(f"{path}: the dataset is empty (0 rows)")
    return ArrowDataset(path, files, schema or {}, rows)
