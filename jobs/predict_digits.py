"""predict-digits: classify images with a trained LeNet-5, distributed with Ray Data.

``--model`` is ``NAME`` (its latest version), ``NAME:vN`` or a model folder made by
``lenet``. ``--input`` is either

- Parquet in ``digits-etl``'s layout (``image``: 784 floats in [0, 1], ``label`` optional;
  the default is ``<storage>/datasets/digits/test``), or
- a CSV file in MNIST's layout (``label,pixel0..pixel783``, pixels 0-255, with or without a
  header; or a folder holding ``mnist_test.csv`` or ``test.csv``), checked row by row first:
  a bad row is named by file and line.

The weights are put in Ray's object store once; each Ray worker loads them once and
classifies Arrow batches of BATCH_ROWS images (``map_batches``). The output
(``<storage>/predictions/NAME-vN`` unless ``--output``) holds ``predicted`` (the digit),
``confidence`` (its softmax probability), ``label`` when the input has it, and ``row`` (the
row's place in a CSV input), in the input's order (Ray Data's ``preserve_order``: for
a Parquet input, its files in name order and their rows in order). Labels of a Parquet
input are checked first (no nulls, digits 0-9). It is written to a temporary folder and
renamed into place (an existing output is replaced only with ``--overwrite``). Stages:
``load_model``, ``open``, ``predict_write``, ``verify`` (rows from the written footers;
with labels, ``accuracy`` and the confusion matrix). ``rows_per_s`` is rows over the job's
whole wall time; ``predict_rows_per_s`` over ``predict_write`` alone.
"""

from __future__ import annotations

from typing import Any

from clusterkit.jobkit import Job, JobContext, JobInputError, Param
from jobs import _lenet
from jobs._digits_csv import read_mnist_csv
from jobs._model import load_model, resolve_model
from jobs._storage import (
    KINDS,
    OVERWRITE_PARAM,
    ArrowStorage,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    writing,
)

BATCH_ROWS = 4096
#: the test file of a folder of MNIST CSVs, in the order looked for
TEST_FILES = ("mnist_test.csv", "test.csv")
_LOADED: dict[str, Any] = {}  # model key -> the model, once per Ray worker process


def classify_batch(batch: Any, *, model: Any, key: str) -> Any:
    """An Arrow batch with ``image`` (and maybe ``label``, ``row``) -> its predictions (runs
    in Ray's workers); ``model`` is the ObjectRef of the weights, loaded once a process."""
    import pyarrow as pa
    import ray
    import torch

    network = _LOADED.get(key)
    if network is None:
        torch.set_num_threads(1)
        network = _LOADED[key] = _lenet.from_bytes(ray.get(model))
    predicted, confidence = _lenet.predict(network, _lenet.images_of(batch))
    out = {"predicted": pa.array(predicted.astype("int32")),
           "confidence": pa.array(confidence, pa.float32())}  # fmt: skip
    for column in ("label", "row"):
        if column in batch.column_names:
            out[column] = batch.column(column)
    return pa.table(out)


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    storage = ArrowStorage()
    given = job_output(ctx, p["output"]) if p["output"] else None  # refused before any work
    with ctx.stage("load_model"):
        ref = resolve_model(storage, ctx.storage_path("models"), p["model"], kind="lenet")
        blob, card = load_model(storage, ref, kind="lenet", file="model.pt")
    source = input_path(ctx, p["input"], "datasets", "digits", "test", storage=storage)
    out = given or job_output(ctx, "", "predictions", f"{ref.name}-v{ref.version}")
    ray = ctx.ray()
    with ctx.stage("open"):
        dataset, rows, labelled = _open(ctx, storage, source)
    check_output(storage, out)
    meta = {"made_by": "predict-digits", "model": ref.label(), "model_path": ref.path,
            "source": source, "rows": rows}  # fmt: skip
    with writing(storage, out, meta=meta) as tmp:
        with ctx.stage("predict_write"):
            dataset.map_batches(
                classify_batch,
                fn_kwargs={"model": ray.put(blob), "key": f"{ref.path}@{card['run_id']}"},
                batch_size=BATCH_ROWS,
                batch_format="pyarrow",
            ).write_parquet(storage.uri(tmp))
        with ctx.stage("verify"):
            figures = _verify(storage, tmp, labelled)
        if figures["rows"] != rows:
            raise RuntimeError(f"wrote {figures['rows']} predictions for {rows} images")
    elapsed = ctx.elapsed()
    result = {
        **figures,
        "rows_per_s": round(rows / elapsed, 1),
        "predict_rows_per_s": round(rows / ctx.stages["predict_write"], 1),
        "model": ref.label(),
        "model_path": ref.path,
        "model_test_accuracy": card.get("metrics", {}).get("test_accuracy"),
        "input": source,
        "output": out.path,
    }
    print(f"predict-digits: {rows:,} images with {ref.label()} -> {out.path} "
          f"({result['rows_per_s']:,.0f} images/s end to end)")  # fmt: skip
    if labelled:
        print(f"accuracy against the input's labels: {result['accuracy']:.2%}")
    return result


