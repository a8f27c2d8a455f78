"""datagen: the people dataset (id, name, age, salary, signup_date, is_active) as Parquet.

Rows are made in fixed blocks of BLOCK_ROWS, each from its own random stream seeded by
(seed, block), and the blocks are spread over Spark's executors: the same seed and row count
give the same rows whatever the partitioning, and no process holds more than a few blocks.
The dataset is written to a temporary folder and committed by rename, so a failed or
cancelled run leaves nothing half-written.

Profiles:
- realistic: salary = 30000 + 1200*(age-18) + 8000*is_active + 2500*tenure_years + N(0, SIGMA)
  with tenure measured from signup_date to REFERENCE_DATE; the best possible MSE is SIGMA**2.
- seed-paper: the source project's generator (salary ~ U(30000, 120000) independent of the
  rest, age 18-64, five names, 2020-01-01 + 0..3649 days, a fair coin for is_active).
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from jobs._lib import Job, JobContext, JobInputError, Param

BLOCK_ROWS = 100_000
SIGMA = 10_000.0
REFERENCE_DATE = date(2025, 1, 1)
FIRST = [
    "Alice",
    "Bob",
    "Charlie",
    "David",
    "Eve",
    "Fatima",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Yuki",
]
LAST = [
    "Smith",
    "Garcia",
    "Chen",
    "Okafor",
    "Novak",
    "Silva",
    "Khan",
    "Muller",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Haddad",
    "Nguyen",
    "Larsen",
    "Dubois",
    "Ibrahim",
]
SEED_PAPER_NAMES = ["Alice", "Bob", "Charlie", "David", "Eve"]
SCHEMA = "id long, name string, age int, salary double, signup_date date, is_active boolean"


def make_block(block: int, rows: int, *, seed: int, profile: str) -> dict[str, Any]:
    """Columns of one block (numpy arrays), from the block's own random stream."""
    import numpy as np

    rng = np.random.default_rng([seed, block])
    start = block * BLOCK_ROWS
    ids = np.arange(start, start + rows, dtype=np.int64)
    age = rng.integers(18, 65, rows, dtype=np.int32)
    is_active = rng.random(rows) < 0.5
    if profile == "seed-paper":
        names = np.array(SEED_PAPER_NAMES)[rng.integers(0, 5, rows)]
        days = rng.integers(0, 3650, rows)
        signup = np.datetime64("2020-01-01") + days.astype("timedelta64[D]")
        salary = rng.uniform(30_000, 120_000, rows)
    else:
        names = np.char.add(
            np.char.add(np.array(FIRST)[rng.integers(0, len(FIRST), rows)], " "),
            np.array(LAST)[rng.integers(0, len(LAST), rows)],
        )
        days = rng.integers(0, 3650, rows)
        signup = np.datetime64("2015-01-01") + days.astype("timedelta64[D]")
        tenure_years = (np.datetime64(REFERENCE_DATE) - signup).astype(np.float64) / 365.25
        salary = (
            30_000
            + 1_200 * (age - 18)
            + 8_000 * is_active
            + 2_500 * tenure_years
            + rng.normal(0.0, SIGMA, rows)
        )
    return {
        "id": ids,
        "name": names,
        "age": age,
        "salary": np.round(salary, 2),
        "signup_date": signup.astype("datetime64[D]"),
        "is_active": is_active,
    }


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    rows, seed, profile = int(p["rows"]), int(p["seed"]), p["profile"]
    spark = ctx.spark()
    path = ctx.storage_path("datasets", p["name"])
    jvm = spark._jvm
    hconf = spark._jsc.hadoopConfiguration()
    target = jvm.org.apache.hadoop.fs.Path(path)
    fs = target.getFileSystem(hconf)
    if fs.exists(target) and not p["overwrite"]:
        raise JobInputError(f"dataset {path} exists; pass --overwrite to replace it")

    blocks = (rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    partitions = int(p["partitions"]) or max(1, min(blocks, spark.sparkContext.defaultParallelism))

    def generate(batches: Any) -> Any:
        import pyarrow as pa

        for batch in batches:
            for block in batch.column("id").to_pylist():
                count = min(BLOCK_ROWS, rows - block * BLOCK_ROWS)
                yield pa.RecordBatch.from_pydict(
                    make_block(block, count, seed=seed, profile=profile)
                )

    tmp = f"{path}.tmp-{ctx.run_id}"
    with ctx.stage("generate_and_write"):
        (
            spark.range(0, blocks, numPartitions=partitions)
            .mapInArrow(generate, SCHEMA)
            .write.mode("overwrite")
            .parquet(tmp)
        )
    meta = {
        "profile": profile,
        "seed": seed,
        "rows": rows,
        "block_rows": BLOCK_ROWS,
        "sigma": SIGMA if profile == "realistic" else None,
        "reference_date": REFERENCE_DATE.isoformat(),
    }
    out = fs.create(jvm.org.apache.hadoop.fs.Path(f"{tmp}/_clusterkit.json"), True)
    out.write(bytearray(json.dumps(meta, indent=2).encode()))
    out.close()
    with ctx.stage("commit"):
        if fs.exists(target):
            fs.delete(target, True)
        if not fs.rename(jvm.org.apache.hadoop.fs.Path(tmp), target):
            raise RuntimeError(f"could not rename {tmp} to {path}")
    with ctx.stage("count"):
        written = spark.read.parquet(path).count()
    if written != rows:
        raise RuntimeError(f"wrote {written} rows to {path}, expected {rows}")
    print(f"datagen: {rows} rows ({profile}, seed {seed}) in {partitions} partitions -> {path}")
    return {"rows": rows, "columns": 6, "path": path, "partitions": partitions, **meta}


JOB = Job(
    name="datagen",
    summary="Generate the people dataset as Parquet (realistic or seed-paper profile)",
    engine="spark",
    main=main,
    params=[
        Param("rows", "count", 1_000_000, "rows to generate: 1000, 200k, 30M"),
        Param("seed", "int", 42, "random seed: the same seed gives the same data"),
        Param("partitions", "int", 0, "Spark partitions (0: one per core)"),
        Param("profile", "choice", "realistic", "data profile", ("realistic", "seed-paper")),
        Param("name", "str", "people", "dataset name under <storage>/datasets/"),
        Param("overwrite", "bool", False, "replace an existing dataset"),
    ],
)
