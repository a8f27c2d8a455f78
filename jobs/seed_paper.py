"""seed-paper: the source project's ETL and query scripts, run as it wrote them.

The scripts in ``jobs/_seed_paper/`` are kept as the class project wrote them (no Spark master
URL, so Spark's local mode in one JVM; query 1 de-duplicates and sorts the whole dataset and
writes all of it; query 2 orders the active rows twice). This job runs one of them in a child
process so that ``clusterkit bench`` can time it beside the kit's engines on the same data,
with a run record of its own. What the job adds is only around the script: the input is
checked first, the script writes into a temporary folder that is renamed into place when it
succeeds, and its own timing (``script_s``: after its SparkSession exists) is kept beside the
job's ``wall_s``. The result keys are those of the kit's job of the same name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from clusterkit.jobkit import Job, JobContext, Param
from jobs._storage import (
    OVERWRITE_PARAM,
    ArrowStorage,
    check_output,
    input_path,
    inspect_parquet,
    job_output,
    writing,
)

SCRIPTS = {  # the kit's job -> the source project's script, and the input it reads
    "etl": ("etl_benchmark.py", ("datasets", "people")),
    "top-earners": ("query1_top_earners.py", ("datasets", "people-processed")),
    "age-extremes": ("query2_age_extremes.py", ("datasets", "people-processed")),
}
HERE = Path(__file__).resolve().parent / "_seed_paper"


def main(ctx: JobContext) -> dict[str, Any]:
    name = ctx.params["script"]
    script, default_input = SCRIPTS[name]
    storage = ArrowStorage()
    source = input_path(ctx, ctx.params["input"], *default_input, storage=storage)
    out = job_output(ctx, ctx.params["output"], "results", f"seed-paper-{name}")
    with ctx.stage("open"):
        rows = inspect_parquet(storage, source, made_by="datagen" if name == "etl" else "etl").rows
    check_output(storage, out)
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    with writing(storage, out, meta={"source": source, "script": script}) as tmp, \
            ctx.stage("script"):  # fmt: skip
        proc = subprocess.run(
            [sys.executable, str(HERE / script), source, tmp],
            cwd=HERE, env=env, stdout=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"{script} exited with {proc.returncode} (its output is above)")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(report))
    return {"rows": rows, "script": script, "script_s": report["seconds"], "report": report,
            "input": source, "output": out.path}  # fmt: skip


JOB = Job(
    name="seed-paper",
    summary="The source project's ETL / query scripts as it wrote them (a bench baseline)",
    engine="spark",
    main=main,
    params=[
        Param("script", "choice", "etl", "which script", tuple(SCRIPTS)),
        Param("input", "str", "", "input (default: what the kit's job of that name reads)"),
        Param("output", "str", "", "output (default: <storage>/results/seed-paper-SCRIPT)"),
        OVERWRITE_PARAM,
    ],
)
