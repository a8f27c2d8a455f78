"""Benchmark: the digits pipeline of issue 24, every figure from one run on one local cluster.

    .venv/bin/python benchmarks/bench_digits.py [--rows 60k] [--test-rows 10k] [--repeats 2]
                                                [--pairs 2] [--ceiling-seconds 5]

On the default local cluster (Ray with one CPU per core: 2 on the 2-core machine the targets
are for), in this order:

1. ``datagen-digits --rows 60k --test-rows 10k --seed 42``: 70k MNIST-format CSV rows; its
   wall time and stages (no target).
2. ``digits-etl`` of those rows on Spark, Ray Data and DuckDB, each to its own output
   (``datasets/digits-ENGINE``), ``--repeats`` times with the engines' order alternated; per
   engine the best run's wall_s, transform_write, open and verify seconds (every run's kept),
   and whether the three engines wrote the same data (``engines_agree``: every run's
   checksum of both splits equal; target: true).
3. The bare-PyTorch ceiling, WITHOUT Ray, measured with the cluster UP but idle (after the
   ETL runs, just before the Ray Train runs: the machine as they see it): LeNet-5
   (``jobs._lenet.build``) trained with AdamW on random images, one thread a process, for
   about ``--ceiling-seconds`` each: one process vs two independent ones (128-image steps;
   ``ceiling_ratio`` = the two's summed images/s over the one's), and one process at a batch
   of 1024 in passes of 128 vs two DistributedDataParallel processes (gloo on 127.0.0.1) at
   the same global batch, 512 each in passes of 128, ``no_sync()`` but for the last pass, as
   jobs/lenet.py trains (``ddp_ratio``). What the machine allows the Ray Train ratio of 5.
4. The default ``lenet`` (on the DuckDB output): test accuracy (target >= 0.98) and the job's
   wall time (target <= 300 s; the run's end-to-end wall beside it).
5. ``predict-digits`` with the default model (4's, the latest ``digits``) on the DuckDB
   output's test split: rows/s over the whole job and accuracy (no targets).
6. ``lenet --workers 1`` and ``--workers 2``, otherwise the defaults, alternated ``--pairs``
   times (w1, w2, w1, w2): the median over the pairs of steady_images_per_s (2 workers / 1;
   target >= 1.5), each pair's ratio beside it, and the test accuracy difference in points
   (the largest of the pairs'; target <= 1.0).

Misses are printed as FAIL, not raised: the exit code is 0 whenever the runs finish. Uses a
cluster of its own (ports 29900+). Writes benchmarks/results/digits.json (saved after every
section, ``complete`` false until the end) and prints the ETL table as Markdown for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import queue
import socket
import statistics
import sys
import time
from typing import Any

from _harness import BenchCluster, bench_cluster, running, save
from bench_jobs import commit

from clusterkit.jobkit import parse_count

ENGINES = ["spark", "ray", "duckdb"]
ETL_INPUT = "datasets/digits-csv"
LENET_INPUT = "datasets/digits-duckdb"  # the engines write the same data (engines_agree)
TARGETS = {
    "engines_agree": "true",
    "lenet_test_accuracy": ">= 0.98",
    "lenet_wall_s": "<= 300 s",
    "speedup_2_vs_1_worker": ">= 1.5",
    "accuracy_diff_points": "<= 1.0",
}
#: rows a forward and backward pass takes in the ceiling, as jobs/_lenet.py's MICRO_BATCH
PASS_ROWS = 128
WARM_STEPS = 3


# -- the bare-PyTorch ceiling (module level: spawned processes import these) ---------------


def ceiling_worker(
    rank: int, world: int, batch: int, ddp: bool, seconds: float, steps: int, port: int,
    barrier: Any, results: Any,
) -> None:  # fmt: skip
    """One process training LeNet-5 on a random ``batch`` (in passes of PASS_ROWS) with one
    thread: for ``seconds``, or ``steps`` steps under DDP (the processes must take as many);
    puts {rank, images, seconds} on ``results``. Timing starts when every process is ready."""
    import torch
    import torch.nn.functional as F

    from jobs import _lenet

    torch.set_num_threads(1)
    torch.manual_seed(rank)
    model: Any = _lenet.build(0.15, 0.3)
    if ddp:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)  # fmt: skip
        model = DistributedDataParallel(model)
    optimiser = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=_lenet.WEIGHT_DECAY)
    images = torch.rand(batch, 1, _lenet.SIDE, _lenet.SIDE)
    labels = torch.randint(0, _lenet.CLASSES, (batch,))

    def step() -> None:
        optimiser.zero_grad()
        for start in range(0, batch, PASS_ROWS):
            last = start + PASS_ROWS >= batch
            rows = slice(start, start + PASS_ROWS)
            with contextlib.nullcontext() if last or not ddp else model.no_sync():
                loss = F.cross_entropy(model(images[rows]), labels[rows], reduction="sum")
                (loss / batch).backward()
        optimiser.step()

    for _ in range(WARM_STEPS):
        step()
    barrier.wait()
    started = time.perf_counter()
    done = 0
    if ddp:
        for _ in range(steps):
            step()
        done = steps
    else:
        while time.perf_counter() - started < seconds:
            step()
            done += 1
    elapsed = time.perf_counter() - started
    results.put({"rank": rank, "images": done * batch, "seconds": elapsed})
    if ddp:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ceiling_run(world: int, batch: int, *, ddp: bool = False, seconds: float = 5.0,
                steps: int = 0) -> dict[str, Any]:  # fmt: skip
    """``world`` spawned processes of :func:`ceiling_worker`; their reports and images/s
    (independent: the sum of each one's rate; DDP: all images over the slowest's time)."""
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(world), spawn.Queue()
    port = _free_port() if ddp else 0
    procs = [
        spawn.Process(target=ceiling_worker,
                      args=(rank, world, batch, ddp, seconds, steps, port, barrier, results))
        for rank in range(world)
    ]  # fmt: skip
    for proc in procs:
        proc.start()
    reports: list[dict[str, Any]] = []
    deadline = time.monotonic() + 600
    try:
        while len(reports) < world:
            try:
                reports.append(results.get(timeout=2))
            except queue.Empty:
                failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if failed or time.monotonic() > deadline:
                    raise SystemExit(f"ceiling processes failed (exit codes {failed})") from None
    finally:
        for proc in procs:
            proc.join(timeout=60)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    reports.sort(key=lambda r: r["rank"])
    if ddp:
        rate = sum(r["images"] for r in reports) / max(r["seconds"] for r in reports)
    else:
        rate = sum(r["images"] / r["seconds"] for r in reports)
    return {"processes": world, "batch_per_process": batch, "ddp": ddp,
            "images_per_s": round(rate, 1), "reports": reports}  # fmt: skip


def ceiling(seconds: float) -> dict[str, Any]:
    """One process vs two independent ones (128-image steps), and one process at a batch of
    1024 vs two DDP processes at 512 each (passes of 128): images/s and the ratios."""
    one = ceiling_run(1, PASS_ROWS, seconds=seconds)
    two = ceiling_run(2, PASS_ROWS, seconds=seconds)
    one_1024 = ceiling_run(1, 1024, seconds=seconds)
    # as many steps as take ~seconds at one process' speed: DDP processes must agree on them
    steps = max(5, round(seconds * one_1024["images_per_s"] / 512))
    ddp = ceiling_run(2, 512, ddp=True, steps=steps)
    return {
        "one": one, "two_independent": two, "one_batch_1024": one_1024, "two_ddp": ddp,
        "ceiling_ratio": round(two["images_per_s"] / one["images_per_s"], 3),
        "ddp_ratio": round(ddp["images_per_s"] / one_1024["images_per_s"], 3),
        "seconds": seconds, "measured": "cluster up, idle (after the ETL, before lenet)",
    }  # fmt: skip


# -- the cluster's runs ----------------------------------------------------------------------


def etl_run(cluster: BenchCluster, engine: str) -> dict[str, Any]:
    record = cluster.run("digits-etl", "--engine", engine, "--input", ETL_INPUT,
                         "--output", f"datasets/digits-{engine}", "--overwrite")  # fmt: skip
    result = record["result"]
    stages = result["stages"]
    return {
        "engine": engine, "wall_s": result["wall_s"], "process_wall_s": record["wall_s"],
        "open_s": stages.get("open"), "transform_write_s": stages.get("transform_write"),
        "verify_s": stages.get("verify"), "stages": stages, "rows": result["rows"],
        "checksum": result["checksum"], "mean": result["mean"], "std": result["std"],
    }  # fmt: skip


def etl_table(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per engine: the best run's (lowest wall_s) figures, and every run's times."""
    table = {}
    for engine in ENGINES:
        mine = [r for r in runs if r["engine"] == engine]
        best = min(mine, key=lambda r: r["wall_s"])
        table[engine] = {
            "wall_s": best["wall_s"], "transform_write_s": best["transform_write_s"],
            "open_s": best["open_s"], "verify_s": best["verify_s"], "rows": best["rows"],
            "rows_per_s": round(best["rows"] / best["wall_s"], 1),
            "all_wall_s": [r["wall_s"] for r in mine],
            "all_transform_write_s": [r["transform_write_s"] for r in mine],
        }  # fmt: skip
    return table


