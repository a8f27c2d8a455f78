"""Cross-validated hyperparameter search, distributed as Ray tasks.

The training matrix goes into Ray's object store once; every (trial, fold) pair is one Ray
task holding one CPU (Ray then sets OMP_NUM_THREADS=1 in it, so trials do not fight over
cores), which reads the matrix zero-copy, fits, scores its fold and reports which process on
which node did the work. The best trial (lowest mean fold MSE) is refitted on the whole
training set in one task that holds every CPU of the largest node (a task runs on one node:
asking for the whole cluster's CPUs would wait for ever on a cluster of two).

Plain Ray tasks rather than Ray Tune or joblib's Ray backend: the data is shared once through
the object store instead of being pickled into every call, and each fit reports where it ran,
which is what the run record shows.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from jobs._features import build_estimator
from jobs._model import Trial


def _where() -> dict[str, Any]:
    import ray

    context = ray.get_runtime_context()
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "node_id": context.get_node_id(),
        "worker_id": context.get_worker_id(),
        "in_ray_worker": context.worker.mode == ray.WORKER_MODE,
    }


def fold_indices(rows: int, folds: int, fold: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices of one fold of a seeded shuffled K-fold split."""
    from sklearn.model_selection import KFold

    splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(np.empty((rows, 1)))
    return next(s for i, s in enumerate(splits) if i == fold)


def fit_fold(
    X: np.ndarray, y: np.ndarray, trial: Trial, fold: int, folds: int, seed: int
) -> dict[str, Any]:
    """Fit ``trial`` on all folds but ``fold`` and score it on ``fold`` (runs in a Ray task)."""
    train, valid = fold_indices(len(y), folds, fold, seed)
    estimator = build_estimator(trial, seed=seed)
    started = time.perf_counter()
    estimator.fit(X[train], y[train])
    fit_s = time.perf_counter() - started
    error = estimator.predict(X[valid]) - y[valid]
    return {
        "trial": trial.number,
        "fold": fold,
        "mse": float(np.mean(error**2)),
        "fit_s": round(fit_s, 3),
        **_where(),
    }


def refit(X: np.ndarray, y: np.ndarray, trial: Trial, seed: int, n_jobs: int) -> dict[str, Any]:
    """Fit ``trial`` on every row (runs in a Ray task holding ``n_jobs`` CPUs)."""
    estimator = build_estimator(trial, seed=seed, n_jobs=n_jobs)
    started = time.perf_counter()
    estimator.fit(X, y)
    return {"estimator": estimator, "fit_s": round(time.perf_counter() - started, 3), **_where()}


@dataclass(frozen=True)
class Shared:
    """The training matrix and target, put in Ray's object store once for every task."""

    X: Any  # ObjectRef
    y: Any  # ObjectRef


def share(X: np.ndarray, y: np.ndarray) -> Shared:
    """Put the training data in the object store (``ray`` must be initialised)."""
    import ray

    return Shared(ray.put(X), ray.put(y))


def search(
    data: Shared,
    trials: Sequence[Trial],
    *,
    folds: int,
    seed: int,
    on_fit: Callable[[int, int], None] = lambda done, total: None,
) -> dict[str, Any]:
    """Run every (trial, fold) as a Ray task; the best trial and every fit's report.

    Returns ``best`` (a Trial), ``trials`` (one summary per trial: params, mean and per-fold
    MSE) and ``fits`` (where each fit ran, how long it took), sorted by trial and fold.
    """
    import ray

    task = ray.remote(num_cpus=1)(fit_fold)
    pending = [
        task.remote(data.X, data.y, trial, fold, folds, seed)
        for trial in trials
        for fold in range(folds)
    ]
    total, fits = len(pending), []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            fits.extend(ray.get(done))
            on_fit(len(fits), total)
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    fits.sort(key=lambda f: (f["trial"], f["fold"]))
    summaries = []
    for trial in trials:
        scores = [f["mse"] for f in fits if f["trial"] == trial.number]
        summaries.append({**asdict(trial), "label": trial.label(),
                          "cv_mse": float(np.mean(scores)), "fold_mse": scores})  # fmt: skip
    best = min(summaries, key=lambda s: s["cv_mse"])
    return {"best": trials[best["number"]], "trials": summaries, "fits": fits}


def refit_best(data: Shared, trial: Trial, *, seed: int) -> dict[str, Any]:
    """Refit ``trial`` on every row in one Ray task that holds every CPU of the largest node."""
    import ray

    alive = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
    cpus = max(1, int(max(alive, default=1)))
    task = ray.remote(num_cpus=cpus)(refit)
    report: dict[str, Any] = ray.get(task.remote(data.X, data.y, trial, seed, cpus))
    report["cpus"] = cpus
    return report


def where_summary(fits: Sequence[dict[str, Any]]) -> dict[str, int]:
    """How many fits each process ran: ``{"HOST pid N": count}``."""
    counts = Counter(f"{f['host']} pid {f['pid']}" for f in fits)
    return dict(sorted(counts.items()))
