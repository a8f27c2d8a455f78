"""The salary model: its inputs, its features, its search spaces and its artifact.

``train`` and ``predict`` both go through this module, so they cannot disagree about what a
model reads or how features are made.

- Inputs: ``age``, ``is_active``, ``signup_date`` and ``name`` (``full_name`` after ``etl``),
  plus ``id`` to key the predictions. :func:`select_inputs` resolves and checks them in Spark
  and hands pandas a fixed layout (``signup_date`` as a timestamp).
- Features (``jobs._features.SalaryFeatures``): age, is_active, tenure in years at the
  reference date, first name and last name as categories (the most frequent
  ``MAX_CATEGORIES``; others are "missing").
- Searches: ``default`` tries Ridge and HistGradientBoosting on every feature; ``seed-paper``
  is the source project's RandomForest grid on (age, is_active) with StandardScaler.
- Artifact: ``<storage>/models/NAME/vN/`` holding ``model.joblib`` (features + estimator as
  one scikit-learn Pipeline), ``model.json`` (format, input columns, features, training
  dataset, metrics, versions) and ``holdout/`` (the held-out rows, to check the model later).
  Versions are written to a temporary folder and renamed into place. A model's name follows
  the rule of cluster names (so ``models/NAME`` stays inside the storage root); ``NAME:vN``
  names a version.
"""

from __future__ import annotations

import io
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clusterkit.jobkit import JobInputError, NoSpaceLeft, check_name, is_no_space
from jobs._storage import KINDS, META_FILE, FileStore, marker

FORMAT = 1
#: what a model card's ``kind`` may be, and the jobs that make and use each
KIND_JOBS = {"salary": "train", "lenet": "lenet"}
PREDICT_JOBS = {"salary": "predict", "lenet": "predict-digits"}
TARGET = "salary"
KEY = "id"
#: Input column -> (accepted names, kind). ``etl`` renames ``name`` to ``full_name``.
INPUTS: dict[str, tuple[tuple[str, ...], str]] = {
    "age": (("age",), "integer"),
    "is_active": (("is_active",), "boolean"),
    "signup_date": (("signup_date",), "date"),
    "name": (("name", "full_name"), "string"),
}
FEATURES = ["age", "is_active", "tenure_years", "first_name", "last_name"]
NUMERIC = [0, 1, 2]
CATEGORICAL = [3, 4]
#: HistGradientBoosting takes at most 255 categories a feature; the rarest become "missing".
MAX_CATEGORIES = 250

