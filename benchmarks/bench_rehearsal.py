"""Benchmark: the netns rehearsal's `up`, and etl on it beside the same run on the local provider.

    .venv/bin/python benchmarks/bench_rehearsal.py [--rows 1M] [--repeats 3]   (root)

1. ``clusterkit up --provider netns`` from nothing (namespaces, nodes, the playbooks, health):
   its wall time (target <= 5 min).
2. ``etl`` over the same number of rows on both clusters, alternating local and rehearsal,
   ``--repeats`` times each: the median job wall times and their ratio (rehearsal / local).
   On the rehearsal the driver runs on the master and the executors on the worker, two
   namespaces of this one machine, so the ratio shows what the two-node layout costs
   (executor start on another node, data through the shared folder), not network speed.

Uses clusters of its own (the local one on ports 29900+). Writes benchmarks/results/rehearsal.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import yaml
from _harness import BenchCluster, bench_cluster, running, save
from bench_jobs import commit


def rehearsal_cluster() -> BenchCluster:
    work = Path(tempfile.mkdtemp(prefix="ck-bench-netns-"))
    spec = work / "clusterkit.yaml"
    spec.write_text(yaml.safe_dump({"name": "bench", "provider": "netns"}))
    local = bench_cluster(29900)
    return BenchCluster(work, spec, {**local.env, "CLUSTERKIT_HOME": str(work / "home")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", default="1M")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    netns = rehearsal_cluster()
    up_s, _ = netns.cli("up", "--spec", str(netns.spec))
    print(f"up --provider netns: {up_s:.1f} s (target <= 300 s)", flush=True)
    etl: dict[str, list[float]] = {"local": [], "netns": []}
    try:
        with running(bench_cluster(29900)) as local:
            clusters = {"local": local, "netns": netns}
            for cluster in clusters.values():
                cluster.run("datagen", "--rows", args.rows)
            for i in range(args.repeats):
                for name, cluster in clusters.items():
                    record = cluster.run("etl", "--overwrite")
                    result: dict[str, Any] = record["result"]
                    etl[name].append(result["wall_s"])
                    print(f"round {i + 1}: etl on {name}: {result['wall_s']:.1f} s", flush=True)
    finally:
        netns.cli("down")
    medians = {name: statistics.median(times) for name, times in etl.items()}
    figures = {
        "commit": commit(),
        "rows": args.rows,
        "up_netns_s": round(up_s, 1),
        "etl_wall_s": etl,
        "etl_median_s": medians,
        "etl_ratio_netns_over_local": round(medians["netns"] / medians["local"], 3),
    }
    print(json.dumps({k: figures[k] for k in ("etl_median_s", "etl_ratio_netns_over_local")}))
    print(f"-> {save('rehearsal', figures)}")


if __name__ == "__main__":
    main()
