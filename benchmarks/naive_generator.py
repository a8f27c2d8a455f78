"""A plain single-process numpy/pandas generator of the people dataset: the baseline for
``datagen``. Written the way one usually would (chunks of 2M rows, names as Python strings,
``DataFrame.to_parquet``), with the same columns and the realistic profile's formula.

    python benchmarks/naive_generator.py ROWS OUTPUT_FOLDER
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
import pandas as pd

from jobs.datagen import FULL_NAMES, REFERENCE_DATE, SIGMA

CHUNK = 2_000_000


def main() -> None:
    rows, out = int(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.perf_counter()
    rng = np.random.default_rng(42)
    names = np.array(FULL_NAMES)
    for part, start in enumerate(range(0, rows, CHUNK)):
        n = min(CHUNK, rows - start)
        age = rng.integers(18, 65, n)
        active = rng.random(n) < 0.5
        signup = np.datetime64("2015-01-01") + rng.integers(0, 3650, n).astype("timedelta64[D]")
        tenure = (np.datetime64(REFERENCE_DATE) - signup).astype(np.float64) / 365.25
        salary = (30_000 + 1_200 * (age - 18) + 8_000 * active + 2_500 * tenure
                  + rng.normal(0, SIGMA, n))  # fmt: skip
        frame = pd.DataFrame({
            "id": np.arange(start, start + n), "name": rng.choice(names, n), "age": age,
            "salary": salary.round(2), "signup_date": signup, "is_active": active,
        })  # fmt: skip
        frame.to_parquet(f"{out}/part-{part:05d}.parquet", index=False)
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3), "rows": rows}))


if __name__ == "__main__":
    main()
