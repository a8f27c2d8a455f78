"""Benchmark: Spark vs Ray Data vs DuckDB (and the source's scripts), the table of issue 5.

    .venv/bin/python benchmarks/bench_engines.py [--sizes 1M,30M] [--repeats 3] [--alone 5]

1. ``clusterkit bench --sizes SIZES --repeats N`` on a cluster of its own (ports 29900+): the
   comparison table, copied to benchmarks/results/engines.md and engines.csv.
2. At the largest size, for each job, the kit's DuckDB path vs DuckDB alone
   (benchmarks/duckdb_alone.py: a fresh process, DuckDB's defaults, the same SQL), alternated
   ``--alone`` times: the ratio of medians, the job's own ``wall_s`` over the script's time,
   both from before ``import duckdb`` (target <= 1.2); beside it, the kit's whole run as a
   user waits for it (``clusterkit run``: CLI, supervisor and process start included).
3. From the table: Ray Data over Spark on ``etl`` at the largest size (target <= 1.5).

Writes benchmarks/results/engines.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import RESULTS, ROOT, BenchCluster, bench_cluster, running, save
from bench_jobs import commit

from clusterkit.jobkit import parse_count


def alone(job: str, source: str, target: str) -> float:
    script = str(ROOT / "benchmarks" / "duckdb_alone.py")
    proc = subprocess.run([sys.executable, script, job, source, target], capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"duckdb_alone.py {job} failed:\n{proc.stderr[-3000:]}")
    seconds: float = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
    return seconds


def remove(path: str) -> None:
    for p in (Path(path), Path(path + ".parquet")):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def duckdb_overhead(cluster: BenchCluster, rows: int, repeats: int) -> dict[str, Any]:
    data = cluster.storage / "datasets"
    raw = str(data / f"bench-seed-paper-{rows}")
    inputs = {"etl": raw, "top-earners": raw + "-processed", "age-extremes": raw + "-processed"}
    out: dict[str, Any] = {}
    for job, source in inputs.items():
        kit, whole, base = [], [], []
        target = str(cluster.storage / "bench" / f"{job}-alone")
        for i in range(repeats):
            for is_kit in [True, False] if i % 2 == 0 else [False, True]:
                if is_kit:
                    seconds, proc = cluster.cli("run", job, "--engine", "duckdb", "--input",
                                                source, "--output", target, "--json")  # fmt: skip
                    kit.append(json.loads(proc.stdout)["result"]["wall_s"])
                    whole.append(seconds)
                else:
                    base.append(alone(job, source, target))
                remove(target)
        out[job] = {
            "kit_wall_s": kit, "alone_s": base, "kit_run_end_to_end_s": whole,
            "ratio_kit_over_alone": statistics.median(kit) / statistics.median(base),
            "ratio_end_to_end_over_alone": statistics.median(whole) / statistics.median(base),
        }  # fmt: skip
        print(f"{job}: kit duckdb {statistics.median(kit):.2f} s, alone "
              f"{statistics.median(base):.2f} s, ratio {out[job]['ratio_kit_over_alone']:.2f} "
              f"(whole run {statistics.median(whole):.2f} s)", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1M,30M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--alone", type=int, default=5)
    args = parser.parse_args()
    largest = max(parse_count(s) for s in args.sizes.split(","))
    figures: dict[str, Any] = {
        "commit": commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": f"benchmarks/bench_engines.py --sizes {args.sizes} --repeats {args.repeats} "
        f"--alone {args.alone}",
    }
    with running(bench_cluster(29900)) as cluster:
        _, proc = cluster.cli("bench", "--sizes", args.sizes, "--repeats", str(args.repeats),
                              "--json")  # fmt: skip
        record = json.loads(proc.stdout)
        result = record["result"]
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(result["markdown"], RESULTS / "engines.md")
        shutil.copy(result["csv"], RESULTS / "engines.csv")
        figures["bench_wall_s"] = record["wall_s"]
        figures["table"] = result["table"]
        print(Path(result["markdown"]).read_text(), flush=True)
        figures["duckdb_kit_vs_alone"] = duckdb_overhead(cluster, largest, args.alone)
    etl = {r["engine"]: r["median_s"] for r in result["table"]
           if r["job"] == "etl" and r["rows"] == largest}  # fmt: skip
    figures["ray_over_spark_etl"] = etl["ray"] / etl["spark"]
    print(f"etl at {largest:,} rows: Ray Data / Spark = {figures['ray_over_spark_etl']:.2f} "
          f"(target <= 1.5)")  # fmt: skip
    print(f"wrote {save('engines', figures)}")


if __name__ == "__main__":
    main()