MODELS = ("ridge", "hist-gb", "random-forest")
#: search -> model -> grid. ``auto`` means every model the search lists first.
SEARCHES: dict[str, dict[str, dict[str, list[Any]]]] = {
    "default": {
        "ridge": {"alpha": [0.1, 1.0, 10.0]},
        "hist-gb": {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
        "random-forest": {"n_estimators": [50], "max_depth": [12], "min_samples_leaf": [20]},
    },
    "seed-paper": {
        "random-forest": {
            "n_estimators": [50, 100], "max_depth": [10, None], "min_samples_split": [2, 5],
        },
    },
}  # fmt: skip
AUTO_MODELS = {"default": ("ridge", "hist-gb"), "seed-paper": ("random-forest",)}
SEED_PAPER_FEATURES = [0, 1]  # age, is_active: the source project's features


# ---------------------------------------------------------------- inputs, in Spark


def resolve_inputs(found: Mapping[str, str], path: str, *, needed_by: str) -> dict[str, str]:
    """Input column -> the input's own name for it, from a schema (column -> Spark type name).

    A missing input is refused naming every missing column and the names accepted for it;
    a column of the wrong kind is refused naming it.
    """
    chosen: dict[str, str] = {}
    missing = []
    for column, (names, kind) in INPUTS.items():
        name = next((n for n in names if n in found), None)
        if name is None:
            missing.append(" or ".join(names))
        elif found[name] not in KINDS[kind]:
            raise JobInputError(
                f"{path}: column {name} is {found[name]}, but {needed_by} needs {kind} "
                f"({' or '.join(KINDS[kind])})"
            )
        else:
            chosen[column] = name
    if missing:
        raise JobInputError(
            f"{path}: missing column(s) {', '.join(missing)} that {needed_by} needs "
            f"(it reads {', '.join(INPUTS)}); the input has {', '.join(found)}"
        )
    return chosen


def select_inputs(df: Any, path: str, *, needed_by: str, extra: Sequence[str] = ()) -> Any:
    """A Spark DataFrame reduced to the model's inputs (+ ``extra`` columns present), renamed
    to the input names, ``signup_date`` as a timestamp."""
    from pyspark.sql import functions as F

    from jobs._storage import spark_schema

    found = spark_schema(df)
    chosen = resolve_inputs(found, path, needed_by=needed_by)
    columns = [F.col(c).alias(c) for c in extra if c in found]
    for column, name in chosen.items():
        value = F.col(name)
        if column == "signup_date":
            value = value.cast("timestamp")
        columns.append(value.alias(column))
    return df.select(*columns)


# ---------------------------------------------------------------- search spaces


@dataclass(frozen=True)
class Trial:
    """One point of a search: a model and its hyperparameters."""

    number: int
    search: str
    model: str
    params: dict[str, Any]

    def label(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.model}({shown})"


def trials_for(search: str, model: str) -> list[Trial]:
    """Every trial of ``search`` for ``model`` (``auto``: the search's own models)."""
    space = SEARCHES[search]
    if model == "auto":
        models: Sequence[str] = AUTO_MODELS[search]
    elif model in space:
        models = [model]
    else:
        raise JobInputError(
            f"--search {search} has no grid for --model {model}; it covers "
            f"{', '.join(space)} (or use --model auto)"
        )
    trials: list[Trial] = []
    for name in models:
        grid = space[name]
        for values in itertools.product(*grid.values()):
            trials.append(Trial(len(trials), search, name, dict(zip(grid, values, strict=True))))
    return trials


def regression_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """mse, rmse, mae, r2 and the target's variance on these rows (numpy arrays)."""
    import numpy as np

    truth = np.asarray(y_true, dtype=np.float64)
    error = np.asarray(y_pred, dtype=np.float64) - truth
    mse = float(np.dot(error, error) / len(error))
    variance = float(np.var(truth))
    return {
        "mse": mse,
        "rmse": mse**0.5,
        "mae": float(np.mean(np.abs(error))),
        "r2": 1.0 - mse / variance if variance > 0 else 0.0,
        "target_variance": variance,
    }


# ---------------------------------------------------------------- the artifact

_VERSION = re.compile(r"^v?(?P<version>\d+)$")


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: int
    path: str

    def label(self) -> str:
        return f"{self.name}:v{self.version}"


def versions_of(storage: FileStore, models_root: str, name: str) -> list[int]:
    return sorted(
        int(d[1:]) for d in storage.list_dirs(f"{models_root}/{name}") if re.fullmatch(r"v\d+", d)
    )


def resolve_model(
    storage: FileStore, models_root: str, ref: str, *, kind: str = "salary"
) -> ModelRef:
    """``NAME`` (its latest version), ``NAME:vN``, or the path of a version folder; errors
    name the job that makes a ``kind`` model."""
    maker = KIND_JOBS.get(kind, "train")
    if "/" in ref:
        card = _read_card(storage, ref, maker=maker)
        return ModelRef(card["name"], int(card["version"]), ref.rstrip("/"))
    name, colon, version_text = ref.partition(":")
    try:
        check_name(name, param="model")
    except JobInputError as exc:
        raise JobInputError(f"{exc}; give NAME, NAME:vN or a model folder's path") from exc
    match = _VERSION.match(version_text)
    if colon and not match:
        raise JobInputError(f"--model {ref!r}: {version_text!r} is not a version; give NAME:vN, "
                            f"e.g. {name}:v1")  # fmt: skip
    have = versions_of(storage, models_root, name)
    if not have:
        known = [d for d in storage.list_dirs(models_root) if not d.startswith(".")]
        listing = f"models there: {', '.join(known)}" if known else "there are no models yet"
        raise JobInputError(
            f"no model {name!r} under {models_root} ({listing}); "
            f"make one with `clusterkit run {maker} --name {name}`"
        )
    version = int(match["version"]) if colon and match else have[-1]
    if version not in have:
        raise JobInputError(
            f"model {name} has no version v{version}; it has {', '.join(f'v{v}' for v in have)}"
        )
    return ModelRef(name, version, f"{models_root}/{name}/v{version}")


def _read_card(
    storage: FileStore, path: str, kind: str | None = None, *, maker: str = "train"
) -> dict[str, Any]:
    text = storage.read_text(f"{path.rstrip('/')}/model.json")
    if text is None:
        raise JobInputError(
            f"{path} is not a model folder (no model.json); make one with `clusterkit run {maker}`"
        )
    card: dict[str, Any] = json.loads(text)
    if kind is not None and card.get("kind", "salary") != kind:
        made = card.get("kind", "salary")
        raise JobInputError(
            f"{path} is a {made} model, not a {kind} one: give a model made by "
            f"`clusterkit run {KIND_JOBS.get(kind, kind)}` (this one is for "
            f"`clusterkit run {PREDICT_JOBS.get(made, 'predict')}`)"
        )
    if card.get("format") != FORMAT:
        raise JobInputError(
            f"{path}: model format {card.get('format')} is not {FORMAT}; retrain it with "
            f"`clusterkit run train`"
        )
    return card


def load_model(
    storage: FileStore, ref: ModelRef, *, kind: str = "salary", file: str = "model.joblib"
) -> tuple[bytes, dict[str, Any]]:
    """(the model's bytes, the model card) of a version, refused (JobInputError) when the
    version is not a ``kind`` model (``salary`` for cards that say none)."""
    card = _read_card(storage, ref.path, kind)
    return storage.read_all(f"{ref.path}/{file}"), card


def unpickle(blob: bytes) -> Any:
    import joblib

    return joblib.load(io.BytesIO(blob))


def pickle_model(pipeline: Any) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer, compress=3)
    return buffer.getvalue()


