"""The run supervisor: it runs one job on the driver node, samples it, and finishes its record.

Local cluster: ``python -m clusterkit.supervisor --cluster NAME --run-id ID``, started detached
by :func:`clusterkit.runs.submit` on this machine. Remote cluster: ``python -m
clusterkit.supervisor --run-dir DIR`` on the master, started detached over SSH by
:mod:`clusterkit.remote_runs`, the run folder's ``setup.json`` saying what the job needs; it
goes on when the SSH session that started it ends, and the master's run folder is the truth
that every laptop's run store copies.

It starts the job in its own process group, samples memory and CPU on its own node and (over
SSH, :mod:`clusterkit.peer_sampling`) on the others while it runs, and on exit writes the final
record with each node's peaks. SIGTERM (what ``clusterkit cancel`` sends) stops the job's
process group and every process carrying the run's marker on every node, then records
``cancelled``.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from clusterkit import daemons
from clusterkit.metrics import RUN_MARKER, Peaks, RunProcessFinder, Sampler
from clusterkit.peer_sampling import PeerSampler
from clusterkit.runs import RunRecord, RunStore, kill_run_processes, now_iso
from clusterkit.state import write_json_atomic

#: After the driver exits, how long its executors and Ray workers get to end on their own.
DRAIN_TIMEOUT_S = 15.0
SETUP_FILE = "setup.json"


@dataclass
class RunSetup:
    """What a run needs besides its record: the job's environment (added to the supervisor's),
    the node it runs on, the sampling interval, the storage root, the other nodes to sample
    (name and address each) and the Python that samples them."""

    env: dict[str, str]
    node: str
    interval_s: float
    storage_root: str
    python: str = sys.executable
    peers: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSetup:
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _error_from(run_dir: Path, exit_code: int) -> str:
    error_file = run_dir / "error.json"
    if error_file.exists():
        message: str = json.loads(error_file.read_text()).get("message", "")
        return message
    if exit_code < 0:
        return f"the job was killed by signal {signal.Signals(-exit_code).name}"
    tail = (run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-1:]
    return f"the job exited with code {exit_code}" + (f": {tail[0]}" if tail else "")


def _drain(run_id: str, job_pid: int, peers: list[PeerSampler], ended: float) -> None:
    """Wait for the run's remaining processes on every node to end; stop any that outlive
    the drain time (a peer's count is its latest sample taken after the job ended)."""
    finder = RunProcessFinder(run_id)
    me = os.getpid()

    def peer_done(peer: PeerSampler) -> bool:
        latest = peer.latest
        return peer.error is not None or (
            latest is not None and latest["t"] > ended and latest["run_processes"] == 0
        )

    daemons.wait_until(
        lambda: (
            not [p for p in finder.find() if p.pid not in (me, job_pid)]
            and all(peer_done(p) for p in peers)
        ),
        timeout_s=DRAIN_TIMEOUT_S,
        interval_s=0.5,
    )
    kill_run_processes(run_id)
    for peer in peers:
        if not peer_done(peer):
            peer.stop_run_processes()


def supervise(cluster_name: str, run_id: str) -> int:
    """A run on the local cluster: its setup from the cluster's state."""
    from clusterkit.cluster import open_cluster

    cluster = open_cluster(cluster_name)
    store = RunStore(cluster.paths.runs)
    setup = RunSetup(
        env={**cluster.job_env(), "CLUSTERKIT_RUN_DIR": str(store.dir(run_id))},
        node=cluster.inventory.driver().name,
        interval_s=cluster.spec.metrics.interval_s,
        storage_root=cluster.storage_root,
    )
    return supervise_run(store, run_id, setup)


def supervise_run(store: RunStore, run_id: str, setup: RunSetup) -> int:
    """Run the record's job to its end as ``setup`` says; write the final record."""
    run_dir = store.dir(run_id)
    record = store.load(run_id)
    cancel = threading.Event()

    def on_term(signum: int, _frame: Any) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started it may end

    env = {**os.environ, **setup.env, RUN_MARKER: run_id, "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "jobs", record.job, "--params-json", json.dumps(record.params)]
    peaks = Peaks()
    sampler: Sampler | None = None
    peers: list[PeerSampler] = []
    if record.metrics_enabled:
        metrics_file = open(run_dir / "metrics.jsonl", "a")  # noqa: SIM115
        lock = threading.Lock()

        def write_sample(sample: dict[str, Any]) -> None:
            peaks.add(sample)
            with lock:
                metrics_file.write(json.dumps(sample) + "\n")
                metrics_file.flush()

        sampler = Sampler(run_id, node=setup.node, interval_s=setup.interval_s,
                          on_sample=write_sample)  # fmt: skip
        peers = [PeerSampler(p["name"], p["address"], python=setup.python, run_id=run_id,
                             interval_s=setup.interval_s, on_sample=write_sample)
                 for p in setup.peers]  # fmt: skip
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
        me = psutil.Process()
        record = store.load(run_id)
        record.status, record.started, record.job_pid = "running", now_iso(), proc.pid
        record.supervisor = {"pid": me.pid, "create_time": me.create_time(), "node": setup.node}
        store.save(record)
        if sampler is not None:
            sampler.start()
        for peer in peers:
            peer.start()
        while proc.poll() is None:
            if cancel.is_set():
                daemons.terminate_tree(psutil.Process(proc.pid), prune=is_supervisor)
                proc.wait()
                break
            time.sleep(0.1)
        exit_code = proc.returncode
        wall_s = round(time.perf_counter() - started, 3)
    _drain(run_id, proc.pid, peers, time.time())
    driver = sampler.stop() if sampler is not None else None
    for peer in peers:
        peer.stop()
    if cancel.is_set() or exit_code != 0:  # a job that succeeded renamed its outputs
        for path in sweep_temp_outputs(setup.storage_root, run_id):
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
    if driver is not None:
        _record_peaks(record, run_dir, peaks, driver, [p for p in peers if p.error])
    store.save(record)
    return 0


def _record_peaks(record: RunRecord, run_dir: Path, peaks: Peaks, driver: dict[str, Any],
                  unsampled: list[PeerSampler]) -> None:  # fmt: skip
    """Each node's peaks and the run's into the record, and the run's into result.json."""
    result_file = run_dir / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    nodes = peaks.nodes()
    nodes[driver["node"]] = driver  # with the sampler's own CPU cost
    summary: dict[str, Any] = {"peak_rss_bytes": peaks.peak_rss_bytes,
                               "peak_rss_by_role": dict(peaks.peak_rss_by_role)}  # fmt: skip
    driver_max_rss = (result or {}).get("driver_max_rss_bytes")
    _add_driver_peak(summary, driver_max_rss)
    _add_driver_peak(driver, driver_max_rss)
    for peer in unsampled:
        nodes[peer.name] = {"node": peer.name, "samples": 0, "error": peer.error}
    record.peak_rss_bytes = summary["peak_rss_bytes"]
    record.nodes = nodes
    if result is not None:
        result.update(summary)
        if len(nodes) > 1:
            result["peak_rss_by_node"] = {n: v.get("peak_rss_bytes") for n, v in nodes.items()}
        write_json_atomic(result_file, result)


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
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cluster", help="a local cluster's name (with --run-id)")
    where.add_argument("--run-dir", type=Path, help="a run folder holding setup.json (a node)")
    parser.add_argument("--run-id")
    args = parser.parse_args(argv)
    if args.run_dir is not None:
        setup = RunSetup.from_dict(json.loads((args.run_dir / SETUP_FILE).read_text()))
        return supervise_run(RunStore(args.run_dir.parent), args.run_dir.name, setup)
    if not args.run_id:
        parser.error("--cluster needs --run-id")
    return supervise(args.cluster, args.run_id)


if __name__ == "__main__":
    raise SystemExit(main())