def _open(ctx: JobContext, storage: ArrowStorage, source: str) -> tuple[Any, int, bool]:
    """(a Ray Dataset of the images, rows, whether they are labelled) from Parquet or CSV."""
    from ray import data as ray_data

    context = ray_data.DataContext.get_current()
    context.enable_progress_bars = False
    context.execution_options.preserve_order = True  # the output follows the input's rows
    if not storage.exists(source):
        raise JobInputError(
            f"input {source} does not exist; make it with `clusterkit run digits-etl` or pass "
            f"--input (Parquet images or an MNIST CSV)"
        )
    csv = _csv_file(storage, source)
    if csv is None:
        from jobs._ray_data import read_parquet

        dataset = inspect_parquet(storage, source, made_by="digits-etl")
        if "image" not in dataset.schema:
            raise JobInputError(
                f"{source}: no column image (784 floats in [0, 1], as digits-etl writes it); "
                f"it has {', '.join(dataset.schema)}"
            )
        labelled = dataset.schema.get("label") in KINDS["integer"]
        if labelled:
            _check_labels(storage, dataset.files)
        columns = ["image", "label"] if labelled else ["image"]
        return (read_parquet(ctx, storage, dataset.files, rows=dataset.rows, columns=columns),
                dataset.rows, labelled)  # fmt: skip
    fs, local = storage.file_system(csv)
    with fs.open_input_stream(local) as stream:
        labels, pixels = read_mnist_csv(stream, name=csv)
    table = _csv_table(labels, pixels)
    parts = max(1, int(ctx.ray().cluster_resources().get("CPU", 1)) * 2)
    step = -(-len(labels) // parts)
    slices = [table.slice(start, step) for start in range(0, len(labels), step)]
    return ray_data.from_arrow(slices), len(labels), True


def _check_labels(storage: ArrowStorage, files: list[str]) -> None:
    """Refuse (JobInputError) a Parquet input whose ``label`` has a null or a value that
    is not a digit 0-9, naming the file."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    for file in files:
        fs, local = storage.file_system(file)
        labels = pq.read_table(local, filesystem=fs, columns=["label"]).column("label")
        if labels.null_count:
            raise JobInputError(f"{file}: {labels.null_count} rows have no label; remove the "
                                f"label column or fill it with the digits 0-9")  # fmt: skip
        low, high = pc.min_max(labels).values()
        if len(labels) and not (low.as_py() >= 0 and high.as_py() <= 9):
            raise JobInputError(f"{file}: labels run from {low} to {high}; a label is a digit "
                                f"0-9")  # fmt: skip


def _csv_file(storage: ArrowStorage, source: str) -> str | None:
    """The CSV to read (``source`` itself, or the test file in a folder of them), or None
    for Parquet."""
    if source.endswith(".csv"):
        return source
    csvs = storage.files(source, suffix=".csv")
    if csvs and not storage.files(source):
        names = [f.rsplit("/", 1)[-1] for f in csvs]
        for name in TEST_FILES:
            if name in names:
                return f"{source}/{name}"
        raise JobInputError(
            f"{source} holds CSV files ({', '.join(names[:10])}) but none of "
            f"{' or '.join(TEST_FILES)}: give the CSV file itself as --input"
        )
    return None


def _csv_table(labels: Any, pixels: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    scaled = (pixels.astype(np.float64) / 255.0).astype(np.float32).reshape(-1)
    images = pa.FixedSizeListArray.from_arrays(pa.array(scaled), _lenet.SIDE * _lenet.SIDE)
    return pa.table({"row": pa.array(np.arange(len(labels), dtype=np.int64)),
                     "label": pa.array(labels.astype(np.int32)),
                     "image": images.cast(pa.list_(pa.float32()))})  # fmt: skip


def _verify(storage: ArrowStorage, folder: str, labelled: bool) -> dict[str, Any]:
    """Rows written (from the files); with labels, the accuracy and the confusion matrix."""
    import numpy as np
    import pyarrow.parquet as pq

    rows, correct = 0, 0
    matrix = np.zeros((_lenet.CLASSES, _lenet.CLASSES), dtype=np.int64)
    for file in storage.files(folder):
        fs, local = storage.file_system(file)
        table = pq.read_table(local, filesystem=fs)
        rows += table.num_rows
        if labelled:
            labels = table.column("label").to_numpy()
            predicted = table.column("predicted").to_numpy()
            correct += int((labels == predicted).sum())
            matrix += np.asarray(_lenet.confusion(labels, predicted))
    figures: dict[str, Any] = {"rows": rows}
    if labelled and rows:
        figures.update(accuracy=round(correct / rows, 5), correct=correct,
                       confusion_matrix=matrix.tolist())  # fmt: skip
    return figures


JOB = Job(
    name="predict-digits",
    summary="Classify digit images (Parquet or MNIST CSV) with a LeNet-5 (Ray Data)",
    engine="ray",
    main=main,
    params=[
        Param("model", "str", "digits", "NAME (latest version), NAME:vN or a model folder"),
        Param("input", "str", "",
              "Parquet images or an MNIST CSV (default: <storage>/datasets/digits/test)"),
        Param("output", "str", "",
              "where predictions go (default: <storage>/predictions/NAME-vN)"),
        OVERWRITE_PARAM,
    ],
)  # fmt: skip
