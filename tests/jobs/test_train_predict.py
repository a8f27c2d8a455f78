"""train, predict and suite on the real local cluster (Spark, Ray, Ray Data), small scale."""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster

SIGMA2 = 1e8  # the realistic profile's noise variance
UNIFORM_VARIANCE = 90_000**2 / 12  # seed-paper salaries: U(30000, 120000)
RESULT_KEYS = {"mse", "rmse", "mae", "r2", "noise_floor", "mse_over_noise_floor", "best_params",
               "trials", "train_rows", "wall_s", "peak_rss_bytes"}  # fmt: skip


def _dataset(cluster: LocalCluster, name: str) -> str:
    return str(cluster.storage / "datasets" / name)


def _ok(run: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    code, record = run
    assert code == 0 and record["status"] == "succeeded", record["error"]
    result: dict[str, Any] = record["result"]
    return result


def _refused(run: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """A run failed for bad input: the job's exit code 2 in the record, the CLI's non-zero
    (2 when refused before starting, 1 when the job found the problem)."""
    code, record = run
    assert code in (1, 2) and record["exit_code"] == 2, record
    assert record["status"] == "failed"
    return record


def _temp_folders(cluster: LocalCluster) -> list[str]:
    return [str(p) for p in cluster.storage.rglob("*tmp-*")]


@pytest.fixture(scope="module")
def realistic(local_cluster: LocalCluster) -> dict[str, Any]:
    """200k realistic rows, then train with the default search: (train's record)."""
    _ok(local_cluster.run("datagen", "--rows", "200k", "--name", "ml-real", "--overwrite"))
    code, record = local_cluster.run(
        "train", "--input", _dataset(local_cluster, "ml-real"), "--name", "real", "--seed", "3"
    )
    assert code == 0, record["error"]
    return record


def test_train_reaches_the_noise_floor_on_the_realistic_profile(realistic):
    result = realistic["result"]
    assert set(result) >= RESULT_KEYS
    assert result["noise_floor"] == SIGMA2
    assert result["mse_over_noise_floor"] == pytest.approx(result["mse"] / SIGMA2)
    assert result["mse_over_noise_floor"] <= 1.05
    assert result["r2"] > 0.7  # the features explain ~77% of the variance
    assert result["rmse"] == pytest.approx(result["mse"] ** 0.5)
    assert result["train_rows"] + result["holdout_rows"] == 200_000
    assert result["holdout_rows"] == 40_000
    assert result["best_model"] in ("ridge", "hist-gb")
    assert result["trials"] == 7 and result["fits"] == 21  # 3 ridge + 4 hist-gb, 3 folds
    assert set(result["stages"]) >= {"open", "sample", "features", "search", "refit", "save"}


def test_search_ran_in_ray_worker_processes(realistic):
    result = realistic["result"]
    driver = realistic["job_pid"]
    fits = result["fit_reports"]
    assert len(fits) == result["fits"] == result["fits_in_ray_workers"]
    assert all(f["in_ray_worker"] and f["pid"] != driver for f in fits)
    assert sum(result["fits_by_process"].values()) == len(fits)
    if (os.cpu_count() or 1) >= 2:
        assert len({f["pid"] for f in fits}) >= 2, "fits ran in one process: not in parallel"
    assert result["refit"]["in_ray_worker"] and result["refit"]["pid"] != driver
    # the sampler saw those Ray workers as this run's processes
    assert result["peak_rss_by_role"].get("ray-worker", 0) > 0


def test_the_model_is_a_versioned_artifact_with_its_card(local_cluster, realistic):
    result = realistic["result"]
    folder = Path(result["model_path"])
    assert folder.name.startswith("v") and result["model"] == f"real:{folder.name}"
    card = json.loads((folder / "model.json").read_text())
    assert card["features"] == ["age", "is_active", "tenure_years", "first_name", "last_name"]
    assert card["dataset"]["path"] == _dataset(local_cluster, "ml-real")
    assert card["dataset"]["meta"]["profile"] == "realistic"
    assert card["metrics"]["mse"] == result["mse"]
    assert card["best_params"] == result["best_params"]
    assert (folder / "model.joblib").stat().st_size > 0
    assert _temp_folders(local_cluster) == []
    # a second training makes the next version; the first is left as it was
    again = _ok(local_cluster.run("train", "--input", _dataset(local_cluster, "ml-real"),
                                  "--name", "real", "--sample", "20k"))  # fmt: skip
    assert Path(again["model_path"]).name == f"v{int(folder.name[1:]) + 1}"
    assert json.loads((folder / "model.json").read_text()) == card


def test_predict_on_the_holdout_reproduces_the_reported_metrics(local_cluster, realistic):
    train = realistic["result"]
    out = str(local_cluster.storage / "predictions" / "holdout-check")
    result = _ok(local_cluster.run("predict", "--model", train["model"],
                                   "--input", train["holdout_path"], "--output", out))  # fmt: skip
    assert result["rows"] == train["holdout_rows"]
    assert set(result) >= {"rows", "wall_s", "rows_per_s"}
    # rows over the job's time up to its result; wall_s also holds Ray's disconnect
    assert result["rows"] / result["wall_s"] <= result["rows_per_s"]
    assert result["rows_per_s"] == pytest.approx(result["rows"] / result["wall_s"], rel=0.25)
    for key in ("mse", "mae", "r2"):
        assert result[key] == pytest.approx(train[key], rel=1e-9)
    # and independently of the job's own arithmetic: from the files it wrote
    table = pq.read_table(out, columns=["id", "predicted_salary", "salary"]).to_pandas()
    assert table["id"].is_unique and len(table) == train["holdout_rows"]
    mse = float(np.mean((table["predicted_salary"] - table["salary"]) ** 2))
    assert mse == pytest.approx(train["mse"], rel=1e-9)


def test_predict_defaults_chain_and_accept_the_etl_output(local_cluster, realistic):
    """No --input: the people dataset; the model reads full_name where etl renamed name."""
    model = realistic["result"]["model"]
    processed = local_cluster.storage / "datasets" / "ml-real-processed"
    _ok(local_cluster.run("etl", "--input", _dataset(local_cluster, "ml-real"),
                          "--output", str(processed)))  # fmt: skip
    result = _ok(local_cluster.run("predict", "--model", model, "--input", str(processed)))
    assert result["rows"] == 200_000
    assert result["output"].endswith(f"predictions/{model.replace(':', '-')}")
    assert result["mse"] / SIGMA2 <= 1.05


def test_seed_paper_profile_has_no_signal_and_says_so(local_cluster):
    _ok(local_cluster.run("datagen", "--rows", "200k", "--profile", "seed-paper",
                          "--name", "ml-paper", "--overwrite"))  # fmt: skip
    source = _dataset(local_cluster, "ml-paper")
    for search, sample in (("default", "200k"), ("seed-paper", "30k")):
        result = _ok(local_cluster.run("train", "--input", source, "--name", f"paper-{search}",
                                       "--search", search, "--sample", sample))  # fmt: skip
        assert set(result) >= RESULT_KEYS
        assert result["noise_floor"] == pytest.approx(UNIFORM_VARIANCE)
        assert abs(result["mse"] / UNIFORM_VARIANCE - 1) <= 0.03, (search, result["mse"])
        assert abs(result["r2"]) < 0.01, (search, result["r2"])
        assert result["signal"].startswith("no signal"), result["signal"]
    # the source project's grid: 8 RandomForest trials x 3 folds
    assert result["best_model"] == "random-forest"
    assert result["trials"] == 8 and result["fits"] == 24
    assert set(result["best_params"]) == {"n_estimators", "max_depth", "min_samples_split"}


def test_a_sample_larger_than_the_dataset_uses_all_of_it_and_says_so(local_cluster, realistic):
    result = _ok(local_cluster.run("train", "--input", _dataset(local_cluster, "ml-real"),
                                   "--name", "big-sample", "--sample", "5M"))  # fmt: skip
    assert result["train_rows"] + result["holdout_rows"] == 200_000
    assert "fewer than the 5,000,000 asked for: all of them were used" in result["sample_note"]


def test_predict_with_a_missing_model_is_refused(local_cluster, realistic):
    out = local_cluster.storage / "predictions" / "never"
    record = _refused(local_cluster.run("predict", "--model", "nosuchmodel", "--output", str(out)))
    assert "no model 'nosuchmodel' under" in record["error"]
    assert "clusterkit run train --name nosuchmodel" in record["error"]
    assert not out.exists()


def test_predict_names_the_columns_a_model_needs_and_the_input_lacks(local_cluster, realistic):
    folder = local_cluster.storage / "datasets" / "no-dates"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [1, 2], "age": [30, 40], "salary": [1.0, 2.0]}).to_parquet(
        folder / "part-00000.parquet", index=False
    )
    out = local_cluster.storage / "predictions" / "no-dates"
    record = _refused(local_cluster.run("predict", "--model", realistic["result"]["model"],
                                        "--input", str(folder), "--output", str(out)))  # fmt: skip
    assert "missing column(s) is_active, signup_date, name or full_name" in record["error"]
    assert str(folder) in record["error"]
    assert not out.exists() and _temp_folders(local_cluster) == []


