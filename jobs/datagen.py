"""datagen: the people dataset (id, name, age, salary, signup_date, is_active) as Parquet.

Rows are made in fixed blocks of BLOCK_ROWS, each from its own random stream seeded by
(seed, block). Ray tasks, one per output file, generate their blocks with numpy and write
them with pyarrow straight to the storage root, one block in memory at a time: the same seed
and row count give the same rows whatever the partitioning or node count. Files go to a
temporary folder that is committed by rename once every task has finished, so a failed or
cancelled run leaves nothing half-written. ``result.json`` carries ``checksum``: the sum
(mod 2**64) of a 64-bit hash of every row written, which depends on the rows, not on their
order or partitioning. ``--name`` follows the rule of cluster names (so it cannot leave
``<storage>/datasets/``), and an existing dataset is replaced only with ``--overwrite`` (and
only one the kit made).

Profiles:
- realistic: salary = 30000 + 1200*(age-18) + 8000*is_active + 2500*tenure_years + N(0, SIGMA)
  where tenure_years = (REFERENCE_DATE - signup_date) / 365.25 days, age uniform 18-64,
  is_active a fair coin, signup_date 2015-01-01 + 0..3649 days, names from 20 first and 16
  last names. The best possible MSE of any model is SIGMA**2 = 1e8; the features explain
  about 77% of the variance (R2 ~ 0.77).
- seed-paper: the source project's generator (salary ~ U(30000, 120000) independent of the
  rest, age 18-64, five names, 2020-01-01 + 0..3649 days, a fair coin for is_active). Unlike
  the source, ids are unique and blocks are not copies of each other. Its best possible MSE
  is the variance of U(30000, 120000), 90000**2/12 = 6.75e8: the features carry no signal.

Storage: local folders through pyarrow's local file system; an hdfs:// root through
pyarrow's HadoopFileSystem, which needs libhdfs on the nodes (the hadoop role installs it).
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from clusterkit.jobkit import Job, JobContext, Param, check_name
from jobs._storage import OVERWRITE_PARAM, ArrowStorage, check_output, job_output, writing

BLOCK_ROWS = 100_000
ROWS_PER_FILE = 2_000_000
SIGMA = 10_000.0
#: seed-paper salaries are U(30000, 120000) whatever the features: no model beats the variance
SEED_PAPER_VARIANCE = 90_000.0**2 / 12
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
FULL_NAMES = [f"{first} {last}" for first in FIRST for last in LAST]
SEED_PAPER_NAMES = ["Alice", "Bob", "Charlie", "David", "Eve"]
COLUMNS = ["id", "name", "age", "salary", "signup_date", "is_active"]
#: Parquet dictionary encoding for the low-cardinality columns only: trying it on unique ids
#: and salaries costs time for nothing (measured: 22 ms -> 10.5 ms a block, smaller files).
DICTIONARY_COLUMNS = ["name", "age", "signup_date", "is_active"]


def make_block(block: int, rows: int, *, seed: int, profile: str) -> dict[str, Any]:
    """Columns of one block, from the block's own random stream: numpy arrays, and ``name``
    as an Arrow dictionary array (indices into the profile's name list)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng([seed, block])
    start = block * BLOCK_ROWS
    ids = np.arange(start, start + rows, dtype=np.int64)
    age = rng.integers(18, 65, rows, dtype=np.int32)
    is_active = rng.random(rows) < 0.5
    days = rng.integers(0, 3650, rows).astype("timedelta64[D]")
    if profile == "seed-paper":
        dictionary = SEED_PAPER_NAMES
        codes = rng.integers(0, len(dictionary), rows, dtype=np.int32)
        signup = np.datetime64("2020-01-01") + days
        salary = rng.uniform(30_000, 120_000, rows)
    else:
        dictionary = FULL_NAMES
        codes = rng.integers(0, len(dictionary), rows, dtype=np.int32)
        signup = np.datetime64("2015-01-01") + days
        tenure_years = (np.datetime64(REFERENCE_DATE) - signup).astype(np.float64) / 365.25
        salary = (
            30_000 + 1_200 * (age - 18) + 8_000 * is_active + 2_500 * tenure_years
            + rng.normal(0.0, SIGMA, rows)
        )  # fmt: skip
    names = pa.DictionaryArray.from_arrays(pa.array(codes), pa.array(dictionary))
    return {"id": ids, "name": names, "age": age, "salary": np.round(salary, 2),
            "signup_date": signup, "is_active": is_active}  # fmt: skip


def _mix(x: Any) -> Any:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic)."""
    import numpy as np

    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def rows_checksum(columns: dict[str, Any]) -> int:
    """Sum (mod 2**64) of a 64-bit hash of each row's values (names hashed by their text)."""
    import hashlib

    import numpy as np

    names = columns["name"]
    name_hashes = np.array(
        [int.from_bytes(hashlib.blake2b(str(n).encode(), digest_size=8).digest(), "little")
         for n in names.dictionary.to_pylist()],
        dtype=np.uint64,
    )[names.indices.to_numpy()]  # fmt: skip
    h = _mix(columns["id"].astype(np.uint64))
    for values in (
        name_hashes,
        columns["age"].astype(np.uint64),
        columns["salary"].view(np.uint64),
        columns["signup_date"].astype(np.int64).astype(np.uint64),
        columns["is_active"].astype(np.uint64),
    ):
        h = _mix(h ^ values)
    return int(h.sum(dtype=np.uint64))


