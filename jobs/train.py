"""train: the salary model, with a cross-validated search distributed on Ray.

Stages: ``open`` (check the dataset), ``sample`` (a seeded random sample of ``--sample`` rows,
read by Spark into pandas), ``features`` (split off ``--holdout`` of the sample, learn the
features on the rest), ``search`` (every trial x fold as a Ray task, see jobs/_search.py),
``refit`` (the best trial on the whole training split), ``evaluate`` (the held-out rows) and
``save`` (a new model version, see jobs/_model.py).

A sample larger than the dataset is not an error: the whole dataset is used, and the result
says so (``sample_note``). ``noise_floor`` is the smallest MSE any model can reach on the
dataset, when its generator recorded it (datagen does for both profiles); when the held-out R2
is below 0.01 the result says plainly that the features carry no signal.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from clusterkit.jobkit import Job, JobContext, JobInputError, Param, check_name
from jobs._model import (
    FEATURES,
    FORMAT,
    INPUTS,
    KEY,
    MODELS,
    SEARCHES,
    TARGET,
    parquet_bytes,
    pickle_model,
    regression_metrics,
    save_model,
    select_inputs,
    trials_for,
)
from jobs._storage import (
    ArrowStorage,
    check_columns,
    input_path,
    open_dataset,
    output_path,
    raise_input_error_for,
    spark_schema,
)

NO_SIGNAL_R2 = 0.01


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    name = check_name(p["name"], param="name")
    output_path(ctx.storage_root, f"models/{name}", param="--name")  # the store: inside the root
    if not 2 <= p["cv"] <= 20:
        raise JobInputError(f"--cv {p['cv']} is out of range: use 2 to 20 folds")
    if not 0.05 <= p["holdout"] <= 0.5:
        raise JobInputError(f"--holdout {p['holdout']} is out of range: use 0.05 to 0.5")
    trials = trials_for(p["search"], p["model"])  # refuses a model the search has no grid for

    spark = ctx.spark()
    storage = ArrowStorage()
    source = input_path(ctx, p["input"], "datasets", "people", storage=storage)
    with ctx.stage("open"):
        df, rows = open_dataset(storage, spark, source, {})
        check_columns(spark_schema(df), source, {KEY: "integer", TARGET: "number"},
                      needed_by=" (train)")  # fmt: skip
        inputs = select_inputs(df, source, needed_by="train", extra=[KEY, TARGET])
        meta = storage.metadata(source)
    with ctx.stage("sample"), raise_input_error_for(source):
        frame = _sample(spark, inputs, rows, p["sample"], p["seed"])
    if len(frame) < 100:
        raise JobInputError(f"{source}: {len(frame)} rows is too few to train on (need >= 100)")

    import numpy as np

    from jobs._features import SalaryFeatures

    with ctx.stage("features"):
        order = np.random.default_rng(p["seed"]).permutation(len(frame))
        cut = round(len(frame) * p["holdout"])
        test, train = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
        features = SalaryFeatures(reference_date=meta.get("reference_date")).fit(train)
        X_train, y_train = features.transform(train), train[TARGET].to_numpy(np.float64)
        X_test, y_test = features.transform(test), test[TARGET].to_numpy(np.float64)

    from jobs import _search

    ctx.ray()
    with ctx.stage("search"):
        data = _search.share(X_train, y_train)
        found = _search.search(
            data, trials, folds=p["cv"], seed=p["seed"],
            on_fit=lambda done, total: ctx.progress(done, total, "fits"),
        )  # fmt: skip
    best = found["best"]
    with ctx.stage("refit"):
        refitted = _search.refit_best(data, best, seed=p["seed"])
    from sklearn.pipeline import Pipeline

    pipeline = Pipeline([("features", features), ("model", refitted["estimator"])])
    with ctx.stage("evaluate"):
        metrics = regression_metrics(y_test, refitted["estimator"].predict(X_test))

    noise_floor = meta.get("noise_floor")
    verdict = _verdict(metrics["r2"])
    summary = {
        **metrics,
        "noise_floor": noise_floor,
        "mse_over_noise_floor": metrics["mse"] / noise_floor if noise_floor else None,
        "mse_over_variance": metrics["mse"] / metrics["target_variance"],
        "signal": verdict,
        "best_model": best.model,
        "best_params": best.params,
        "best_cv_mse": min(t["cv_mse"] for t in found["trials"]),
        "search": p["search"],
        "trials": len(trials),
        "fits": len(found["fits"]),
        "fits_by_process": _search.where_summary(found["fits"]),
        "fits_in_ray_workers": sum(1 for f in found["fits"] if f["in_ray_worker"]),
        "train_rows": len(train),
        "holdout_rows": len(test),
        "dataset_rows": rows,
        "sample_note": _sample_note(rows, p["sample"], len(frame)),
    }
    card = {
        "format": FORMAT,
        "kind": "salary",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": ctx.run_id,
        "target": TARGET,
        "key": KEY,
        "inputs": {column: list(names) for column, (names, _) in INPUTS.items()},
        "features": FEATURES,
        "dataset": {"path": source, "rows": rows, "meta": meta},
        "metrics": {k: summary[k] for k in ("mse", "rmse", "mae", "r2", "target_variance",
                                              "noise_floor", "mse_over_noise_floor")},
        "best_model": best.model,
        "best_params": best.params,
        "search": p["search"],
        "seed": p["seed"],
        "train_rows": len(train),
        "holdout_rows": len(test),
        "versions": _versions(),
    }  # fmt: skip
    with ctx.stage("save"):
        ref = save_model(
            storage, ctx.storage_path("models"), name, card=card, run_id=ctx.run_id,
            files={"model.joblib": pickle_model(pipeline),
                   "holdout/part-00000.parquet": parquet_bytes(test)},
        )  # fmt: skip
    _report(summary, found["trials"], ref.label(), ref.path)
    return {
        **summary,
        "model": ref.label(),
        "model_path": ref.path,
        "holdout_path": f"{ref.path}/holdout",
        "trial_results": found["trials"],
        "fit_reports": found["fits"],
        "refit": {k: v for k, v in refitted.items() if k != "estimator"},
        "input": source,
    }


def _sample(spark: Any, inputs: Any, rows: int, wanted: int, seed: int) -> Any:
    """A uniform random sample of ``wanted`` rows (all rows if there are fewer), as pandas.

    Spark draws a Bernoulli sample a little larger than needed; pandas trims it to size, so
    no file or partition is favoured (``limit`` would take the first partitions).
    """
    spark.conf.set("spark.sql.execution.arrow.pyspark.enabled", "true")
    if wanted >= rows:
        frame = inputs.toPandas()
    else:
        fraction = min(1.0, wanted / rows * 1.02 + 1000 / rows)
        frame = inputs.sample(fraction=fraction, seed=seed).toPandas()
        if len(frame) > wanted:
            frame = frame.sample(n=wanted, random_state=seed)
    return frame.sort_values(KEY).reset_index(drop=True)


def _sample_note(rows: int, wanted: int, got: int) -> str:
    if wanted > rows:
        return (f"the dataset has {rows:,} rows, fewer than the {wanted:,} asked for: "
                f"all of them were used")  # fmt: skip
    if wanted == rows:
        return f"all {rows:,} rows of the dataset"
    return f"a seeded random sample of {got:,} of the dataset's {rows:,} rows"


def _verdict(r2: float) -> str:
    if r2 < NO_SIGNAL_R2:
        return (
            f"no signal: R2 = {r2:.4f} on the held-out rows, so the features carry no "
            f"information about {TARGET}; the best model predicts about the mean, and its MSE "
            f"is the target's variance"
        )
    return f"R2 = {r2:.4f}: the features explain {r2:.0%} of the variance of {TARGET}"


def _versions() -> dict[str, str]:
    import platform

    import numpy
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": numpy.__version__}  # fmt: skip


def _report(summary: dict[str, Any], trials: list[dict[str, Any]], label: str, path: str) -> None:
    print(f"{'trial':<60} {'cv mse':>14}")
    for trial in sorted(trials, key=lambda t: t["cv_mse"]):
        print(f"{trial['label']:<60} {trial['cv_mse']:>14.4g}")
    floor = summary["noise_floor"]
    print(
        f"best: {summary['best_model']} {summary['best_params']}\n"
        f"held-out ({summary['holdout_rows']:,} rows): mse {summary['mse']:.4g}  "
        f"rmse {summary['rmse']:.1f}  mae {summary['mae']:.1f}  r2 {summary['r2']:.4f}"
        + (f"  mse/noise floor {summary['mse_over_noise_floor']:.4f}" if floor else "")
        + f"\n{summary['signal']}\n{summary['sample_note']}\n"
        f"fits: {summary['fits']} Ray tasks: {summary['fits_by_process']}\n"
        f"model {label} -> {path}"
    )


JOB = Job(
    name="train",
    summary="Salary model: sample with Spark, cross-validated search on Ray, versioned model",
    engine="spark+ray",
    main=main,
    params=[
        Param("input", "str", "", "training dataset (default: <storage>/datasets/people)"),
        Param("sample", "count", 1_000_000, "rows to train and test on (all if fewer)"),
        Param("model", "choice", "auto", "model family; auto = every one the search lists",
              choices=("auto", *MODELS)),
        Param("search", "choice", "default", "search space; seed-paper = the source's RF grid",
              choices=tuple(SEARCHES)),
        Param("cv", "int", 3, "cross-validation folds"),
        Param("holdout", "float", 0.2, "share of the sample held out for the final metrics"),
        Param("seed", "int", 0, "seed of the sample, the split, the folds and the models"),
        Param("name", "str", "salary",
              "model name (a-z, 0-9, -): saved as <storage>/models/NAME/vN"),
    ],
)  # fmt: skip
