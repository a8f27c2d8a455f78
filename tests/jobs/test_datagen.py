"""datagen on the real local cluster: determinism, the profiles' statistics, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs.datagen import REFERENCE_DATE, SEED_PAPER_NAMES, SIGMA
from tests.conftest import LocalCluster

pytestmark = pytest.mark.cluster


def _read(path: str) -> pd.DataFrame:
    return pd.read_parquet(path)


def test_same_seed_same_checksum_whatever_the_partitioning(local_cluster: LocalCluster):
    checksums = {}
    for partitions in (1, 4):
        code, record = local_cluster.run(
            "datagen", "--rows", "450k", "--seed", "7", "--partitions", str(partitions),
            "--name", f"det{partitions}",
        )  # fmt: skip
        assert code == 0, record["error"]
        assert record["result"]["partitions"] == partitions
        checksums[partitions] = record["result"]["checksum"]
    assert checksums[1] == checksums[4]
    a, b = (_read(str(local_cluster.storage / "datasets" / f"det{n}")) for n in (1, 4))
    pd.testing.assert_frame_equal(
        a.sort_values("id").reset_index(drop=True), b.sort_values("id").reset_index(drop=True)
    )
    code, other = local_cluster.run("datagen", "--rows", "450k", "--seed", "8", "--name", "det8")
    assert code == 0 and other["result"]["checksum"] != checksums[1]


def test_realistic_profile_noise_and_signal(local_cluster: LocalCluster):
    code, record = local_cluster.run("datagen", "--rows", "300k", "--name", "realistic")
    assert code == 0, record["error"]
    assert record["result"]["sigma"] == SIGMA and record["result"]["noise_floor"] == SIGMA**2
    df = _read(record["result"]["path"])
    assert len(df) == 300_000 and df["id"].is_unique
    tenure = (pd.Timestamp(REFERENCE_DATE) - pd.to_datetime(df["signup_date"])).dt.days / 365.25
    truth = 30_000 + 1_200 * (df["age"] - 18) + 8_000 * df["is_active"] + 2_500 * tenure
    residual = df["salary"] - truth
    assert abs(residual.var() / SIGMA**2 - 1) < 0.02  # the documented sigma
    r2 = 1 - residual.var() / df["salary"].var()
    assert r2 >= 0.5  # the features explain most of the variance
    assert set(record["result"]["stages"]) == {"generate_and_write", "commit"}
    assert (Path(record["artifacts"]) / "progress.json").exists()


def test_seed_paper_profile_matches_the_source_generator(local_cluster: LocalCluster):
    code, record = local_cluster.run(
        "datagen", "--rows", "300k", "--profile", "seed-paper", "--name", "paper"
    )
    assert code == 0, record["error"]
    assert record["result"]["sigma"] is None
    df = _read(record["result"]["path"])
    assert df["age"].min() == 18 and df["age"].max() == 64
    assert set(df["name"]) == set(SEED_PAPER_NAMES)
    dates = pd.to_datetime(df["signup_date"])
    assert dates.min() == pd.Timestamp("2020-01-01")
    assert dates.max() == pd.Timestamp("2020-01-01") + pd.Timedelta(days=3649)
    assert abs(df["is_active"].mean() - 0.5) < 0.01
    salary = df["salary"]
    assert salary.min() >= 30_000 and salary.max() <= 120_000
    assert abs(salary.var() / (90_000**2 / 12) - 1) < 0.02  # Var(U(30000, 120000))
    deciles = np.histogram(salary, bins=10, range=(30_000, 120_000))[0] / len(df)
    assert np.all(np.abs(deciles - 0.1) < 0.005)  # flat: uniform
    assert abs(np.corrcoef(salary, df["age"])[0, 1]) < 0.01  # independent of the features


def test_existing_dataset_is_kept_without_overwrite(local_cluster: LocalCluster):
    code, first = local_cluster.run("datagen", "--rows", "20k", "--name", "keep")
    assert code == 0
    code, second = local_cluster.run("datagen", "--rows", "30k", "--name", "keep")
    assert code == 1 and second["status"] == "failed"
    assert second["error"].endswith(
        "exists: pass --overwrite to replace it (or choose another --name)"
    )
    assert len(_read(first["result"]["path"])) == 20_000  # untouched
    code, _ = local_cluster.run("datagen", "--rows", "30k", "--name", "keep", "--overwrite")
    assert code == 0 and len(_read(first["result"]["path"])) == 30_000
    leftovers = [
        p.name for p in (local_cluster.storage / "datasets").iterdir() if ".tmp-" in p.name
    ]
    assert leftovers == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rows", "0"], "--rows of job datagen: '0' must be at least 1"),
        (["--rows", "-5"], "--rows of job datagen: '-5' is not a count"),
        (["--rows", "many"], "--rows of job datagen: 'many' is not a count"),
        (["--profile", "weird"], "'weird' is not one of realistic, seed-paper"),
    ],
)
def test_bad_parameters_are_refused_and_recorded(local_cluster: LocalCluster, args, expected):
    before = {r["id"] for r in local_cluster.cli("runs", "--json").json()}
    result = local_cluster.cli("run", "datagen", *args)
    assert result.code == 2 and expected in result.stderr
    new = [r for r in local_cluster.cli("runs", "--json").json() if r["id"] not in before]
    assert len(new) == 1
    assert new[0]["status"] == "failed" and expected in new[0]["error"]
    assert new[0]["job"] == "datagen" and new[0]["params"] == {"argv": args}