def lenet_run(cluster: BenchCluster, *flags: str) -> dict[str, Any]:
    record = cluster.run("lenet", "--input", LENET_INPUT, *flags)
    result = record["result"]
    return {
        "flags": list(flags), "wall_s": result["wall_s"], "process_wall_s": record["wall_s"],
        "test_accuracy": result["test_accuracy"], "num_workers": result["num_workers"],
        "images_per_s": result["images_per_s"],
        "steady_images_per_s": result["steady_images_per_s"], "stages": result["stages"],
        "epochs": result["epochs"], "workers": result["workers"], "model": result["model"],
    }  # fmt: skip


def steady(run: dict[str, Any]) -> float:
    """Images/s after the first epoch (all of them with a single epoch)."""
    return float(run["steady_images_per_s"] or run["images_per_s"])


def scaling(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for number, pair in enumerate(pairs, 1):
        w1, w2 = pair["w1"], pair["w2"]
        rows.append({
            "pair": number, "w1_steady_images_per_s": steady(w1),
            "w2_steady_images_per_s": steady(w2), "ratio": round(steady(w2) / steady(w1), 3),
            "w1_test_accuracy": w1["test_accuracy"], "w2_test_accuracy": w2["test_accuracy"],
            "accuracy_diff_points": round(abs(w2["test_accuracy"] - w1["test_accuracy"]) * 100,
                                          3),
        })  # fmt: skip
    return {
        "pairs": rows,
        "speedup_2_vs_1_worker": round(statistics.median(r["ratio"] for r in rows), 3),
        "accuracy_diff_points": max(r["accuracy_diff_points"] for r in rows),
        "runs": pairs,
    }


# -- the summary -------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def summary(figures: dict[str, Any]) -> None:
    gen, etl, lenet = figures["datagen"], figures["etl"], figures["lenet"]
    scale, bare, predict = figures["scaling"], figures["ceiling"], figures["predict"]
    print()
    print(f"digits benchmark at {figures['commit']} ({figures['cpus']} cores), "
          f"{figures['rows']:,} + {figures['test_rows']:,} rows")  # fmt: skip
    print(f"datagen-digits: {gen['train_rows']:,} + {gen['test_rows']:,} rows in "
          f"{gen['wall_s']:.1f} s (run {gen['process_wall_s']:.1f} s)  (no target)")  # fmt: skip
    print(f"digits-etl, best of {figures['repeats']} per engine "
          f"(wall / transform_write / open / verify s; all wall s):")  # fmt: skip
    for engine, row in etl["table"].items():
        print(f"  {engine:<7}{row['wall_s']:>8.2f}{row['transform_write_s']:>8.2f}"
              f"{row['open_s']:>8.2f}{row['verify_s']:>8.2f}   "
              f"{', '.join(f'{s:.2f}' for s in row['all_wall_s'])}")  # fmt: skip
    print(f"  engines agree (same checksums): {etl['engines_agree']}  "
          f"(target {TARGETS['engines_agree']}) {verdict(etl['engines_agree'])}")  # fmt: skip
    acc, wall = lenet["test_accuracy"], lenet["wall_s"]
    print(f"lenet (defaults, {lenet['num_workers']} workers): test accuracy {acc:.4f} "
          f"(target {TARGETS['lenet_test_accuracy']}) {verdict(acc >= 0.98)}")  # fmt: skip
    print(f"  wall {wall:.1f} s (target {TARGETS['lenet_wall_s']}) {verdict(wall <= 300)}; "
          f"run end to end {lenet['process_wall_s']:.1f} s")  # fmt: skip
    print(f"predict-digits ({predict['model']}): {predict['rows']:,} rows, "
          f"{predict['rows_per_s']:,.0f} rows/s end to end, {predict['predict_rows_per_s']:,.0f} "
          f"in predict_write, accuracy {predict['accuracy']:.4f}  (no target)")  # fmt: skip
    ratio, diff = scale["speedup_2_vs_1_worker"], scale["accuracy_diff_points"]
    print(
        f"lenet 2 workers / 1, steady images/s, median of {len(scale['pairs'])} pairs: "
        f"{ratio:.2f} (target {TARGETS['speedup_2_vs_1_worker']}) {verdict(ratio >= 1.5)}"
    )
    for pair in scale["pairs"]:
        print(
            f"  pair {pair['pair']}: w1 {pair['w1_steady_images_per_s']:,.0f}, w2 "
            f"{pair['w2_steady_images_per_s']:,.0f} images/s -> {pair['ratio']:.2f}; test "
            f"accuracy {pair['w1_test_accuracy']:.4f} vs {pair['w2_test_accuracy']:.4f}"
        )
    print(f"  accuracy difference (largest of the pairs): {diff:.2f} points "
          f"(target {TARGETS['accuracy_diff_points']}) {verdict(diff <= 1.0)}")  # fmt: skip
    print(f"  beside it, bare PyTorch without Ray ({bare['measured']}):")
    print(f"    2 independent / 1 process: {bare['two_independent']['images_per_s']:,.0f} / "
          f"{bare['one']['images_per_s']:,.0f} images/s = {bare['ceiling_ratio']:.2f} "
          f"(ceiling_ratio)")  # fmt: skip
    print(f"    2 DDP / 1 process at batch 1024: {bare['two_ddp']['images_per_s']:,.0f} / "
          f"{bare['one_batch_1024']['images_per_s']:,.0f} images/s = {bare['ddp_ratio']:.2f} "
          f"(ddp_ratio); Ray Train: {ratio:.2f}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="60k", help="training rows of datagen-digits")
    parser.add_argument("--test-rows", default="10k", help="test rows of datagen-digits")
    parser.add_argument("--repeats", type=int, default=2, help="digits-etl runs per engine")
    parser.add_argument("--pairs", type=int, default=2, help="lenet w1, w2 pairs")
    parser.add_argument("--ceiling-seconds", type=float, default=5.0,
                        help="seconds of each bare-PyTorch measurement")  # fmt: skip
    args = parser.parse_args()
    if args.repeats < 1 or args.pairs < 1:
        parser.error("--repeats and --pairs take 1 or more")
    figures: dict[str, Any] = {
        "commit": commit(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "benchmarks/bench_digits.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(), "rows": parse_count(args.rows),
        "test_rows": parse_count(args.test_rows), "repeats": args.repeats, "pairs": args.pairs,
        "targets": TARGETS, "complete": False,
    }  # fmt: skip
    with running(bench_cluster(29900)) as cluster:
        record = cluster.run("datagen-digits", "--rows", args.rows, "--test-rows",
                             args.test_rows, "--seed", "42", "--name", "digits-csv",
                             "--overwrite")  # fmt: skip
        result = record["result"]
        figures["datagen"] = {
            "wall_s": result["wall_s"], "process_wall_s": record["wall_s"],
            "train_rows": result["train_rows"], "test_rows": result["test_rows"],
            "checksum": result["checksum"], "stages": result["stages"],
        }  # fmt: skip
        print(f"datagen-digits: {result['rows']:,} rows in {result['wall_s']:.1f} s", flush=True)
        save("digits", figures)

        runs = []
        for repeat in range(args.repeats):
            for engine in ENGINES if repeat % 2 == 0 else ENGINES[::-1]:
                runs.append(etl_run(cluster, engine))
                print(f"digits-etl {engine} ({repeat + 1}/{args.repeats}): "
                      f"{runs[-1]['wall_s']:.2f} s, transform_write "
                      f"{runs[-1]['transform_write_s']:.2f} s", flush=True)  # fmt: skip
        checksums = {(r["checksum"]["train"], r["checksum"]["test"]) for r in runs}
        figures["etl"] = {"table": etl_table(runs), "engines_agree": len(checksums) == 1,
                          "runs": runs}  # fmt: skip
        save("digits", figures)

        time.sleep(5)  # the ETL's processes settle: the cluster idle, as lenet finds it
        figures["ceiling"] = ceiling(args.ceiling_seconds)
        print(f"bare PyTorch: ceiling_ratio {figures['ceiling']['ceiling_ratio']:.2f}, "
              f"ddp_ratio {figures['ceiling']['ddp_ratio']:.2f}", flush=True)  # fmt: skip
        save("digits", figures)

        figures["lenet"] = lenet_run(cluster)
        print(f"lenet (defaults): test accuracy {figures['lenet']['test_accuracy']:.4f}, "
              f"{figures['lenet']['wall_s']:.1f} s", flush=True)  # fmt: skip
        predict = cluster.run("predict-digits", "--model", "digits", "--input",
                              f"{LENET_INPUT}/test", "--overwrite")["result"]  # fmt: skip
        figures["predict"] = {k: predict.get(k) for k in (
            "rows", "rows_per_s", "predict_rows_per_s", "accuracy", "wall_s", "stages", "model",
            "model_test_accuracy")}  # fmt: skip
        figures["predict"]["model_is_default_lenet"] = predict["model"] == figures["lenet"]["model"]
        save("digits", figures)

        pairs = []
        for number in range(args.pairs):
            pair = {}
            for workers in (1, 2):
                pair[f"w{workers}"] = lenet_run(cluster, "--workers", str(workers))
                print(f"lenet --workers {workers} ({number + 1}/{args.pairs}): steady "
                      f"{steady(pair[f'w{workers}']):,.0f} images/s, test accuracy "
                      f"{pair[f'w{workers}']['test_accuracy']:.4f}", flush=True)  # fmt: skip
            pairs.append(pair)
        figures["scaling"] = scaling(pairs)
    figures["complete"] = True
    path = save("digits", figures)
    summary(figures)
    print()
    print("digits-etl, best run per engine (for docs/benchmarks.md):")
    print(etl_markdown(figures["etl"]["table"]))
    print(f"-> {path}")
    return 0


def etl_markdown(table: dict[str, Any]) -> str:
    """The digits-etl table (best run per engine) as Markdown, for docs/benchmarks.md."""
    lines = ["| engine | wall s | transform_write s | rows/s |", "|---|---:|---:|---:|"]
    for engine, row in table.items():
        lines.append(f"| {engine} | {row['wall_s']:.2f} | {row['transform_write_s']:.2f} | "
                     f"{row['rows_per_s']:,.0f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
