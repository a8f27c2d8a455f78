"""predict: batch inference with a trained model, distributed with Ray Data ``map_batches``.

The model version (``--model NAME``, ``NAME:vN`` or a model folder) is read once and put in
Ray's object store; each Ray worker unpickles it once and predicts Arrow batches of
``BATCH_ROWS`` rows. The output (``id``, ``predicted_salary``, and ``salary`` when the input
has it) is written by Ray Data to a temporary folder that is renamed into place, so a failed
or cancelled run leaves nothing half-written (an existing output is replaced only with
``--overwrite``). No Spark: the input is checked from its Parquet footers (pyarrow), so a
missing input column is named before any work starts.

Stages: ``load_model``, ``open`` (the input checked against the model's inputs),
``predict_write`` and ``verify`` (rows counted from the written footers; with ``salary`` in
the input, ``mse``, ``rmse``, ``mae`` and ``r2`` of the predictions). ``rows_per_s`` is rows
over the job's whole wall time, connecting to Ray included.
"""

from __future__ import annotations

from typing import Any

from clusterkit.jobkit import Job, JobContext, Param
from jobs._model import (
    KEY,
    TARGET,
    load_model,
    regression_metrics,
    resolve_inputs,
    resolve_model,
    unpickle,
)
from jobs._ray_data import read_parquet
from jobs._storage import (
    OVERWRITE_PARAM,
    ArrowStorage,
    check_columns,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    writing,
)

BATCH_ROWS = 100_000
PREDICTION = f"predicted_{TARGET}"
_LOADED: dict[str, Any] = {}  # model key -> unpickled model, once per Ray worker process


def predict_batch(
    batch: Any, *, model: Any, key: str, columns: dict[str, str], scored: bool
) -> Any:
    """One Arrow batch of input rows -> an Arrow table of predictions (runs in Ray workers).

    ``model`` is the ObjectRef of the pickled model, fetched once per worker process;
    ``columns`` maps each model input to the input's own column name.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import ray

    pipeline = _LOADED.get(key)
    if pipeline is None:
        pipeline = _LOADED[key] = unpickle(ray.get(model))
    inputs = pa.table({name: batch[actual] for name, actual in columns.items()})
    if not pa.types.is_dictionary(inputs["name"].type):  # few distinct names: to pandas as a
        index = inputs.schema.get_field_index("name")  # Categorical, not a Python str a row
        inputs = inputs.set_column(index, "name", pc.dictionary_encode(inputs["name"]))
    predicted = pipeline.predict(inputs.to_pandas(date_as_object=False))
    out = {KEY: batch[KEY].cast(pa.int64()), PREDICTION: pa.array(predicted, pa.float64())}
    if scored:
        out[TARGET] = batch[TARGET].cast(pa.float64())
    return pa.table(out)


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    storage = ArrowStorage()
    given = job_output(ctx, p["output"]) if p["output"] else None  # refused before any work
    with ctx.stage("load_model"):
        ref = resolve_model(storage, ctx.storage_path("models"), p["model"])
        blob, card = load_model(storage, ref)
    source = input_path(ctx, p["input"], "datasets", "people", storage=storage)
    out = given or job_output(ctx, "", "predictions", f"{ref.name}-v{ref.version}")
    needed_by = f"model {ref.label()}"
    with ctx.stage("open"):
        dataset = inspect_parquet(storage, source)
        check_columns(dataset.schema, source, {KEY: "integer"}, needed_by=f" ({needed_by})")
        columns = resolve_inputs(dataset.schema, source, needed_by=needed_by)
    check_output(storage, out)
    scored = TARGET in dataset.schema
    read = sorted({KEY, *columns.values(), *([TARGET] if scored else [])})

    ray = ctx.ray()
    dataset_in = read_parquet(ctx, storage, dataset.files, rows=dataset.rows, columns=read)
    meta = {"made_by": "predict", "model": ref.label(), "model_path": ref.path,
            "source": source, "rows": dataset.rows}  # fmt: skip
    with writing(storage, out, meta=meta) as tmp:
        with ctx.stage("predict_write"):
            kwargs = {"model": ray.put(blob), "key": f"{ref.path}@{card['run_id']}",
                      "columns": columns, "scored": scored}  # fmt: skip
            dataset_in.map_batches(
                predict_batch,
                fn_kwargs=kwargs,
                batch_size=BATCH_ROWS,
                batch_format="pyarrow",
            ).write_parquet(storage.uri(tmp))
        with ctx.stage("verify"):
            figures = _verify(storage, tmp, scored)
        if figures["rows"] != dataset.rows:
            raise RuntimeError(f"wrote {figures['rows']} predictions for {dataset.rows} rows")
    rows = figures["rows"]
    elapsed = ctx.elapsed()
    result: dict[str, Any] = {
        **figures,
        "rows_per_s": round(rows / elapsed, 1),
        "model": ref.label(),
        "model_path": ref.path,
        "model_trained_on": card["dataset"]["path"],
        "input": source,
        "output": out.path,
    }
    print(f"predict: {rows:,} rows with {ref.label()} -> {out.path} "
          f"({result['rows_per_s']:,.0f} rows/s end to end)")  # fmt: skip
    if scored:
        print(f"against the input's {TARGET}: mse {result['mse']:.4g}  r2 {result['r2']:.4f}")
    return result


def _verify(storage: ArrowStorage, folder: str, scored: bool) -> dict[str, Any]:
    """Rows written (from the footers); with the target, the predictions' error metrics."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = storage.files(folder)
    rows = inspect_parquet(storage, folder, made_by="predict").rows if files else 0
    figures: dict[str, Any] = {"rows": rows}
    if scored and rows:
        parts = []
        for file in files:
            fs, local = storage.file_system(file)
            parts.append(pq.read_table(local, filesystem=fs, columns=[PREDICTION, TARGET]))
        table = pa.concat_tables(parts)
        metrics = regression_metrics(table[TARGET].to_numpy(), table[PREDICTION].to_numpy())
        figures.update(metrics)
    return figures


JOB = Job(
    name="predict",
    summary="Batch predictions of a trained model over Parquet (Ray Data map_batches)",
    engine="ray",
    main=main,
    params=[
        Param("model", "str", "salary", "NAME (latest version), NAME:vN or a model folder"),
        Param("input", "str", "", "rows to predict (default: <storage>/datasets/people)"),
        Param("output", "str", "",
              "where predictions go (default: <storage>/predictions/NAME-vN)"),
        OVERWRITE_PARAM,
    ],
)  # fmt: skip
