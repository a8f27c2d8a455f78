"""Benchmark: `up` to healthy, `down` to clean, and the cost of metrics sampling.

    .venv/bin/python benchmarks/bench_lifecycle.py [--cycles 5] [--pairs 5] [--rows 1M]
        [--samples 1B]

1. ``up`` and ``down`` of the local cluster, each timed as the CLI command a user types
   (process start to exit), ``--cycles`` times; prints the medians next to the targets
   (up <= 15 s, down <= 5 s).
2. The sampler's cost: ``--pairs`` pairs of the same job with sampling on and off, the
   order alternating within pairs, for a Spark job (datagen, I/O heavy and noisy) and a
   CPU-bound Ray job (ray-pi, which competes with the sampler for the two cores); prints
   each pair's wall-time ratio (on / off, the job process's wall time from the run record)
   and their median (target <= 1.02). Ratios are measured side by side in one session
   because absolute times drift on a shared machine. Beside it, the sampler thread's own
   CPU time as a share of the job's wall time: a direct measure that noise cannot hide.

Uses its own CLUSTERKIT_HOME and ports, so it does not touch a cluster you have running.
Writes the figures as JSON to benchmarks/results/lifecycle.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from _harness import BenchCluster, bench_cluster, running, save


def lifecycle(cluster: BenchCluster, cycles: int) -> tuple[list[float], list[float]]:
    ups, downs = [], []
    for i in range(cycles):
        up_s, _ = cluster.cli("up", "--spec", str(cluster.spec))
        down_s, _ = cluster.cli("down")
        ups.append(up_s)
        downs.append(down_s)
        print(f"cycle {i + 1}: up {up_s:.2f} s, down {down_s:.2f} s", flush=True)
    return ups, downs


def sampling_pairs(cluster: BenchCluster, job: list[str], pairs: int) -> list[dict[str, float]]:
    """Paired runs of ``job`` with sampling on and off; the order alternates per pair."""
    cluster.run(*job)  # warm-up: JIT, page cache, first workers
    found = []
    for i in range(pairs):
        walls: dict[bool, float] = {}
        share = 0.0
        for metrics_on in [True, False] if i % 2 == 0 else [False, True]:
            record = cluster.run(*job, "--metrics" if metrics_on else "--no-metrics")
            walls[metrics_on] = record["wall_s"]
            if metrics_on:
                node = next(iter(record["nodes"].values()))
                share = node["sampler_cpu_s"] / record["wall_s"]
        ratio = walls[True] / walls[False]
        found.append({"on_s": walls[True], "off_s": walls[False], "ratio": ratio,
                      "sampler_cpu_share": share})  # fmt: skip
        print(
            f"{job[0]} pair {i + 1}: sampling on {walls[True]:.2f} s, off {walls[False]:.2f} s,"
            f" ratio {ratio:.3f}; sampler CPU {100 * share:.2f}% of wall",
            flush=True,
        )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--rows", default="1M", help="datagen rows per run")
    parser.add_argument("--samples", default="1B", help="ray-pi samples per run")
    args = parser.parse_args()

    cluster = bench_cluster(29000)
    ups, downs = lifecycle(cluster, args.cycles)
    jobs = {
        "datagen": ["datagen", "--rows", args.rows, "--overwrite"],
        "ray-pi": ["ray-pi", "--samples", args.samples],
    }
    with running(cluster):
        pairs = {name: sampling_pairs(cluster, job, args.pairs) for name, job in jobs.items()}

    def median_of(key: str) -> dict[str, float]:
        return {
            name: statistics.median(p[key] for p in runs) for name, runs in pairs.items() if runs
        }

    figures: dict[str, Any] = {
        "up_s": ups, "down_s": downs, "pairs": pairs,
        "up_median_s": statistics.median(ups), "down_median_s": statistics.median(downs),
        "sampling_ratio_median": median_of("ratio"),
        "sampler_cpu_share_median": median_of("sampler_cpu_share"),
        "rows": args.rows, "samples": args.samples, "cpus": os.cpu_count(),
    }  # fmt: skip
    print()
    print(f"up   median {figures['up_median_s']:.2f} s over {args.cycles} (target <= 15 s)")
    print(f"down median {figures['down_median_s']:.2f} s over {args.cycles} (target <= 5 s)")
    for name in jobs:
        print(
            f"{name}: sampling on/off wall-time ratio, median of {args.pairs} pairs: "
            f"{figures['sampling_ratio_median'][name]:.3f} (target <= 1.02); the sampler's own "
            f"CPU: {100 * figures['sampler_cpu_share_median'][name]:.2f}% of wall time"
        )
    save("lifecycle", figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