def write_file(
    folder: str, part: int, blocks: range, *, rows: int, seed: int, profile: str
) -> tuple[int, int]:
    """Generate ``blocks`` and write them as one Parquet file; return (rows, checksum)."""
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, root = pafs.FileSystem.from_uri(folder)
    written, checksum = 0, 0
    with fs.open_output_stream(f"{root}/part-{part:05d}.parquet") as out:
        writer = None
        for block in blocks:
            count = min(BLOCK_ROWS, rows - block * BLOCK_ROWS)
            columns = make_block(block, count, seed=seed, profile=profile)
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema, use_dictionary=DICTIONARY_COLUMNS)
            writer.write_table(table)
            written += count
            checksum = (checksum + rows_checksum(columns)) % 2**64
        if writer is not None:
            writer.close()
    return written, checksum


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    rows, seed, profile = int(p["rows"]), int(p["seed"]), p["profile"]
    name = check_name(p["name"], param="name")
    storage = ArrowStorage()
    out = job_output(ctx, f"datasets/{name}", param="--name")
    check_output(storage, out)

    ray = ctx.ray()
    blocks = (rows + BLOCK_ROWS - 1) // BLOCK_ROWS
    cpus = int(ray.cluster_resources().get("CPU", 1))
    files = min(blocks, int(p["partitions"]) or max(cpus, -(-rows // ROWS_PER_FILE)))
    bounds = [blocks * i // files for i in range(files + 1)]
    meta: dict[str, Any] = {
        "profile": profile, "seed": seed, "rows": rows, "block_rows": BLOCK_ROWS,
        "sigma": SIGMA if profile == "realistic" else None,
        "noise_floor": SIGMA**2 if profile == "realistic" else SEED_PAPER_VARIANCE,
        "reference_date": REFERENCE_DATE.isoformat(),
    }  # fmt: skip
    with writing(storage, out, meta=meta, stage=ctx.stage("commit")) as tmp:
        storage.make_dir(tmp)
        with ctx.stage("generate_and_write"):
            parts = [range(bounds[i], bounds[i + 1]) for i in range(files)]
            done_rows, checksum = _generate(ctx, storage.uri(tmp), parts, rows=rows, seed=seed,
                                            profile=profile)  # fmt: skip
        if done_rows != rows:
            raise RuntimeError(f"wrote {done_rows} rows to {out.path}, expected {rows}")
        meta["checksum"] = f"{checksum:016x}"  # read by the commit, into _clusterkit.json
    path = out.path
    print(f"datagen: {rows} rows ({profile}, seed {seed}) in {files} files -> {path}")
    print(f"datagen: checksum {checksum:016x}")
    return {"rows": rows, "columns": len(COLUMNS), "path": path, "partitions": files, **meta}


def _generate(
    ctx: JobContext, folder: str, parts: list[range], *, rows: int, seed: int, profile: str
) -> tuple[int, int]:
    """Write ``parts`` (the blocks of each file) into ``folder`` as Ray tasks, one a file;
    (rows, checksum). On a failure the tasks still going are cancelled before it is raised,
    so none writes into the folder after it is removed."""
    ray = ctx.ray()
    task = ray.remote(num_cpus=1)(write_file)
    pending = [task.remote(folder, i, blocks, rows=rows, seed=seed, profile=profile)
               for i, blocks in enumerate(parts)]  # fmt: skip
    done_rows, checksum = 0, 0
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            part_rows, part_sum = ray.get(ready[0])
            done_rows += part_rows
            checksum = (checksum + part_sum) % 2**64
            ctx.progress(done_rows, rows, "rows")
    except BaseException:
        with contextlib.suppress(Exception):  # best effort: the error raised is the first
            for ref in pending:
                ray.cancel(ref, force=True)
            if pending:
                ray.wait(pending, num_returns=len(pending), timeout=30)
        raise
    return done_rows, checksum


JOB = Job(
    name="datagen",
    summary="Generate the people dataset as Parquet (realistic or seed-paper profile)",
    engine="ray",
    main=main,
    params=[
        Param("rows", "count", 1_000_000, "rows to generate: 1000, 200k, 30M"),
        Param("seed", "int", 42, "random seed: the same seed gives the same data"),
        Param("partitions", "int", 0, "output files, one Ray task each (0: 1 per 2M rows)"),
        Param("profile", "choice", "realistic", "data profile", ("realistic", "seed-paper")),
        Param("name", "str", "people", "dataset name under <storage>/datasets/ (a-z, 0-9, -)"),
        OVERWRITE_PARAM,
    ],
)