@pytest.mark.parametrize("job", ["train", "predict"])
def test_an_empty_input_is_refused(local_cluster, realistic, job):
    folder = local_cluster.storage / "datasets" / "empty"
    folder.mkdir(parents=True, exist_ok=True)
    source = pd.read_parquet(realistic["result"]["holdout_path"]).head(0)
    source.to_parquet(folder / "part-00000.parquet", index=False, coerce_timestamps="us")
    args = ["--input", str(folder)] + (["--model", realistic["result"]["model"]]
                                       if job == "predict" else ["--name", "empty"])  # fmt: skip
    record = _refused(local_cluster.run(job, *args))
    assert f"{folder}: the dataset is empty (0 rows)" in record["error"]
    assert not (local_cluster.storage / "models" / "empty").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "xgboost"], "'xgboost' is not one of auto, ridge, hist-gb, random-forest"),
        (["--search", "bayes"], "'bayes' is not one of default, seed-paper"),
    ],
)
def test_an_unknown_model_or_search_is_refused(local_cluster, args, message):
    before = {r["id"] for r in local_cluster.cli("runs", "--json").json()}
    result = local_cluster.cli("run", "train", *args)
    assert result.code == 2 and message in " ".join(result.stderr.split())
    new = [r for r in local_cluster.cli("runs", "--json").json() if r["id"] not in before]
    assert len(new) == 1 and new[0]["status"] == "failed" and message in new[0]["error"]


