"""The digits jobs on the real local cluster: datagen-digits, digits-etl on three engines,
lenet (Ray Train) and predict-digits, small scale."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from jobs import _digits
from jobs._digits_csv import read_mnist_csv, write_mnist_csv
from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster

ENGINES = ("spark", "ray", "duckdb")


def _ok(run: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    code, record = run
    assert code == 0 and record["status"] == "succeeded", record["error"]
    result: dict[str, Any] = record["result"]
    return result


def _datasets(cluster: LocalCluster) -> Path:
    return cluster.storage / "datasets"


@pytest.fixture(scope="module")
def csvs(local_cluster: LocalCluster) -> dict[str, Any]:
    """2,000 training and 500 test rows, seed 5: datagen-digits' result."""
    return _ok(local_cluster.run("datagen-digits", "--rows", "2k", "--test-rows", "500",
                                 "--seed", "5", "--name", "dg", "--overwrite"))  # fmt: skip


@pytest.fixture(scope="module")
def etl(local_cluster: LocalCluster, csvs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """digits-etl of ``dg`` on each engine: engine -> result."""
    source = str(_datasets(local_cluster) / "dg")
    return {engine: _ok(local_cluster.run("digits-etl", "--engine", engine, "--input", source,
                                          "--output", f"datasets/dg-{engine}", "--overwrite"))
            for engine in ENGINES}  # fmt: skip


@pytest.fixture(scope="module")
def lenet(local_cluster: LocalCluster, etl: dict[str, Any]) -> dict[str, Any]:
    """A short lenet run (2k rows, 1 epoch): its record."""
    code, record = local_cluster.run(
        "lenet", "--input", str(_datasets(local_cluster) / "dg-duckdb"), "--epochs", "1",
        "--batch-size", "64", "--lr", "0.005", "--name", "dg-model",
    )  # fmt: skip
    assert code == 0, record["error"]
    return record


def test_datagen_digits_writes_mnist_csv_deterministically(local_cluster, csvs):
    folder = _datasets(local_cluster) / "dg"
    labels, pixels = read_mnist_csv(folder / "train.csv", name="train.csv")
    assert len(labels) == csvs["train_rows"] == 2000 and pixels.shape == (2000, 784)
    assert (folder / "train.csv").read_text().split("\n", 1)[0].split(",")[:3] == [
        "label", "pixel0", "pixel1"]  # fmt: skip
    assert csvs["train_labels"] == np.bincount(labels, minlength=10).tolist()
    assert pixels.max() == 255 and 0.05 < pixels.mean() / 255 < 0.3  # ink on a dark ground
    again = _ok(local_cluster.run("datagen-digits", "--rows", "2k", "--test-rows", "500",
                                  "--seed", "5", "--name", "dg-again", "--overwrite"))  # fmt: skip
    assert again["checksum"] == csvs["checksum"]
    for name in ("train.csv", "test.csv"):
        assert (folder / name).read_bytes() == (
            _datasets(local_cluster) / "dg-again" / name
        ).read_bytes()
    other = _ok(local_cluster.run("datagen-digits", "--rows", "2k", "--test-rows", "500",
                                  "--seed", "6", "--name", "dg-other", "--overwrite"))  # fmt: skip
    assert other["checksum"] != csvs["checksum"]


def test_no_test_image_descends_from_a_training_original(local_cluster, csvs):
    """Checked by hashing the 8x8 originals themselves, before any augmentation."""
    listed = json.loads((_datasets(local_cluster) / "dg" / "originals.json").read_text())
    images = _digits.originals()[0]
    hashes = {}
    for split in ("train", "test"):
        for entry in listed[split]:
            assert _digits.image_hash(images[entry["index"]]) == entry["hash"]
        hashes[split] = {entry["hash"] for entry in listed[split]}
    assert hashes["train"] and hashes["test"] and not hashes["train"] & hashes["test"]
    assert len(hashes["train"]) + len(hashes["test"]) == len(images)
    assert csvs["test_originals"] == len(hashes["test"]) == 360
    # the first copy of each test original is the original itself, placed: its label too
    labels, _ = read_mnist_csv(_datasets(local_cluster) / "dg" / "test.csv", name="test.csv")
    truth = _digits.originals()[1]
    assert labels[:360].tolist() == [int(truth[e["index"]]) for e in listed["test"]]


def test_real_mnist_csvs_are_checked_and_taken(local_cluster, tmp_path):
    folder = local_cluster.storage / "incoming" / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for name, rows in (("mnist_train.csv", 30), ("mnist_test.csv", 10)):
        buffer = folder / name
        with buffer.open("wb") as sink:
            write_mnist_csv(sink, rng.integers(0, 10, rows), rng.integers(0, 256, (rows, 784)))
        text = buffer.read_text().split("\n", 1)[1]  # pjreddie's files have no header
        buffer.write_text(text)
    result = _ok(local_cluster.run("datagen-digits", "--input", str(folder), "--name", "dg-real",
                                   "--overwrite"))  # fmt: skip
    assert (result["train_rows"], result["test_rows"]) == (30, 10)
    written, _ = read_mnist_csv(_datasets(local_cluster) / "dg-real" / "train.csv", name="x")
    assert len(written) == 30
    lines = (folder / "mnist_test.csv").read_text().split("\n")
    fields = lines[4].split(",")
    fields[42] = "300"
    lines[4] = ",".join(fields)
    (folder / "mnist_test.csv").write_text("\n".join(lines))
    code, record = local_cluster.run("datagen-digits", "--input", str(folder), "--name",
                                     "dg-bad")  # fmt: skip
    assert code != 0 and record["exit_code"] == 2, record
    assert "mnist_test.csv, line 5" in record["error"] and "pixel41" in record["error"]
    assert not (_datasets(local_cluster) / "dg-bad").exists()
    assert not list(_datasets(local_cluster).glob("dg-bad*"))


def test_the_three_etl_engines_write_identical_data(local_cluster, etl):
    checksums = {engine: result["checksum"] for engine, result in etl.items()}
    assert len({json.dumps(c, sort_keys=True) for c in checksums.values()}) == 1, checksums
    assert len({(r["mean"], r["std"]) for r in etl.values()}) == 1
    labels, pixels = read_mnist_csv(_datasets(local_cluster) / "dg" / "test.csv", name="test")
    expected = (pixels.astype(np.float64) / 255).astype(np.float32)
    want = sorted(zip(labels.tolist(), map(bytes, expected), strict=True))
    for engine in ENGINES:
        table = pq.read_table(_datasets(local_cluster) / f"dg-{engine}" / "test")
        assert str(table.schema.field("label").type) == "int32", engine
        assert str(table.schema.field("image").type.value_type) == "float", engine
        images = table.column("image").combine_chunks()
        assert set(pc.list_value_length(images).to_pylist()) == {784}, engine
        flat = pc.list_flatten(images).to_numpy().reshape(-1, 784).astype(np.float32)
        got = sorted(zip(table.column("label").to_pylist(), map(bytes, flat), strict=True))
        assert got == want, f"{engine} wrote other images than the CSV holds"
        meta = json.loads(
            (_datasets(local_cluster) / f"dg-{engine}" / "_clusterkit.json").read_text()
        )
        assert meta["made_by"] == "digits-etl" and meta["rows"] == {"train": 2000, "test": 500}
    mean = (read_mnist_csv(_datasets(local_cluster) / "dg" / "train.csv", name="t")[1]
            .astype(np.float32) / 255).mean()  # fmt: skip
    assert etl["duckdb"]["mean"] == pytest.approx(float(mean), rel=1e-5)


def test_a_short_lenet_run_records_its_figures(local_cluster, lenet):
    result = lenet["result"]
    assert [e["epoch"] for e in result["epochs"]] == [1]
    epoch = result["epochs"][0]
    assert epoch["images_per_s"] > 0 and epoch["loss"] > 0 and 0 <= epoch["accuracy"] <= 1
    assert result["test_accuracy"] > 0.3, "better than chance (0.1) after one epoch"
    matrix = np.array(result["confusion_matrix"])
    assert matrix.shape == (10, 10) and matrix.sum() == result["test_rows"] == 500
    assert np.trace(matrix) == result["test_correct"]
    assert result["model"] == "dg-model:v1"
    assert len(result["workers"]) == result["num_workers"] >= 1
    assert all(w["node_id"] for w in result["workers"])
    assert set(lenet["result"]["stages"]) >= {"open", "load", "train", "evaluate", "save"}
    run_dir = Path(local_cluster.up["state_dir"]) / "runs" / lenet["id"]
    assert json.loads((run_dir / "epochs.json").read_text()) == result["epochs"]
    card = json.loads((local_cluster.storage / "models" / "dg-model" / "v1" / "model.json")
                      .read_text())  # fmt: skip
    assert card["kind"] == "lenet" and card["metrics"]["test_accuracy"] == result["test_accuracy"]


def test_predict_digits_classifies_parquet_and_csv_with_the_model(local_cluster, lenet):
    accuracy = lenet["result"]["test_accuracy"]
    parquet = _ok(local_cluster.run("predict-digits", "--model", "dg-model:v1", "--input",
                                    str(_datasets(local_cluster) / "dg-ray" / "test"),
                                    "--overwrite"))  # fmt: skip
    assert parquet["rows"] == 500 and parquet["rows_per_s"] > 0
    assert parquet["accuracy"] == pytest.approx(accuracy, abs=0.004)
    csv = _ok(local_cluster.run("predict-digits", "--model", "dg-model", "--input",
                                str(_datasets(local_cluster) / "dg" / "test.csv"), "--output",
                                "predictions/dg-csv", "--overwrite"))  # fmt: skip
    assert csv["accuracy"] == pytest.approx(accuracy, abs=0.004)
    table = pq.read_table(local_cluster.storage / "predictions" / "dg-csv")
    assert sorted(table.column("row").to_pylist()) == list(range(500))
    assert set(table.column("predicted").to_pylist()) <= set(range(10))
    only_test = local_cluster.storage / "incoming" / "only-test"
    only_test.mkdir(parents=True, exist_ok=True)
    test_csv = (_datasets(local_cluster) / "dg" / "test.csv").read_bytes()
    (only_test / "mnist_test.csv").write_bytes(test_csv)
    folder = _ok(
        local_cluster.run(
            "predict-digits",
            "--model",
            "dg-model",
            "--input",
            str(only_test),
            "--output",
            "predictions/dg-folder",
        )
    )
    assert folder["rows"] == 500 and folder["accuracy"] == csv["accuracy"]
    ordered = pq.read_table(local_cluster.storage / "predictions" / "dg-folder")
    assert ordered.column("row").to_pylist() == list(range(500)), "in the input's order"
    code, record = local_cluster.run("predict", "--model", "dg-model")
    assert code != 0 and record["exit_code"] == 2
    assert "is a lenet model" in record["error"] and "predict-digits" in record["error"]


def _train_workers() -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        text = " ".join(process.info["cmdline"] or [])
        if "RayTrainWorker" in text or "TrainController" in text:
            found.append(process)
    return found


def test_cancelling_lenet_mid_epoch_leaves_no_train_worker(local_cluster, etl):
    assert _train_workers() == []
    source = str(_datasets(local_cluster) / "dg-duckdb")
    started = local_cluster.cli(
        "run",
        "lenet",
        "--input",
        source,
        "--epochs",
        "200",
        "--batch-size",
        "64",
        "--name",
        "dg-cancelled",
        "--detach",
    )
    assert started.code == 0, started.stderr
    run_id = started.stdout.strip()
    epochs = Path(local_cluster.up["state_dir"]) / "runs" / run_id / "epochs.json"
    deadline = time.monotonic() + 180
    while not epochs.exists():
        assert time.monotonic() < deadline, "lenet never finished an epoch"
        time.sleep(0.2)
    assert _train_workers(), "the Ray Train workers run while the run trains"
    cancelled = local_cluster.cli("cancel", run_id, "--json")
    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled", cancelled.stdout
    deadline = time.monotonic() + 60
    while _train_workers():
        assert time.monotonic() < deadline, [p.cmdline() for p in _train_workers()]
        time.sleep(0.5)
    assert not (local_cluster.storage / "models" / "dg-cancelled").exists()


def test_lenet_refuses_a_batch_its_images_cannot_fill(local_cluster, etl):
    source = str(_datasets(local_cluster) / "dg-ray")
    code, record = local_cluster.run(
        "lenet", "--input", source, "--batch-size", "8192", "--workers", "1", "--name", "dg-no"
    )
    assert code != 0 and record["exit_code"] == 2, record
    assert "2,000 training images make no full batch of 8,192" in record["error"]
    assert not (local_cluster.storage / "models" / "dg-no").exists()


def test_each_etl_engine_reads_a_headerless_crlf_file_with_a_byte_order_mark(local_cluster, csvs):
    """What the validator accepts, every engine reads the same way."""
    source = _datasets(local_cluster) / "dg"
    odd = local_cluster.storage / "incoming" / "odd-csv"
    odd.mkdir(parents=True, exist_ok=True)
    for name in ("train.csv", "test.csv"):
        lines = (source / name).read_text().split("\n")[1:41]  # no header, 40 images
        (odd / name).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    sums = set()
    for engine in ENGINES:
        result = _ok(
            local_cluster.run(
                "digits-etl",
                "--engine",
                engine,
                "--input",
                str(odd),
                "--output",
                f"datasets/odd-{engine}",
                "--overwrite",
            )
        )
        assert (result["train_rows"], result["test_rows"]) == (40, 40), engine
        sums.add(json.dumps(result["checksum"], sort_keys=True))
    assert len(sums) == 1, sums
