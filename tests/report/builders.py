"""Run folders and bench files as the kit writes them, for the report's tests: the record, the
supervisor's ``metrics.jsonl`` (every key a sample has, on two nodes), the job's
``result.json`` and ``stages.json``, a lenet run's ``epochs.json``, a bench's table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clusterkit.core.records import RunRecord
from clusterkit.runs.store import FolderRunStore

STARTED = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC).timestamp()
GiB, MiB = 1024**3, 1024**2

ETL = "20261121-100000-aaaa"
TRAIN = "20261121-101000-bbbb"
LENET = "20261121-102000-cccc"
NO_METRICS = "20261121-103000-dddd"
FAILED = "20261121-104000-eeee"
BENCH = "20261121-105000-ffff"


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def sample(node: str, t: float, rss: int, used: int, *, roles: dict[str, int] | None = None,
           shared: int = 0) -> dict[str, Any]:  # fmt: skip
    """One line of metrics.jsonl, with every key the sampler writes (a warm run's shared
    processes folded in, as the supervisor does once the job attached to them)."""
    by_role = roles or {"driver": rss}
    if shared:
        by_role = {**by_role, "shared spark-connect-server": shared}
    return {
        "t": t, "node": node, "cpu_percent": 55.0, "cpu_count": 2,
        "mem_total_bytes": 8 * GiB, "mem_used_bytes": used,
        "mem_percent": round(used / (8 * GiB) * 100, 1),
        "run_processes": len(by_role), "run_ray_workers": 0, "run_rss_bytes": rss + shared,
        "run_cpu_percent": 97.5, "run_rss_by_role": by_role,
        "shared_processes": 1 if shared else 0, "shared_ray_workers": 0,
        "shared_rss_bytes": shared, "shared_cpu_percent": 3.0,
        "shared_rss_by_role": {"spark-connect-server": shared} if shared else {},
    }  # fmt: skip


def two_node_samples(seconds: int, *, peak_at: int) -> list[dict[str, Any]]:
    """A run on a master and a worker, sampled every second: memory rising to a peak at
    ``peak_at`` seconds on the worker, then falling."""
    out = []
    for t in range(seconds):
        rise = 1.0 - abs(t - peak_at) / seconds
        out.append(sample("master", STARTED + t + 0.1, int(0.3 * GiB * rise) + 80 * MiB,
                          int(2.5 * GiB + rise * GiB), shared=400 * MiB))  # fmt: skip
        out.append(sample("worker", STARTED + t + 0.6, int(1.6 * GiB * rise) + 50 * MiB,
                          int(3.0 * GiB + rise * 2 * GiB),
                          roles={"spark-executor": int(1.6 * GiB * rise) + 50 * MiB}))  # fmt: skip
    return out


def write_run(root: Path, run_id: str, job: str, *, params: dict[str, Any], wall_s: float | None,
              status: str = "succeeded", result: dict[str, Any] | None = None,
              samples: Sequence[dict[str, Any]] = (), metrics: bool = True,
              stages_done: dict[str, float] | None = None, error: str | None = None,
              extra_record: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """A run folder as its supervisor leaves it; its path."""
    store = FolderRunStore(root)
    folder = store.dir(run_id)
    folder.mkdir(parents=True)
    record = RunRecord(
        id=run_id, job=job, params=params, cluster="rehearsal", provider="netns",
        status=status, created=iso(STARTED - 0.5), started=iso(STARTED),
        ended=iso(STARTED + wall_s) if wall_s is not None else None, wall_s=wall_s,
        error=error, exit_code=0 if status == "succeeded" else 1, metrics_enabled=metrics,
        peak_rss_bytes=max((s["run_rss_bytes"] for s in samples), default=None),
        nodes={node: {"node": node, "samples": sum(1 for s in samples if s["node"] == node)}
               for node in sorted({s["node"] for s in samples})},
    )  # fmt: skip
    data = record.to_dict() | (extra_record or {})
    (folder / "record.json").write_text(json.dumps(data, indent=2))
    (folder / "setup.json").write_text(json.dumps({"node": "master"}))
    (folder / "stdout.log").write_text(f"{job}: done\n")
    (folder / "stderr.log").write_text("")
    if metrics:
        with open(folder / "metrics.jsonl", "w") as out:
            for line in samples:
                out.write(json.dumps(line) + "\n")
    if result is not None:
        (folder / "result.json").write_text(json.dumps(result, indent=2))
    stages = stages_done if stages_done is not None else (result or {}).get("stages", {})
    (folder / "stages.json").write_text(json.dumps({"done": stages, "current": None,
                                                    "since": STARTED + 5}))  # fmt: skip
    return folder


def etl_run(root: Path, run_id: str = ETL, **params: Any) -> Path:
    stages = {"open": 6.512, "transform_write": 28.03, "verify": 1.204}
    return write_run(root, run_id, "etl", params={"engine": "spark", **params}, wall_s=38.9,
                     result={"rows": 30_000_000, "rows_out": 29_400_000, "engine": "spark",
                             "wall_s": 35.75, "stages": stages, "job": "etl",
                             "peak_rss_bytes": 2 * GiB},
                     samples=two_node_samples(38, peak_at=20))  # fmt: skip


def trials() -> list[dict[str, Any]]:
    """The salary search's trial_results as _search.search returns them."""
    grid: list[tuple[str, dict[str, Any], float]] = [
        ("ridge", {"alpha": 1.0}, 4.1e8), ("ridge", {"alpha": 10.0}, 4.05e8),
        ("random_forest", {"n_estimators": 50, "max_depth": 8}, 2.6e8),
        ("random_forest", {"n_estimators": 100, "max_depth": 12}, 2.31e8),
        ("hist_gradient_boosting", {"learning_rate": 0.1, "max_iter": 200}, 2.18e8),
        ("hist_gradient_boosting", {"learning_rate": 0.05, "max_iter": 400}, 2.2e8),
    ]  # fmt: skip
    out = []
    for number, (model, params, mse) in enumerate(grid):
        shown = ", ".join(f"{k}={v}" for k, v in params.items())
        out.append({"number": number, "search": "default", "model": model, "params": params,
                    "label": f"{model}({shown})", "cv_mse": mse,
                    "fold_mse": [mse * 0.96, mse * 1.01, mse * 1.03]})  # fmt: skip
    return out


