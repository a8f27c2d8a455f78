"""The run supervisor: ``python -m clusterkit.supervisor --cluster NAME --run-id ID``.

Started detached by :func:`clusterkit.runs.submit`. It starts the job in its own process
group on the driver host, samples memory and CPU while it runs, and on exit writes the final
record. SIGTERM (what ``clusterkit cancel`` sends) stops the job's process group and every
process carrying the run's marker (Spark executors, Ray workers), then records ``cancelled``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from clusterkit import daemons
from clusterkit.cluster import open_cluster
from clusterkit.metrics import RUN_MARKER, RunProcessFinder, Sampler
from clusterkit.runs import RunStore, kill_run_processes, now_iso
from clusterkit.state import write_json_atomic

#: After the driver exits, how long its executors and Ray workers get to end on their own.
DRAIN_TIMEOUT_S = 15.0


def _error_from(run_dir: Path, exit_code: int) -> str:
    error_file = run_dir / "error.json"
    if error_file.exists():
        message: str = json.loads(error_file.read_text()).get("message", "")
        return message
    if exit_code < 0:
        return f"the job was killed by signal {signal.Signals(-exit_code).name}"
    tail = (run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-1:]
    return f"the job exited with code {exit_code}" + (f": {tail[0]}" if tail else "")


def _drain(run_id: str, job_pid: int) -> None:
    """Wait for the run's remaining processes to end; stop any that outlive the drain time."""
    finder = RunProcessFinder(run_id)
    me = os.getpid()
    daemons.wait_until(
        lambda: not [p for p in finder.find() if p.pid not in (me, job_pid)],
        timeout_s=DRAIN_TIMEOUT_S,
        interval_s=0.5,
    )
    kill_run_processes(run_id)


def supervise(cluster_name: str, run_id: str) -> int:
    cluster = open_cluster(cluster_name)
    store = RunStore(cluster.paths.runs)
    run_dir = store.dir(run_id)
    record = store.load(run_id)
    cancel = threading.Event()

    def on_term(signum: int, _frame: Any) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    env = {
        **os.environ,
        **cluster.job_env(),
        RUN_MARKER: run_id,
        "CLUSTERKIT_RUN_DIR": str(run_dir),
        "PYTHONUNBUFFERED": "1",
    }
    argv = [sys.executable, "-m", "jobs", record.job, "--params-json", json.dumps(record.params)]
    if cluster.is_remote:  # the driver runs on the master; this process streams and fetches
        argv = [sys.executable, "-m", "clusterkit.remote_job", cluster_name, run_id]
    sampler = None
    # the sampler reads this machine's processes: a remote run's are on the nodes (issue 8)
    if record.metrics_enabled and not cluster.is_remote:
        metrics_file = open(run_dir / "metrics.jsonl", "a")  # noqa: SIM115
        driver = cluster.inventory.driver().name

        def write_sample(sample: dict[str, Any]) -> None:
            metrics_file.write(json.dumps(sample) + "\n")
            metrics_file.flush()

        sampler = Sampler(
            run_id, node=driver, interval_s=cluster.spec.metrics.interval_s, on_sample=write_sample
        )
    with open(run_dir / "stdout.log", "ab") as out, open(run_dir / "stderr.log", "ab") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=run_dir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        record = store.load(run_id)
        record.status, record.started, record.job_pid = "running", now_iso(), proc.pid
        store.save(record)
        if sampler is not None:
            sampler.start()
        while proc.poll() is None:
            if cancel.is_set():
                daemons.terminate_tree(psutil.Process(proc.pid), prune=is_supervisor)
                proc.wait()
                break
            time.sleep(0.1)
        exit_code = proc.returncode
        wall_s = round(time.perf_counter() - started, 3)
    _drain(run_id, proc.pid)
    peaks = sampler.stop() if sampler is not None else None
    if cancel.is_set() or exit_code != 0:  # a job that succeeded renamed its outputs
        for path in sweep_temp_outputs(cluster.storage_root, run_id):
            print(f"removed {path}: a temporary output the run left unfinished", flush=True)

    record = store.load(run_id)
    record.ended, record.wall_s, record.exit_code = now_iso(), wall_s, exit_code
    if cancel.is_set():
        record.status = "cancelled"
        record.error = record.cancel_requested or "cancelled (the supervisor was signalled)"
    elif exit_code == 0:
        record.status = "succeeded"
    else:
        record.status = "failed"
        record.error = _error_from(run_dir, exit_code)
    if peaks is not None:
        result_file = run_dir / "result.json"
        result = json.loads(result_file.read_text()) if result_file.exists() else None
        _add_driver_peak(peaks, (result or {}).get("driver_max_rss_bytes"))
        record.peak_rss_bytes = peaks["peak_rss_bytes"]
        record.nodes = {peaks["node"]: peaks}
        if result is not None:
            result["peak_rss_bytes"] = peaks["peak_rss_bytes"]
            result["peak_rss_by_role"] = peaks["peak_rss_by_role"]
            write_json_atomic(result_file, result)
    store.save(record)
    return 0


def _add_driver_peak(peaks: dict[str, Any], driver_max_rss: int | None) -> None:
    """Fold in the job process's own peak (from the kernel): the sampler reads every
    interval and can miss a short run's peak; the run's peak is at least the driver's."""
    if not driver_max_rss:
        return
    roles = peaks["peak_rss_by_role"]
    roles["driver"] = max(roles.get("driver", 0), driver_max_rss)
    peaks["peak_rss_bytes"] = max(peaks["peak_rss_bytes"], driver_max_rss)


def sweep_temp_outputs(root: str, run_id: str) -> list[str]:
    """Remove what the run left half-written under a local storage root.

    Every job writes an output to ``<target>.tmp-<run id>`` (a model to ``.tmp-<run id>``)
    and renames it into place when it is complete, so once the run's processes are all gone,
    whatever still carries that name is an unfinished output of a failed or cancelled run.
    Remote storage (hdfs://) is left to the node-side cleanup of the remote providers.
    """
    if "://" in root and not root.startswith("file://"):
        return []
    base = Path(root.removeprefix("file://"))
    if not base.is_dir():
        return []
    removed = []
    for path in sorted(base.rglob(f"*tmp-{run_id}"), key=lambda p: len(p.parts)):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(str(path))
    return removed


def is_supervisor(proc: psutil.Process) -> bool:
    """A run supervisor: a run started from inside this one (a suite's step) is its own run,
    stopped through its own record, not killed with this run's processes."""
    try:
        return "clusterkit.supervisor" in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterkit.supervisor")
    parser.add_argument("--cluster", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    return supervise(args.cluster, args.run_id)


if __name__ == "__main__":
    raise SystemExit(main())
