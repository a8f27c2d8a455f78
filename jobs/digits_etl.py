"""digits-etl: MNIST-format CSV -> Parquet ready for training, on Spark, Ray Data or DuckDB.

The source document's ETL: load the flattened CSV rows, arrange each into an image, scale it.
Reads ``train.csv`` and ``test.csv`` (``datagen-digits``' layout: ``label,pixel0..pixel783``)
and writes ``train/`` and ``test/`` Parquet folders with two columns: ``label`` (int32) and
``image``, a list of exactly 784 float32 values (the 28x28 image row by row), each pixel
``p`` as ``float32(p / 255)`` in [0, 1]. The mean and std of the training pixels are recorded
in the output's ``_clusterkit.json`` (``lenet`` normalises with them).

The three engines write identical data, checked by ``checksum`` (per split, the sum mod
2**64 of a 64-bit hash of each row's label and image bytes: independent of row order and
partitioning). Stages: ``open`` (the CSVs checked row by row: 785 integer columns, labels
0-9, pixels 0-255, a bad row named by file and line), ``transform_write`` (the engine's work:
reading, reshaping, scaling and writing) and ``verify`` (rows, image sizes, checksum, mean
and std, from the written Parquet). The output is written to a temporary folder and renamed
into place; an existing one is replaced only with ``--overwrite``.
"""

from __future__ import annotations

import contextlib
from typing import Any

from clusterkit.jobkit import Job, JobContext, JobInputError, Param
from jobs._digits_csv import (
    COLUMNS,
    PIXELS,
    find_mnist_files,
    read_mnist_csv,
    starts_with_header,
)
from jobs._queries import ENGINE_PARAM
from jobs._storage import (
    OVERWRITE_PARAM,
    ArrowStorage,
    check_output,
    input_path,
    job_output,
    writing,
)

SPLITS = ("train", "test")
SCALE = 255.0


def main(ctx: JobContext) -> dict[str, Any]:
    engine = ctx.params["engine"]
    storage = ArrowStorage()
    source = input_path(ctx, ctx.params["input"], "datasets", "digits-csv", storage=storage)
    out = job_output(ctx, ctx.params["output"], "datasets", "digits")
    with ctx.stage("open"):
        files, rows = _open(storage, source)
    check_output(storage, out)
    meta: dict[str, Any] = {"source": source, "made_by": "digits-etl", "engine": engine,
                            "scale": f"pixel / {SCALE:g}", "pixels": PIXELS}  # fmt: skip
    transform = {"spark": _spark, "ray": _ray, "duckdb": _duckdb}[engine]
    with writing(storage, out, meta=meta) as tmp:
        storage.make_dir(tmp)  # DuckDB makes one folder level, not its parent
        with ctx.stage("transform_write"):
            for number, split in enumerate(SPLITS):
                transform(ctx, storage, files[split], f"{tmp}/{split}")
                ctx.progress(number + 1, len(SPLITS), "splits")
        with ctx.stage("verify"):
            figures = {split: _verify(storage, f"{tmp}/{split}") for split in SPLITS}
        for split in SPLITS:
            if figures[split]["rows"] != rows[split]:
                raise RuntimeError(f"digits-etl wrote {figures[split]['rows']} {split} rows for "
                                   f"{rows[split]} input rows")  # fmt: skip
        meta.update(mean=figures["train"]["mean"], std=figures["train"]["std"],
                    rows={s: figures[s]["rows"] for s in SPLITS})  # fmt: skip
    print(f"digits-etl ({engine}): {rows['train']:,} train + {rows['test']:,} test images "
          f"-> {out.path} (mean {meta['mean']:.4f}, std {meta['std']:.4f})")  # fmt: skip
    return {
        "rows": rows["train"] + rows["test"], "train_rows": rows["train"],
        "test_rows": rows["test"], "mean": meta["mean"], "std": meta["std"],
        "checksum": {s: figures[s]["checksum"] for s in SPLITS},
        "input": source, "output": out.path,
    }  # fmt: skip


def _open(storage: ArrowStorage, folder: str) -> tuple[dict[str, str], dict[str, int]]:
    """(split -> CSV file, split -> rows), every row of both files checked."""
    if not storage.exists(folder):
        raise JobInputError(f"input {folder} does not exist; make it with `clusterkit run "
                            f"datagen-digits` or pass --input")  # fmt: skip
    names = [f.rsplit("/", 1)[-1] for f in storage.files(folder, suffix=".csv")]
    train, test = find_mnist_files(names, folder=folder)
    files = {"train": f"{folder}/{train}", "test": f"{folder}/{test}"}
    rows = {}
    for split, file in files.items():
        fs, local = storage.file_system(file)
        with fs.open_input_stream(local) as stream:
            labels, _ = read_mnist_csv(stream, name=file)
        rows[split] = len(labels)
    return files, rows


def has_header(storage: ArrowStorage, file: str) -> bool:
    """Whether the CSV's first line is a header (the validator's rule: its first field, after a
    byte order mark, is not a number)."""
    return starts_with_header(storage.read_bytes(file, offset=0, length=256))