def train_run(root: Path, run_id: str = TRAIN) -> Path:
    stages = {"open": 1.1, "sample": 4.3, "features": 0.8, "search": 21.7, "refit": 2.2,
              "evaluate": 0.3, "save": 0.4}  # fmt: skip
    return write_run(root, run_id, "train", params={"sample": 200_000}, wall_s=33.0,
                     result={"stages": stages, "wall_s": 30.8, "mse": 2.21e8, "r2": 0.83,
                             "best_model": "hist_gradient_boosting", "trial_results": trials(),
                             "fit_reports": []},
                     samples=two_node_samples(33, peak_at=18))  # fmt: skip


def epochs(count: int = 6) -> list[dict[str, Any]]:
    test = [0.912, 0.951, 0.968, 0.977, 0.983, 0.987, 0.989, 0.99]
    return [{"epoch": n, "loss": round(0.9 / n, 5), "accuracy": test[n - 1] - 0.01,
             "test_accuracy": test[n - 1], "images_per_s": 5230.0 + n, "seconds": 11.2,
             "lr": 0.0021, "steps": 42} for n in range(1, count + 1)]  # fmt: skip


def lenet_run(root: Path, run_id: str = LENET) -> Path:
    folder = write_run(root, run_id, "lenet", params={"workers": 2, "epochs": 6}, wall_s=70.2,
                       result={"stages": {"open": 1.0, "train": 62.0, "evaluate": 2.0,
                                          "save": 0.5},
                               "wall_s": 66.0, "epochs": epochs(), "test_accuracy": 0.987},
                       samples=two_node_samples(70, peak_at=40))  # fmt: skip
    (folder / "epochs.json").write_text(json.dumps(epochs()))
    return folder


