"""Benchmark: the data jobs beside their baselines, on the same rows, in one session.

    .venv/bin/python benchmarks/bench_jobs.py [--rows 30M] [--repeats 3]

Each comparison runs the kit's job and its baseline alternately, ``--repeats`` times, and
reports medians and the ratio baseline / kit (above 1: the kit is faster):

- datagen vs a plain single-process numpy/pandas generator (benchmarks/naive_generator.py,
  target: ratio >= 1.5), and vs the kit's own block code in one process
  (benchmarks/single_process_blocks.py: the speed-up from running it in parallel on Ray).
  Kit time: the job's generate_and_write + commit stages (Ray connection excluded) and,
  beside it, the whole job process.
- etl, top-earners, age-extremes vs the source project's scripts as it wrote them
  (jobs/_seed_paper/), Spark session start excluded on both sides: the kit's time is the
  sum of its stages (its warm session's start: an untimed one-line query before each run,
  so that the Connect server holds an executor again); the scripts time themselves after
  the session exists. top-earners must
  give the same top 10 (target: ratio >= 5).

Uses a cluster of its own (ports 29500+). Writes benchmarks/results/jobs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _harness import RESULTS, ROOT, BenchCluster, bench_cluster, running, save

from clusterkit.jobkit import parse_count

HERE = Path(__file__).resolve().parent
COMPARISONS = ["datagen", "etl", "top_earners", "age_extremes"]


def commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True)  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return proc.stdout.strip() + ("+changes" if dirty else "")


def script(path: Path, *args: str) -> dict[str, Any]:
    """Run a baseline script; its last stdout line is a JSON report with ``seconds``."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    proc = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True,
                          env=env, timeout=3600, cwd=path.parent)  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"{path.name} failed:\n{proc.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def stages_s(record: dict[str, Any], names: list[str] | None = None) -> float:
    stages = record["result"]["stages"]
    return float(sum(v for k, v in stages.items() if names is None or k in names))


