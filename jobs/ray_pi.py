"""ray-pi: estimate pi by Monte Carlo in Ray tasks; reports where each task ran.

A small job that proves the Ray path: tasks spread over the cluster's Ray workers, the
result is checkable (|estimate - pi| shrinks as 1/sqrt(samples)), and the record shows the
nodes and worker processes that did the work.
"""

from __future__ import annotations

import math
from typing import Any

from clusterkit.jobkit import Job, JobContext, Param


def main(ctx: JobContext) -> dict[str, Any]:
    samples, tasks = int(ctx.params["samples"]), int(ctx.params["tasks"])
    ray = ctx.ray()

    @ray.remote
    def throw(n: int, seed: int) -> tuple[int, str, int]:
        import os

        import numpy as np

        rng = np.random.default_rng(seed)
        inside = 0
        left = n
        while left:
            chunk = min(left, 1_000_000)
            xy = rng.random((chunk, 2))
            inside += int(((xy * xy).sum(axis=1) <= 1.0).sum())
            left -= chunk
        return inside, ray.get_runtime_context().get_node_id(), os.getpid()

    per_task = [samples // tasks + (1 if i < samples % tasks else 0) for i in range(tasks)]
    with ctx.stage("tasks"):
        results = ray.get([throw.remote(n, ctx.params["seed"] + i) for i, n in enumerate(per_task)])
    inside = sum(r[0] for r in results)
    estimate = 4.0 * inside / samples
    nodes = sorted({r[1] for r in results})
    pids = sorted({r[2] for r in results})
    print(
        f"ray-pi: pi ~ {estimate:.6f} from {samples} samples in {tasks} tasks on "
        f"{len(nodes)} node(s), {len(pids)} worker process(es)"
    )
    return {
        "estimate": estimate,
        "abs_error": abs(estimate - math.pi),
        "samples": samples,
        "tasks": tasks,
        "nodes": nodes,
        "worker_pids": pids,
    }


JOB = Job(
    name="ray-pi",
    summary="Estimate pi with Monte Carlo tasks on Ray (proves the Ray path)",
    engine="ray",
    main=main,
    params=[
        Param("samples", "count", 10_000_000, "random points in total: 1M, 50M"),
        Param("tasks", "int", 8, "Ray tasks to split them into"),
        Param("seed", "int", 1, "random seed of the first task"),
    ],
)
