"""The salary model's feature transformer, without a cluster."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from jobs._features import SalaryFeatures
from jobs._model import FEATURES, regression_metrics


def _frame(names: list[str | None]) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame({
        "age": np.arange(20, 20 + n, dtype=np.int32),
        "is_active": np.arange(n) % 2 == 0,
        "signup_date": pd.to_datetime(["2024-01-01"] * n) + pd.to_timedelta(np.arange(n), "D"),
        "name": names,
    })  # fmt: skip


def test_features_are_age_activity_tenure_and_name_parts():
    train = _frame(["Alice Smith", "Bob Chen", "Alice Chen", "Eve"])
    features = SalaryFeatures(reference_date="2025-01-01").fit(train)
    X = features.transform(train)
    assert list(features.get_feature_names_out()) == FEATURES
    assert X[:, 0].tolist() == [20, 21, 22, 23]
    assert X[:, 1].tolist() == [1, 0, 1, 0]
    assert X[0, 2] == 366 / 365.25  # 2024 is a leap year
    assert features.first_names_ == ["Alice", "Bob", "Eve"]
    assert features.last_names_ == ["", "Chen", "Smith"]  # "Eve" has no last name
    assert X[:, 3].tolist() == [0, 1, 0, 2]
    assert X[:, 4].tolist() == [2, 1, 1, 0]


def test_unseen_and_missing_names_are_missing_categories():
    features = SalaryFeatures(reference_date="2025-01-01").fit(_frame(["Alice Smith"] * 3))
    X = features.transform(_frame(["Zoe Smith", None, "Alice Kim"]))
    assert np.isnan(X[0, 3]) and X[0, 4] == 0
    assert np.isnan(X[1, 3]) and np.isnan(X[1, 4])
    assert X[2, 3] == 0 and np.isnan(X[2, 4])


def test_arrow_dictionary_names_give_the_same_matrix_as_strings():
    """predict hands names over as a Categorical (an Arrow dictionary): same features."""
    frame = _frame(["Alice Smith", "Bob Chen", None, "Alice Chen"] * 50)
    features = SalaryFeatures().fit(frame)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(3, "name", pc.dictionary_encode(table["name"]))
    as_categorical = table.to_pandas(date_as_object=False)
    assert isinstance(as_categorical["name"].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(features.transform(frame), features.transform(as_categorical))


def test_without_a_reference_date_tenure_counts_from_the_latest_signup():
    frame = _frame(["A B"] * 3)
    X = SalaryFeatures().fit(frame).transform(frame)
    assert X[:, 2].tolist() == [2 / 365.25, 1 / 365.25, 0.0]


def test_regression_metrics():
    got = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 5.0]))
    assert got["mse"] == 4 / 3 and got["mae"] == 2 / 3
    assert got["target_variance"] == 2 / 3 and got["r2"] == 1 - (4 / 3) / (2 / 3)