def compare(
    label: str,
    repeats: int,
    kit: Callable[[], tuple[float, dict[str, Any]]],
    baseline: Callable[[], float],
) -> dict[str, Any]:
    """Alternate kit and baseline ``repeats`` times; medians and baseline/kit ratio."""
    kit_s, base_s, extra = [], [], []
    for i in range(repeats):
        order = [True, False] if i % 2 == 0 else [False, True]
        for is_kit in order:
            if is_kit:
                seconds, info = kit()
                kit_s.append(seconds)
                extra.append(info)
            else:
                base_s.append(baseline())
        print(f"{label} {i + 1}: kit {kit_s[-1]:.2f} s, baseline {base_s[-1]:.2f} s", flush=True)
    row: dict[str, Any] = {
        "kit_median_s": statistics.median(kit_s), "kit_s": kit_s,
        "baseline_median_s": statistics.median(base_s), "baseline_s": base_s,
        "kit_info": extra,
    }  # fmt: skip
    row["ratio"] = row["baseline_median_s"] / row["kit_median_s"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="30M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default=",".join(COMPARISONS),
                        help=f"comma-separated subset of {', '.join(COMPARISONS)}; the others "
                        "keep their figures in results/jobs.json")  # fmt: skip
    args = parser.parse_args()
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(only) - set(COMPARISONS)
    if unknown:
        parser.error(f"unknown comparison(s): {', '.join(sorted(unknown))}")
    rows = parse_count(args.rows)
    scratch = Path(tempfile.mkdtemp(prefix="ck-bench-data-"))
    cluster: BenchCluster = bench_cluster(29500)
    previous = RESULTS / "jobs.json"
    figures: dict[str, Any] = json.loads(previous.read_text()) if previous.exists() else {}
    if figures.get("rows") not in (None, rows):
        figures = {}  # another size: start afresh
    figures.update({"rows": rows, "repeats": args.repeats, "cpus": os.cpu_count()})
    stamp = {"commit": commit(), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

    with running(cluster):
        datasets = cluster.storage / "datasets"

        def kit_datagen() -> tuple[float, dict[str, Any]]:
            record = cluster.run("datagen", "--rows", str(rows), "--overwrite")
            return stages_s(record), {"process_wall_s": record["wall_s"],
                                      "checksum": record["result"]["checksum"]}  # fmt: skip

        def naive() -> float:
            return float(script(HERE / "naive_generator.py", str(rows), str(scratch / "n"))[
                "seconds"])  # fmt: skip

        def same_code() -> float:
            report = script(HERE / "single_process_blocks.py", str(rows), str(scratch / "s"))
            return float(report["seconds"])

        if "datagen" in only:
            figures["datagen_vs_naive"] = compare("datagen vs naive numpy", args.repeats,
                                                  kit_datagen, naive) | stamp  # fmt: skip
            figures["datagen_vs_same_code"] = compare(
                "datagen vs same code, 1 process", args.repeats, kit_datagen, same_code
            ) | stamp  # fmt: skip
        else:
            kit_datagen()  # the data the other comparisons read

        warmup = scratch / "warmup.py"
        warmup.write_text("from pyspark.sql import SparkSession\n"
                          "SparkSession.builder.getOrCreate().range(1).count()\n")  # fmt: skip

        def kit_job(job: str) -> Callable[[], tuple[float, dict[str, Any]]]:
            def run() -> tuple[float, dict[str, Any]]:
                # untimed: the warm server gets its executor back (given back while the
                # baseline ran), as a baseline's own Spark start-up, excluded too, gets its
                cluster.cli("submit", str(warmup))
                record = cluster.run(job, "--overwrite")
                info = {"process_wall_s": record["wall_s"], "stages": record["result"]["stages"],
                        "peak_rss_by_role": record["result"].get("peak_rss_by_role")}  # fmt: skip
                if "rows_out" in record["result"]:
                    info["rows_out"] = record["result"]["rows_out"]
                return stages_s(record), info

            return run

        source_reports: dict[str, list[dict[str, Any]]] = {}

        def source(name: str, *paths: str) -> Callable[[], float]:
            def run() -> float:
                report = script(ROOT / "jobs" / "_seed_paper" / name, *paths)
                source_reports.setdefault(name, []).append(report)
                return float(report["seconds"])

            return run

        raw, processed = str(datasets / "people"), str(datasets / "people-processed")
        if "etl" in only:
            figures["etl"] = compare(
                "etl vs source ETL", args.repeats, kit_job("etl"),
                source("etl_benchmark.py", raw, str(scratch / "etl")),
            ) | stamp  # fmt: skip
        else:
            kit_job("etl")()  # the processed data the queries read
        if "top_earners" in only:
            figures["top_earners"] = compare(
                "top-earners vs source query 1", args.repeats, kit_job("top-earners"),
                source("query1_top_earners.py", processed, str(scratch / "q1")),
            ) | stamp  # fmt: skip
            kit_top = {(r["full_name"], r["salary"]) for r in
                       figures["top_earners"]["kit_info"][0]["rows_out"]}  # fmt: skip
            source_top = {tuple(p) for p in source_reports["query1_top_earners.py"][0]["top"]}
            figures["top_earners"]["same_result"] = kit_top == source_top
        if "age_extremes" in only:
            figures["age_extremes"] = compare(
                "age-extremes vs source query 2", args.repeats, kit_job("age-extremes"),
                source("query2_age_extremes.py", processed, str(scratch / "q2")),
            ) | stamp  # fmt: skip
            kit_ages = sorted(r["age"] for r in figures["age_extremes"]["kit_info"][0]["rows_out"])
            source_ages = sorted(source_reports["query2_age_extremes.py"][0]["ages"])
            figures["age_extremes"]["same_ages"] = kit_ages == source_ages

    figures.setdefault("source_reports", {}).update(source_reports)
    save("jobs", figures)

    print()
    print(f"rows: {rows:,}; medians of {args.repeats}; ratio = baseline / kit")
    print(f"{'comparison':<36}{'kit s':>9}{'baseline s':>12}{'ratio':>8}  target")
    targets = {"datagen_vs_naive": ">= 1.5", "datagen_vs_same_code": "(parallel speed-up)",
               "etl": "(as fast as Spark allows)", "top_earners": ">= 5, same result",
               "age_extremes": "(no double sort)"}  # fmt: skip
    for key, target in targets.items():
        if key not in figures:
            continue
        row = figures[key]
        print(f"{key:<36}{row['kit_median_s']:>9.2f}{row['baseline_median_s']:>12.2f}"
              f"{row['ratio']:>8.2f}  {target}")  # fmt: skip
    if "top_earners" in figures:
        print(f"top-earners gives the source query 1's top 10: "
              f"{figures['top_earners']['same_result']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