def test_a_model_the_search_has_no_grid_for_is_refused(local_cluster):
    record = _refused(local_cluster.run("train", "--search", "seed-paper", "--model", "ridge"))
    assert "--search seed-paper has no grid for --model ridge" in record["error"]
    assert record["wall_s"] < 30  # refused before Spark or Ray start


def _runs(cluster: LocalCluster) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in cluster.cli("runs", "--json").json()}


def test_suite_runs_the_ten_jobs_in_order_a_record_each(local_cluster):
    code, record = local_cluster.run("suite", "--rows", "200k", timeout=900)
    assert code == 0, record["error"]
    steps = record["result"]["steps"]
    assert [s["step"] for s in steps] == ["datagen", "etl", "top-earners", "age-extremes",
                                          "train", "predict", "datagen-digits", "digits-etl",
                                          "lenet", "predict-digits"]  # fmt: skip
    assert all(s["status"] == "succeeded" for s in steps), steps
    runs = _runs(local_cluster)
    children = [runs[s["run"]] for s in steps]
    assert all(c["parent"] == record["id"] for c in children)
    starts = [c["started"] for c in children]
    assert starts == sorted(starts)
    assert all(a["ended"] <= b["started"] for a, b in itertools.pairwise(children))
    assert steps[4]["figure_name"] == "mse/noise floor" and steps[4]["figure"] <= 1.05
    assert steps[5]["figure_name"] == "rows/s" and steps[5]["figure"] > 0
    assert steps[6]["figure"] == 6000  # 5k training + 1k test images
    assert steps[8]["figure_name"] == "test accuracy" and steps[8]["figure"] > 0.5
    lenet = Path(local_cluster.up["state_dir"]) / "runs" / steps[8]["run"] / "result.json"
    assert len(json.loads(lenet.read_text())["epochs"]) == 2
    log = local_cluster.cli("logs", record["id"]).stdout
    assert "step" in log and "predict" in log and "rows/s" in log


def test_cancelling_a_suite_cancels_its_running_step(local_cluster):
    from clusterkit.metrics.sampling import RunProcessFinder

    started = local_cluster.cli("run", "suite", "--rows", "200k", "--detach")
    assert started.code == 0, started.stderr
    suite_id = started.stdout.strip()
    step = None
    for _ in range(300):  # wait for the second step (etl, a Spark job) to be running
        step = next((r for r in _runs(local_cluster).values()
                     if r["parent"] == suite_id and r["job"] == "etl"
                     and r["status"] == "running"), None)  # fmt: skip
        if step:
            break
        time.sleep(0.5)
    assert step is not None, "the suite never started its etl step"
    cancelled = local_cluster.cli("cancel", suite_id, "--json")
    assert cancelled.code == 0, cancelled.stderr
    assert cancelled.json()["status"] == "cancelled"
    runs = _runs(local_cluster)
    assert runs[step["id"]]["status"] == "cancelled"
    assert f"its parent run {suite_id}" in runs[step["id"]]["error"]
    assert not [r for r in runs.values() if r["parent"] == suite_id and r["job"] == "top-earners"]
    assert RunProcessFinder(step["id"]).find() == [] and RunProcessFinder(suite_id).find() == []