def parquet_bytes(frame: Any) -> bytes:
    """A pandas DataFrame as one Parquet file (microsecond timestamps, which Spark reads)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    buffer = pa.BufferOutputStream()
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    pq.write_table(table, buffer, coerce_timestamps="us", allow_truncated_timestamps=True)
    return bytes(buffer.getvalue().to_pybytes())


def save_model(
    storage: FileStore,
    models_root: str,
    name: str,
    *,
    files: Mapping[str, bytes],
    card: Mapping[str, Any],
    run_id: str,
    job: str = "train",
) -> ModelRef:
    """Write a new version of ``name`` (checked: a name as NAME_PATTERN allows) holding
    ``files`` (relative path -> bytes) and ``model.json`` (``card`` with its name, version
    and path): a temporary folder, then a rename to ``vN`` (the next free number; a version
    written meanwhile by another run is never replaced). It holds the kit's marker,
    ``_clusterkit.json``; a full disk is raised as NoSpaceLeft naming the model's folder."""
    check_name(name, param="name")
    tmp = f"{models_root}/{name}/.tmp-{run_id}"
    try:
        for relative, data in files.items():
            storage.write_bytes(f"{tmp}/{relative}", data)
        storage.write_text(f"{tmp}/{META_FILE}", marker(run_id=run_id, job=job))
        for _ in range(100):
            have = versions_of(storage, models_root, name)
            version = (have[-1] if have else 0) + 1
            path = f"{models_root}/{name}/v{version}"
            full_card = {**card, "name": name, "version": version, "path": path}
            storage.write_text(f"{tmp}/model.json", json.dumps(full_card, indent=2))
            if storage.rename(tmp, path):
                return ModelRef(name, version, path)
        raise RuntimeError(f"could not find a free version number for model {name}")
    except Exception as exc:
        if is_no_space(exc):
            raise NoSpaceLeft(f"{models_root}/{name}") from exc
        raise
    finally:
        if storage.exists(tmp):
            storage.delete(tmp)
