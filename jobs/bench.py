"""bench: jobs x engines x sizes, each several times, every run recorded; the comparison table.

For each size (smallest first) the bench makes its dataset with ``datagen`` (kept under
``datasets/bench-PROFILE-ROWS`` and reused while its metadata matches) and, for the queries,
the processed dataset with ``etl`` (on DuckDB, the quickest). Then, ``repeats`` times,
every job runs on every engine, the engines' order rotated each round so that no engine
always runs first or last on a drifting machine. Each of these is a run of its own (its
``parent`` is the bench's run), so ``clusterkit runs`` lists it and cancelling the bench
cancels it. Outputs go under ``bench/`` and are deleted after each run; the bench's datasets
and timed runs pass ``overwrite`` (they replace only what the kit made: their own).

Before any timed run, the bench checks that every size fits the storage root's free disk:
the dataset, the processed dataset and the largest output, from bytes per row measured on a
dataset of the same profile (the smallest size, or a 100k-row probe, when there is none). A
size that does not fit is refused with the figures before anything else starts.

The table (Markdown and CSV, in the run's folder) has, per job, size and engine: runs, the
median of the jobs' own ``wall_s``, min-max, the ratio of the median to the fastest engine's,
the highest peak memory of the run's processes, and the source project's published figure.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from typing import Any

from clusterkit.jobkit import (
    Job,
    JobContext,
    JobInputError,
    Param,
    RunRecord,
    markdown,
    measurement,
    summarise,
    to_csv,
)
from jobs._storage import ArrowStorage

JOBS = ("etl", "top-earners", "age-extremes")
#: jobs that can be compared but are not by default: the digits' ETL (its size is the number
#: of training images datagen-digits makes, with a sixth as many test images)
OPTIONAL_JOBS = ("digits-etl",)
#: the jobs whose source scripts the seed-paper engine has
SEED_PAPER_JOBS = JOBS
#: digits-etl's bytes per training image on disk, with its share of test images: the CSV
#: (about 1.6 kB a row) and the Parquet it writes (784 float32 before compression)
DIGITS_BYTES_PER_ROW = 6_000 * 7 / 6
ENGINES = ("spark", "ray", "duckdb", "seed-paper")
PROBE_ROWS = 100_000


class Bench:
    """The bench's child runs and datasets."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.children = ctx.children()
        self.storage = ArrowStorage()
        self.profile, self.seed = ctx.params["profile"], int(ctx.params["seed"])

    def run(self, job: str, params: dict[str, Any]) -> RunRecord:
        """Submit a child run and wait for it; its final record."""
        submitted = self.children.submit(job, params)
        print(f"bench: run {submitted.id}: {job} {json.dumps(params)}", flush=True)
        return self.children.wait(submitted.id)

    def prepare(self, job: str, params: dict[str, Any]) -> None:
        record = self.run(job, params)
        if record.status != "succeeded":
            raise RuntimeError(f"preparing the data: {job} (run {record.id}) {record.status}: "
                               f"{record.error}")  # fmt: skip

    def raw(self, rows: int) -> str:
        """The dataset of ``rows`` rows (made unless a matching one is there)."""
        name = f"bench-{self.profile}-{rows}"
        path = self.ctx.storage_path("datasets", name)
        meta = self.storage.metadata(path) if self.storage.exists(path) else {}
        wanted = {"rows": rows, "profile": self.profile, "seed": self.seed}
        if any(meta.get(k) != v for k, v in wanted.items()):
            self.prepare("datagen", {**wanted, "name": name, "overwrite": True})
        return path

    def digits(self, rows: int) -> str:
        """The digits' CSV folder of ``rows`` training images (made unless a matching one
        is there)."""
        name = f"bench-digits-{rows}"
        path = self.ctx.storage_path("datasets", name)
        meta = self.storage.metadata(path) if self.storage.exists(path) else {}
        if meta.get("seed") != self.seed or meta.get("train_rows") != rows:
            params = {"rows": rows, "test_rows": max(1, rows // 6), "seed": self.seed,
                      "name": name, "overwrite": True}  # fmt: skip
            self.prepare("datagen-digits", params)
        return path

    def processed(self, raw: str) -> str:
        """The processed dataset of ``raw`` (etl on DuckDB, the fastest, whose output the
        tests hold equal to the other engines'; unless an up-to-date one is there)."""
        path = f"{raw}-processed"
        meta = self.storage.metadata(path) if self.storage.exists(path) else {}
        if meta.get("source") != raw or meta.get("checksum") != self.storage.metadata(raw).get(
            "checksum"
        ):
            self.prepare("etl", {"engine": "duckdb", "input": raw, "output": path,
                                 "overwrite": True})  # fmt: skip
        return path

    def bytes_per_row(self, path: str) -> float:
        files = self.storage.files(path)
        rows = int(self.storage.metadata(path).get("rows") or 0)
        return sum(self.storage.size(f) for f in files) / max(rows, 1)

    def room(self, sizes: list[int], with_queries: bool, with_digits: bool = False,
             with_people: bool = True) -> None:  # fmt: skip
        """Refuse (JobInputError) a size whose data would not fit the free disk."""
        root = self.ctx.storage_root
        if "://" in root and not root.startswith("file://"):
            print(f"bench: {root} is remote storage; its free space is not checked", flush=True)
            return
        free = shutil.disk_usage(root.removeprefix("file://")).free
        if not with_people:  # the digits alone
            need = DIGITS_BYTES_PER_ROW * max(sizes)
            if need > free:
                raise JobInputError(
                    f"{max(sizes):,} training images do not fit this machine's disk: their CSV "
                    f"and Parquet need about {need / 1e9:.1f} GB and {root} has "
                    f"{free / 1e9:.1f} GB free; choose smaller --sizes or free some disk"
                )
            return
        made = [s for s in sizes if self.storage.exists(self.ctx.storage_path(
            "datasets", f"bench-{self.profile}-{s}"))]  # fmt: skip
        sample = self.raw(max(made) if made else min(min(sizes), PROBE_ROWS))
        raw_b = self.bytes_per_row(sample)
        processed_b = self.bytes_per_row(self.processed(sample))
        for size in sizes:
            exists = size in made
            need = (0 if exists else raw_b * size) + processed_b * size * (2 if with_queries else 1)
            need += DIGITS_BYTES_PER_ROW * size if with_digits else 0
            if need > free:
                raise JobInputError(
                    f"size {size:,} rows does not fit this machine's disk: the {self.profile} "
                    f"dataset{'' if exists else ' and'} its processed copy and the largest "
                    f"output need {need / 1e9:.1f} GB ({raw_b:.1f} and {processed_b:.1f} bytes "
                    f"per row, measured on {sample}), and {root} has {free / 1e9:.1f} GB free; "
                    f"choose smaller --sizes or free some disk"
                )


def plan(p: dict[str, Any]) -> list[tuple[int, int, str, str]]:
    """(rows, round, job, engine) of every timed run, in the order they run."""
    engines = list(p["engines"])
    out = []
    for rows in sorted(p["sizes"]):
        for turn in range(int(p["repeats"])):
            order = engines[turn % len(engines) :] + engines[: turn % len(engines)]
            out += [(rows, turn, job, engine) for job in p["jobs"] for engine in order
                    if engine != "seed-paper" or job in SEED_PAPER_JOBS]  # fmt: skip
    return out


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    if int(p["repeats"]) < 1:
        raise JobInputError(f"--repeats {p['repeats']}: give 1 or more runs per cell")
    bench = Bench(ctx)
    with_queries = any(j in JOBS and j != "etl" for j in p["jobs"])
    with ctx.stage("room"):
        bench.room(
            sorted(p["sizes"]),
            with_queries,
            "digits-etl" in p["jobs"],
            with_people=any(j in JOBS for j in p["jobs"]),
        )
    todo = plan(p)
    measured = []
    inputs: dict[tuple[int, str], str] = {}
    with ctx.stage("runs"):
        for done, (rows, _, job, engine) in enumerate(todo):
            ctx.progress(done, len(todo), "runs")
            if (rows, job) not in inputs and job == "digits-etl":
                inputs[(rows, job)] = bench.digits(rows)
            elif (rows, job) not in inputs:
                raw = bench.raw(rows)
                inputs[(rows, job)] = raw if job == "etl" else bench.processed(raw)
            output = ctx.storage_path("bench", f"{job}-{engine}")
            # the bench's own scratch output (one a cancelled bench left behind is replaced)
            params = {"input": inputs[(rows, job)], "output": output, "overwrite": True}
            if engine == "seed-paper":
                record = bench.run("seed-paper", {"script": job, **params})
            else:
                record = bench.run(job, {"engine": engine, **params})
            if bench.storage.exists(output):
                bench.storage.delete(output)
            measured.append(measurement(record, bench.children.result(record.id), rows=rows))
        ctx.progress(len(todo), len(todo), "runs")
    table = summarise(measured, engines=p["engines"])
    (ctx.run_dir / "bench.md").write_text(markdown(table))
    (ctx.run_dir / "bench.csv").write_text(to_csv(table))
    print("\n" + markdown(table))
    print(f"table: {ctx.run_dir / 'bench.md'} and bench.csv")
    failed = [m for m in measured if m.status != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(measured)} runs did not succeed, first: "
                           f"{failed[0].job} on {failed[0].engine} (run {failed[0].run}): "
                           f"{failed[0].error}")  # fmt: skip
    return {
        "table": [asdict(r) for r in table],
        "markdown": str(ctx.run_dir / "bench.md"),
        "csv": str(ctx.run_dir / "bench.csv"),
        "runs": [m.run for m in measured],
    }


JOB = Job(
    name="bench",
    summary="Jobs x engines x sizes, repeated and recorded; a Markdown + CSV comparison table",
    engine="python",
    main=main,
    params=[
        Param("jobs", "choices", list(JOBS), "jobs to compare (digits-etl: sizes are its "
              "training images)", JOBS + OPTIONAL_JOBS),
        Param("engines", "choices", list(ENGINES),
              "engines (seed-paper: the source project's scripts)", ENGINES),
        Param("sizes", "counts", [1_000_000, 30_000_000], "dataset sizes in rows, e.g. 1M,30M"),
        Param("repeats", "int", 3, "runs of each job on each engine at each size"),
        Param("profile", "choice", "seed-paper", "datagen's profile", ("realistic", "seed-paper")),
        Param("seed", "int", 42, "datagen's seed"),
    ],
)  # fmt: skip
