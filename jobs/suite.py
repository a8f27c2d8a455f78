"""suite: the whole project in order, each step a run of its own.

``datagen -> etl -> top-earners -> age-extremes -> train -> predict``, then (unless
``--no-digits``) a small version of the handwritten-digits half, ``datagen-digits ->
digits-etl -> lenet -> predict-digits`` (``--digits-rows`` training images, 2 epochs), with
defaults that chain (each step reads what the one before wrote). Each step is submitted
through the same launcher as ``clusterkit run``, on the node the suite runs on (the master
of a remote cluster), and gets its own run record (its ``parent`` is the suite's run), so
``clusterkit runs`` lists them and each has its own log, metrics and result. The suite stops
at the first step that fails, and its own record says which step and why. Cancelling the
suite cancels the step that is running. The summary table goes to the log and, as ``steps``,
to ``result.json``.
"""

from __future__ import annotations

from typing import Any

from clusterkit.jobkit import Job, JobContext, Param, human_bytes, human_seconds


def steps(p: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(job, params) of each step, from the suite's parameters. Each step replaces what an
    earlier suite (or run) wrote at its default output (``overwrite``: the kit's outputs
    only); ``train`` never replaces anything, it adds a model version."""
    return [
        ("datagen", {"rows": p["rows"], "profile": p["profile"], "seed": p["seed"],
                     "overwrite": True}),
        ("etl", {"overwrite": True}),
        ("top-earners", {"overwrite": True}),
        ("age-extremes", {"overwrite": True}),
        ("train", {"sample": min(p["rows"], p["sample"]), "seed": p["seed"]}),
        ("predict", {"overwrite": True}),
    ] + (digit_steps(p) if p["digits"] else [])  # fmt: skip


def digit_steps(p: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The digits' steps: a small dataset, its ETL (DuckDB, the fastest at this size), a
    short training (batches of 128: 5k images make 39 steps an epoch) and the predictions."""
    rows = int(p["digits_rows"])
    return [
        ("datagen-digits", {"rows": rows, "test_rows": max(500, rows // 5), "seed": p["seed"],
                            "overwrite": True}),
        ("digits-etl", {"engine": "duckdb", "overwrite": True}),
        ("lenet", {"epochs": p["digits_epochs"], "batch_size": 128, "lr": 0.003,
                   "seed": p["seed"]}),
        ("predict-digits", {"overwrite": True}),
    ]  # fmt: skip


#: the figure shown for each step in the summary: (result key, label)
HEADLINE = {
    "datagen": ("rows", "rows"),
    "etl": ("rows", "rows"),
    "top-earners": ("rows", "rows in"),
    "age-extremes": ("rows", "rows in"),
    "train": ("mse_over_noise_floor", "mse/noise floor"),
    "predict": ("rows_per_s", "rows/s"),
    "datagen-digits": ("rows", "images"),
    "digits-etl": ("rows", "images"),
    "lenet": ("test_accuracy", "test accuracy"),
    "predict-digits": ("rows_per_s", "images/s"),
}


def main(ctx: JobContext) -> dict[str, Any]:
    children = ctx.children()
    plan = steps(ctx.params)
    rows: list[dict[str, Any]] = []
    failed = None
    for number, (job, params) in enumerate(plan):
        ctx.progress(number, len(plan), "steps")
        print(f"suite: step {number + 1}/{len(plan)}: {job} {params}", flush=True)
        with ctx.stage(job):
            record = children.run(job, params)
        result = children.result(record.id) or {}
        key, label = HEADLINE[job]
        rows.append({
            "step": job, "run": record.id, "status": record.status, "wall_s": record.wall_s,
            "peak_rss_bytes": record.peak_rss_bytes, "figure": result.get(key),
            "figure_name": label, "error": record.error,
        })  # fmt: skip
        if record.status != "succeeded":
            failed = record
            break
    ctx.progress(len(plan), len(plan), "steps")
    for job, _ in plan[len(rows) :]:
        rows.append({"step": job, "run": None, "status": "skipped", "wall_s": None,
                     "peak_rss_bytes": None, "figure": None, "figure_name": "",
                     "error": None})  # fmt: skip
    print(f"\n{'step':<14} {'run':<22} {'status':<10} {'wall':>8} {'peak mem':>10}  figure")
    for row in rows:
        figure = row["figure"]
        shown = _figure(figure)
        print(
            f"{row['step']:<14} {row['run'] or '-':<22} {row['status']:<10} "
            f"{human_seconds(row['wall_s']) if row['wall_s'] is not None else '-':>8} "
            f"{human_bytes(row['peak_rss_bytes']) if row['peak_rss_bytes'] else '-':>10}  "
            f"{row['figure_name']} {shown}".rstrip()
        )
    if failed is not None:
        raise RuntimeError(f"step {failed.job} (run {failed.id}) {failed.status}: {failed.error}")
    return {"steps": rows}


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.4f}"
    return f"{value:,}" if isinstance(value, int) else ""


JOB = Job(
    name="suite",
    summary="The whole project, a run each step: the people jobs, then the digits (small)",
    engine="python",
    main=main,
    params=[
        Param("rows", "count", 1_000_000, "rows datagen makes (the steps' outputs are replaced)"),
        Param("profile", "choice", "realistic", "datagen's profile", ("realistic", "seed-paper")),
        Param("seed", "int", 42, "seed of the data and of the training"),
        Param("sample", "count", 1_000_000, "train's sample (at most the rows)"),
        Param(
            "digits",
            "bool",
            True,
            "also the digits: datagen-digits, digits-etl, lenet, predict-digits",
        ),
        Param("digits_rows", "count", 5_000, "training images datagen-digits makes"),
        Param("digits_epochs", "int", 2, "lenet's epochs"),
    ],
)