def no_metrics_run(root: Path, run_id: str = NO_METRICS) -> Path:
    return write_run(root, run_id, "top-earners", params={"engine": "duckdb"}, wall_s=2.9,
                     result={"stages": {"open": 0.2, "query": 1.1}, "wall_s": 1.34,
                             "rows": 30_000_000},
                     metrics=False)  # fmt: skip


def failed_run(root: Path, run_id: str = FAILED) -> Path:
    """Failed in its second stage: no result.json, stages.json with the first stage done, and
    no metrics.jsonl at all (its supervisor was started without one)."""
    folder = write_run(root, run_id, "age-extremes", params={"engine": "ray"}, wall_s=4.2,
                       status="failed", stages_done={"open": 2.4},
                       error="input people-processed: no such dataset; run etl first")  # fmt: skip
    (folder / "metrics.jsonl").unlink()
    return folder


def bench_table() -> list[dict[str, Any]]:
    """A bench table as compare.Row dicts: two jobs, two sizes, three engines, one failure."""
    medians: dict[tuple[str, int], dict[str, float | None]] = {
        ("etl", 1_000_000): {"spark": 25.0, "ray": 6.1, "duckdb": 0.5},
        ("etl", 30_000_000): {"spark": 42.9, "ray": 19.6, "duckdb": 7.3},
        ("top-earners", 1_000_000): {"spark": 22.3, "ray": 5.3, "duckdb": 0.5},
        ("top-earners", 30_000_000): {"spark": 27.3, "ray": None, "duckdb": 1.3},
    }  # fmt: skip
    rows = []
    for (job, size), engines in medians.items():
        fastest = min(v for v in engines.values() if v is not None)
        for engine, median in engines.items():
            published = ("34.1 s median, 30.8-71.3 s (10 runs, t2.large)"
                         if (job, size) == ("etl", 30_000_000) else "none published")  # fmt: skip
            rows.append({
                "job": job, "rows": size, "engine": engine, "runs": 3 if median else 0,
                "failed": 0 if median else 3, "median_s": median,
                "min_s": median * 0.95 if median else None,
                "max_s": median * 1.08 if median else None,
                "ratio_to_fastest": median / fastest if median else None,
                "peak_rss_bytes": 1_800_000_000 if median else None, "published": published,
                "error": None if median else "RayTaskError: out of memory",
            })  # fmt: skip
    return rows


def bench_run(root: Path, run_id: str = BENCH, *, succeeded: bool = True) -> Path:
    """A bench run; one that failed has no result.json (its table is only in bench.md)."""
    result = {"stages": {"room": 3.2, "runs": 880.4}, "wall_s": 884.0, "table": bench_table(),
              "runs": []}  # fmt: skip
    return write_run(root, run_id, "bench", params={"sizes": [1_000_000, 30_000_000]},
                     wall_s=900.0, status="succeeded" if succeeded else "failed",
                     result=result if succeeded else None,
                     stages_done={"room": 3.2} if not succeeded else None,
                     error=None if succeeded else "1 of 27 runs did not succeed",
                     samples=two_node_samples(10, peak_at=5))  # fmt: skip


def bench_file(path: Path, *, wrapped: bool = False) -> Path:
    """A bench result as benchmarks/results/engines.json has it, or (``wrapped``) as
    ``clusterkit bench --json`` prints it: the record with the result under ``result``."""
    result = {"table": bench_table(), "markdown": "bench.md", "csv": "bench.csv", "runs": []}
    if wrapped:
        data: dict[str, Any] = {"id": BENCH, "job": "bench", "status": "succeeded",
                                "result": result}  # fmt: skip
    else:
        data = {"commit": "4772dfb", "measured_at": "2026-11-21T14:40:53Z",
                "command": "benchmarks/bench_engines.py --sizes 1M,30M --repeats 3",
                **result}  # fmt: skip
    path.write_text(json.dumps(data, indent=2))
    return path


def png_check(path: Path) -> tuple[int, int, float]:
    """(width, height, share of pixels not the background) of a PNG; AssertionError when the
    file is not a whole PNG."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path} is {image.format}, not PNG"
        image.verify()
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    background = pixels[0, 0]
    differs = np.any(np.abs(pixels - background) > 8, axis=2)
    return image.width, image.height, float(differs.mean())