def _spark(ctx: JobContext, storage: ArrowStorage, file: str, folder: str) -> None:
    """Lines split on commas (no 785-column schema to plan), the header line dropped."""
    from pyspark.sql import functions as F

    spark = ctx.spark()
    spark.conf.set("spark.sql.files.maxPartitionBytes", str(16 * 2**20))  # every core a part
    line = F.regexp_replace(F.regexp_replace(F.col("value"), "\r$", ""), "^\ufeff", "")
    lines = spark.read.text(file).select(line.alias("value")).where(F.length("value") > 0)
    parts = F.split(F.col("value"), ",")
    if has_header(storage, file):  # checked: only the header's first field is not an integer
        lines = lines.where(F.trim(parts[0]).rlike("^-?[0-9]+$"))
    images = lines.select(
        parts[0].cast("int").alias("label"),
        F.transform(F.slice(parts, 2, PIXELS),
                    lambda p: (p.cast("double") / SCALE).cast("float")).alias("image"),
    )  # fmt: skip
    images.write.mode("overwrite").parquet(folder)


def to_images(batch: Any) -> Any:
    """785 integer columns -> (label int32, image list<float32> of 784): in Ray's workers."""
    import numpy as np
    import pyarrow as pa

    pixels = np.column_stack([batch.column(c).to_numpy() for c in COLUMNS[1:]])
    scaled = (pixels.astype(np.float64) / SCALE).astype(np.float32).reshape(-1)
    images = pa.FixedSizeListArray.from_arrays(pa.array(scaled), PIXELS)
    return pa.table({"label": batch.column("label").cast(pa.int32()),
                     "image": images.cast(pa.list_(pa.float32()))})  # fmt: skip


def _csv_options(header: bool) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return {
        "read_options": pacsv.ReadOptions(column_names=COLUMNS, skip_rows=int(header)),
        "convert_options": pacsv.ConvertOptions(column_types=dict.fromkeys(COLUMNS, pa.int32())),
    }


def _ray(ctx: JobContext, storage: ArrowStorage, file: str, folder: str) -> None:
    ctx.ray()
    from ray import data as ray_data

    ray_data.DataContext.get_current().enable_progress_bars = False
    dataset = ray_data.read_csv(storage.uri(file), **_csv_options(has_header(storage, file)))
    dataset.map_batches(to_images, batch_format="pyarrow", batch_size=4096).write_parquet(
        storage.uri(folder)
    )


def _duckdb(ctx: JobContext, storage: ArrowStorage, file: str, folder: str) -> None:
    """DuckDB's CSV reader for a local file (pyarrow's for other storage), one list per row."""
    from jobs import _duckdb as duck

    header = has_header(storage, file)
    pixels = ", ".join(f"CAST(CAST(pixel{i} AS DOUBLE) / {SCALE} AS FLOAT)" for i in range(PIXELS))
    with contextlib.closing(duck.connect(ctx)) as con:
        if duck.is_local(storage, file):
            types = ", ".join(f"'{c}': 'INTEGER'" for c in COLUMNS)
            local = duck.quote(storage.file_system(file)[1])
            scan = (f"read_csv({local}, header = {str(header).lower()}, "
                    f"columns = {{{types}}}, auto_detect = false)")  # fmt: skip
        else:
            import pyarrow.csv as pacsv

            fs, local = storage.file_system(file)
            with fs.open_input_stream(local) as stream:
                con.register("clusterkit_csv", pacsv.read_csv(stream, **_csv_options(header)))
            scan = "clusterkit_csv"
        query = f"SELECT CAST(label AS INTEGER) AS label, [{pixels}] AS image FROM {scan}"
        duck.copy_to(con, query, storage, folder)


def _verify(storage: ArrowStorage, folder: str) -> dict[str, Any]:
    """Rows, checksum, mean and std of a written split; every image 784 values, none null."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows, checksum, total, total_sq, count = 0, 0, 0.0, 0.0, 0
    for file in storage.files(folder):
        fs, local = storage.file_system(file)
        table = pq.read_table(local, filesystem=fs, columns=["label", "image"])
        images = table.column("image").combine_chunks()
        lengths = pc.list_value_length(images).to_numpy(zero_copy_only=False)
        if images.null_count or (
            len(lengths) and (lengths.min() != PIXELS or lengths.max() != PIXELS)
        ):
            raise RuntimeError(f"{file}: an image is not {PIXELS} values")
        pixels = pc.list_flatten(images).to_numpy(zero_copy_only=False).reshape(-1, PIXELS)
        labels = table.column("label").to_numpy()
        checksum = (checksum + rows_checksum(labels, pixels)) % 2**64
        rows += len(labels)
        total += float(pixels.sum(dtype=np.float64))
        total_sq += float(np.square(pixels, dtype=np.float64).sum())
        count += pixels.size
    mean = total / count if count else 0.0
    std = max(total_sq / count - mean**2, 0.0) ** 0.5 if count else 0.0
    return {"rows": rows, "checksum": f"{checksum:016x}", "mean": mean, "std": std}


def rows_checksum(labels: Any, pixels: Any) -> int:
    """Sum (mod 2**64) of a 64-bit hash of each row (its label and its float32 pixels)."""
    import hashlib

    import numpy as np

    data = np.ascontiguousarray(pixels, dtype=np.float32)
    total = 0
    for label, row in zip(labels.tolist(), data, strict=True):
        digest = hashlib.blake2b(row.tobytes(), digest_size=8, key=bytes([int(label)]))
        total += int.from_bytes(digest.digest(), "little")
    return total % 2**64


JOB = Job(
    name="digits-etl",
    summary="Digits ETL: MNIST CSV -> Parquet images scaled to [0, 1] (Spark, Ray or DuckDB)",
    engine="spark",
    main=main,
    params=[
        ENGINE_PARAM,
        Param("input", "str", "", "CSV folder (default: <storage>/datasets/digits-csv)"),
        Param("output", "str", "", "output (default: <storage>/datasets/digits)"),
        OVERWRITE_PARAM,
    ],
)
