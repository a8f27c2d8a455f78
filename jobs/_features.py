"""The salary model's features and estimators (scikit-learn; imported only by jobs at work).

Kept apart from jobs/_model.py so that listing the job catalog does not import scikit-learn.
A pickled model refers to the classes here, so renaming them breaks saved models: bump
``jobs._model.FORMAT`` if you do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from jobs._model import CATEGORICAL, FEATURES, MAX_CATEGORIES, NUMERIC, SEED_PAPER_FEATURES, Trial


class SalaryFeatures(TransformerMixin, BaseEstimator):
    """Raw input columns (a pandas DataFrame) -> the FEATURES matrix (float64).

    ``fit`` learns the name vocabularies and the reference date for tenure (the dataset's
    own, when it records one, else the latest signup date seen).
    """

    def __init__(self, reference_date: str | None = None) -> None:
        self.reference_date = reference_date

    def fit(self, frame: pd.DataFrame, y: Any = None) -> SalaryFeatures:
        codes, first, last = _name_parts(frame["name"])
        self.first_names_ = _vocabulary(first[codes])
        self.last_names_ = _vocabulary(last[codes])
        days = _epoch_days(frame["signup_date"])
        self.reference_day_ = (
            int(np.datetime64(self.reference_date, "D").astype(np.int64))
            if self.reference_date
            else int(days.max())
        )
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        codes, first, last = _name_parts(frame["name"])
        out = np.empty((len(frame), len(FEATURES)), dtype=np.float64)
        out[:, 0] = frame["age"].to_numpy(dtype=np.float64)
        out[:, 1] = frame["is_active"].to_numpy(dtype=np.float64)
        out[:, 2] = (self.reference_day_ - _epoch_days(frame["signup_date"])) / 365.25
        out[:, 3] = _codes(first, self.first_names_)[codes]
        out[:, 4] = _codes(last, self.last_names_)[codes]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(FEATURES, dtype=object)


def _name_parts(names: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, first names, last names): each row's index into the distinct names, and the
    first and last name of each distinct name, so each is split only once. A missing name
    has code -1, which picks the extra "" at the end of both arrays. A Categorical column
    (what Arrow dictionary arrays become) is not even hashed again."""
    codes, uniques = pd.factorize(names, sort=False)
    parts = pd.Series(np.asarray(uniques, dtype=object)).astype(str).str.split(" ", n=1)
    first = np.append(parts.str[0].fillna("").to_numpy(dtype=object), "")
    last = np.append(parts.str[1].fillna("").to_numpy(dtype=object), "")
    return codes, first, last


def _vocabulary(values: np.ndarray) -> list[str]:
    return sorted(pd.Series(values).value_counts().index[:MAX_CATEGORIES].tolist())


def _codes(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
    """Index of each value in ``vocabulary``; NaN (missing) for values not in it."""
    codes = pd.Index(vocabulary).get_indexer(values).astype(np.float64)
    codes[codes < 0] = np.nan
    return codes


def _epoch_days(column: pd.Series) -> np.ndarray:
    """Days since 1970-01-01 of a date or timestamp column (any pandas representation)."""
    if not pd.api.types.is_datetime64_any_dtype(column):
        column = pd.to_datetime(column)
    if getattr(column.dt, "tz", None) is not None:
        column = column.dt.tz_convert("UTC").dt.tz_localize(None)
    return column.to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.float64)


def build_estimator(trial: Trial, *, seed: int, n_jobs: int = 1) -> Any:
    """An unfitted estimator for the FEATURES matrix."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if trial.model == "ridge":
        scale = ColumnTransformer([("numeric", StandardScaler(), NUMERIC)])
        return Pipeline([("scale", scale), ("ridge", Ridge(**trial.params))])
    if trial.model == "hist-gb":
        return HistGradientBoostingRegressor(
            categorical_features=CATEGORICAL, max_iter=500, early_stopping=True,
            validation_fraction=0.1, n_iter_no_change=10, random_state=seed, **trial.params,
        )  # fmt: skip
    forest = RandomForestRegressor(random_state=seed, n_jobs=n_jobs, **trial.params)
    if trial.search == "seed-paper":
        scale = ColumnTransformer([("scale", StandardScaler(), SEED_PAPER_FEATURES)])
        return Pipeline([("scale", scale), ("forest", forest)])
    # forests split on raw values; category codes stand in for the names (missing -> -1)
    return Pipeline([("fill", _FillMissing()), ("forest", forest)])


class _FillMissing(TransformerMixin, BaseEstimator):
    """Missing category codes -> -1, for estimators that refuse NaN."""

    def fit(self, X: Any, y: Any = None) -> _FillMissing:
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        return np.nan_to_num(X, nan=-1.0)
