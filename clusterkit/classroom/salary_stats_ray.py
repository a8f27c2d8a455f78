"""Salary statistics with Ray tasks, one per Parquet file of the people dataset (datagen's).

    clusterkit submit examples/salary_stats_ray.py [-- --input PATH]

Run `clusterkit run datagen` first: this reads $CLUSTERKIT_STORAGE/datasets/people, which
`clusterkit submit` sets (a folder locally, hdfs://... on AWS). ``ray.init()`` joins the
cluster (RAY_ADDRESS is set too). Each task reads one file with pyarrow where Ray runs it
and returns sums; the script adds them up and prints the rows, the mean and standard
deviation of the salary, for the active and the inactive, and the nodes that did the work.
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from typing import Any


def file_sums(dataset: str, name: str) -> dict[str, Any]:
    """Rows, sum and sum of squares of the salary in one file, by ``is_active``."""
    import pyarrow.compute as pc
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, root = pafs.FileSystem.from_uri(dataset)
    table = pq.read_table(f"{root}/{name}", filesystem=fs, columns=["salary", "is_active"])
    sums: dict[str, Any] = {"host": socket.gethostname()}
    for active in (True, False):
        salary = table.filter(pc.equal(table["is_active"], active))["salary"]
        sums[str(active)] = (len(salary), pc.sum(salary).as_py() or 0.0,
                             pc.sum(pc.multiply(salary, salary)).as_py() or 0.0)  # fmt: skip
    return sums


def parquet_files(dataset: str) -> list[str]:
    """The names of the dataset's Parquet files (not the kit's ``_clusterkit.json``)."""
    import pyarrow.fs as pafs

    fs, root = pafs.FileSystem.from_uri(dataset)
    infos = fs.get_file_info(pafs.FileSelector(root))
    return sorted(i.base_name for i in infos if i.base_name.endswith(".parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--input", help="a Parquet folder (default: datagen's people)")
    args = parser.parse_args()
    storage = os.environ.get("CLUSTERKIT_STORAGE")
    if args.input is None and not storage:
        sys.exit("CLUSTERKIT_STORAGE is not set: run this with `clusterkit submit`, or give "
                 "--input")  # fmt: skip
    dataset = args.input or f"{storage}/datasets/people"
    files = parquet_files(dataset)
    if not files:
        sys.exit(f"{dataset} holds no Parquet file: run `clusterkit run datagen` first")

    import ray

    ray.init()
    task = ray.remote(file_sums)
    parts = ray.get([task.remote(dataset, name) for name in files])
    print(f"{dataset}: {len(files)} files, read on {sorted({p['host'] for p in parts})}")
    for active in ("True", "False"):
        rows = sum(p[active][0] for p in parts)
        total = sum(p[active][1] for p in parts)
        squares = sum(p[active][2] for p in parts)
        mean = total / rows if rows else 0.0
        std = math.sqrt(max(squares / rows - mean * mean, 0.0)) if rows else 0.0
        label = "active" if active == "True" else "inactive"
        print(f"{label:<9}{rows:>10,} rows  mean salary {mean:>12,.2f}  std {std:>10,.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
