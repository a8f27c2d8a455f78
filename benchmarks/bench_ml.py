"""Benchmark: train and predict at the sizes of issue 4, in one session.

    .venv/bin/python benchmarks/bench_ml.py [--train-rows 1M] [--predict-rows 10M]

1. ``train`` with the default search on a 1M-row sample of the realistic profile: the job's
   wall time (target <= 90 s) and held-out MSE / noise floor (target <= 1.02).
2. The same training on a cluster whose Ray has 1 CPU (``nodes.ray_cpus: 1``) and on one
   with 2, side by side: the ratio of the ``search`` stage's times (target >= 1.5) and, beside
   it, of the whole jobs (which also hold Spark's start-up and the sample, unchanged by Ray's
   CPUs).
3. ``predict`` over 10M rows with the model from 1: rows per second over the job's whole wall
   time, connecting to Ray included (target >= 500k rows/s; the source project: 5,000 rows
   in 20 s).

Uses clusters of its own (ports 29700+). Writes benchmarks/results/ml.json.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from _harness import BenchCluster, bench_cluster, running, save
from bench_jobs import commit


def _train(cluster: BenchCluster, rows: str) -> dict[str, Any]:
    record = cluster.run("train", "--sample", rows, "--seed", "1")
    result: dict[str, Any] = record["result"]
    return {
        "wall_s": result["wall_s"],
        "search_s": result["stages"]["search"],
        "stages": result["stages"],
        "mse_over_noise_floor": result["mse_over_noise_floor"],
        "r2": result["r2"],
        "best_model": result["best_model"],
        "best_params": result["best_params"],
        "trials": result["trials"],
        "fits": result["fits"],
        "fits_by_process": result["fits_by_process"],
        "train_rows": result["train_rows"],
        "peak_rss_bytes": result.get("peak_rss_bytes"),
        "model": result["model"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-rows", default="1M")
    parser.add_argument("--predict-rows", default="10M")
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "commit": commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    gen = ("datagen", "--rows", args.train_rows, "--seed", "7", "--overwrite")
    by_cpus = {}
    for cpus, port in ((1, 29700), (2, 29800)):
        with running(bench_cluster(port, nodes={"ray_cpus": cpus})) as cluster:
            cluster.run(*gen)
            by_cpus[cpus] = _train(cluster, args.train_rows)
            print(f"ray_cpus={cpus}: train {by_cpus[cpus]['wall_s']:.1f} s, search "
                  f"{by_cpus[cpus]['search_s']:.1f} s, mse/noise floor "
                  f"{by_cpus[cpus]['mse_over_noise_floor']:.4f}", flush=True)  # fmt: skip
            if cpus == 2:
                cluster.run("datagen", "--rows", args.predict_rows, "--seed", "8",
                            "--name", "predict-input", "--overwrite")  # fmt: skip
                source = str(cluster.storage / "datasets" / "predict-input")
                predict = cluster.run("predict", "--model", by_cpus[2]["model"],
                                      "--input", source)["result"]  # fmt: skip
    one, two = by_cpus[1], by_cpus[2]
    figures["train"] = two
    figures["train_1_cpu"] = one
    figures["search_speedup_2_vs_1_cpu"] = round(one["search_s"] / two["search_s"], 3)
    figures["job_speedup_2_vs_1_cpu"] = round(one["wall_s"] / two["wall_s"], 3)
    figures["predict"] = {k: predict[k] for k in ("rows", "wall_s", "rows_per_s", "stages",
                                                  "mse", "r2", "model")}  # fmt: skip
    figures["predict"]["peak_rss_bytes"] = predict.get("peak_rss_bytes")
    path = save("ml", figures)
    print(json.dumps({k: figures[k] for k in ("search_speedup_2_vs_1_cpu",
                                               "job_speedup_2_vs_1_cpu")}, indent=2))  # fmt: skip
    print(
        f"train (2 CPUs): {two['wall_s']:.1f} s (target <= 90), mse/noise floor "
        f"{two['mse_over_noise_floor']:.4f} (target <= 1.02), best {two['best_model']}"
    )
    print(
        f"predict: {predict['rows']:,} rows in {predict['wall_s']:.1f} s = "
        f"{predict['rows_per_s']:,.0f} rows/s (target >= 500,000)"
    )
    print(f"-> {path}")


if __name__ == "__main__":
    main()
