"""The run supervisor: it runs one job on the driver node, samples it, and finishes its record.

``python -m clusterkit.runs.supervisor --run-dir DIR``, started detached on the driver node by
:meth:`clusterkit.runs.launcher.Runs.submit` (this machine for the local provider, the master
otherwise); the run folder's ``setup.json`` says what the job needs. It goes on when whoever
started it has gone, and its run folder is the truth that every reader of the runs sees.

It starts the job in its own process group, samples memory and CPU on its own node and
(through their runners, :mod:`clusterkit.metrics.peers`) on the others while it runs, and on
exit writes the final record with each node's peaks and the runs the job submitted. The
record's environment block is read on a thread of its own once the job has started (never
delaying it, and outside the job's processes and samples): it is written with the record as
soon as it is read, and at the latest in the final record. It alone writes the run's
``record.json`` while it lives. SIGTERM (what ``clusterkit cancel`` sends,
after writing the reason in ``cancel.json``) stops the job's process group and every process
carrying the run's marker on every node, then records ``cancelled``; a run asked to stop
before its job started is recorded ``cancelled`` without running it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from clusterkit.core.files import write_json_atomic
from clusterkit.core.outputs import sweep_temp_outputs
from clusterkit.core.records import RUN_MARKER, SHARED_FILE, RunRecord, now_iso
from clusterkit.exec import processes
from clusterkit.metrics.peers import PeerSampler
from clusterkit.metrics.sampling import (
    Peaks,
    RunProcessFinder,
    Sampler,
    fold_shared,
    is_ray_worker,
    stop_run_processes,
)
from clusterkit.runs import environment
from clusterkit.runs.launcher import CANCEL_FILE, RunSetup
from clusterkit.runs.stall import CHECK_EVERY_S, StallWatch
from clusterkit.runs.store import FolderRunStore

#: After the driver exits, how long its executors and Ray workers get to end on their own.
DRAIN_TIMEOUT_S = 15.0
#: ... and how long Ray workers left once the rest has ended (a job's own end within a
#: second; detached actors, such as Ray Data's statistics actor, never: those are stopped).
RAY_DRAIN_S = 2.0


def _error_from(run_dir: Path, exit_code: int) -> str:
    error_file = run_dir / "error.json"
    if error_file.exists():
        message: str = json.loads(error_file.read_text()).get("message", "")
        return message
    if exit_code < 0:
        return f"the job was killed by signal {signal.Signals(-exit_code).name}"
    tail = (run_dir / "stderr.log").read_text(errors="replace").strip().splitlines()[-1:]
    return f"the job exited with code {exit_code}" + (f": {tail[0]}" if tail else "")


def _drain(run_id: str, job_pid: int, peers: list[PeerSampler], ended: float, *,
           settle: bool) -> None:  # fmt: skip
    """Wait for the run's remaining processes on every node to end; stop any that outlive
    the drain time (a peer's count is its latest sample taken after the job ended)."""
    finder = RunProcessFinder(run_id)
    me = os.getpid()

    def peer_done(peer: PeerSampler, *, but_ray: bool = False) -> bool:
        latest = peer.latest
        if peer.error is not None:
            return True
        if latest is None or latest["t"] <= ended:
            return False
        left = latest["run_processes"] - (latest.get("run_ray_workers", 0) if but_ray else 0)
        return bool(left == 0)

    def here_left(*, but_ray: bool = False) -> list[psutil.Process]:
        left = [p for p in finder.find() if p.pid not in (me, job_pid)]
        if but_ray:
            left = [p for p in left if not is_ray_worker(p)]
        return [p for p in left if not _never_ends(p)]

    processes.wait_until(  # Spark's executors end once their driver has: give them the time
        lambda: not here_left(but_ray=True) and all(peer_done(p, but_ray=True) for p in peers),
        timeout_s=DRAIN_TIMEOUT_S,
        interval_s=0.25,
    )
    processes.wait_until(
        lambda: not here_left() and all(peer_done(p) for p in peers),
        timeout_s=RAY_DRAIN_S,
        interval_s=0.25,
    )
    stop_run_processes(run_id, settle=settle)
    for peer in peers:
        if not peer_done(peer):
            peer.stop_run_processes()


#: Ray workers that never end by themselves once their job has: Ray Data's statistics actor
#: and its autoscaling coordinator are detached (they outlive their driver), so waiting for
#: them is time lost; they are stopped (Ray starts the coordinator again when it is needed).
NEVER_ENDS = ("ray::_StatsActor", "ray::_AutoscalingCoordinatorActor")


def _never_ends(proc: psutil.Process) -> bool:
    try:
        argv = proc.cmdline()
    except psutil.Error:
        return False
    return bool(argv) and argv[0].startswith(NEVER_ENDS)


def supervise_run(store: FolderRunStore, run_id: str, setup: RunSetup) -> int:
    """Run the record's job to its end as ``setup`` says; write the final record."""
    run_dir = store.dir(run_id)
    record = store.load(run_id)
    cancel = threading.Event()

    def on_term(signum: int, _frame: Any) -> None:
        cancel.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the SSH session that started it may end
    me = psutil.Process()
    record.supervisor = {"pid": me.pid, "create_time": me.create_time(), "node": setup.node}
    if _cancel_reason(store, run_id):  # cancelled before it started: the job never runs
        record.status, record.started, record.ended, record.wall_s = (
            "cancelled", now_iso(), now_iso(), 0.0)  # fmt: skip
        record.cancel_requested = record.error = _cancel_reason(store, run_id)
        store.save(record)
        return 0

    env = {**os.environ, **setup.env, RUN_MARKER: run_id, "PYTHONUNBUFFERED": "1",
           "CLUSTERKIT_SPARK_SESSION": record.spark_session}  # fmt: skip
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

        def uses_shared() -> bool:  # once the job attached to the Spark Connect server
            return (run_dir / SHARED_FILE).exists()

        def write_peer_sample(sample: dict[str, Any]) -> None:
            write_sample(fold_shared(sample) if uses_shared() else sample)

        sampler = Sampler(run_id, node=setup.node, interval_s=setup.interval_s,
                          on_sample=write_sample, uses_shared=uses_shared)  # fmt: skip
        peers = [PeerSampler(runner, python=setup.python, run_id=run_id,
                             interval_s=setup.interval_s, on_sample=write_peer_sample)
                 for runner in setup.peer_runners()]  # fmt: skip
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
        reader = BlockReader(setup, env).start()  # beside the job, never before it
        record.status, record.started, record.job_pid = "running", now_iso(), proc.pid
        store.save(record)
        if sampler is not None:
            sampler.start()
        for peer in peers:
            peer.start()
        watch = StallWatch(run_id, run_dir, timeout_s=setup.stall_timeout_s,
                           spark_master_ui=setup.spark_master_ui,
                           ray_dashboard=setup.ray_dashboard,
                           ray_token_file=setup.ray_token_file,
                           ray_gcs_port=setup.ray_gcs_port)  # fmt: skip
        next_look, stalled = time.monotonic(), None  # the first look: what it starts with
        while proc.poll() is None:
            if cancel.is_set() or stalled:
                processes.terminate_tree(psutil.Process(proc.pid), prune=is_supervisor)
                proc.wait()
                break
            if time.monotonic() >= next_look:
                stalled = _look(watch)
                next_look = time.monotonic() + CHECK_EVERY_S
            if reader.take():  # read: into the record now, for whoever looks while it runs
                record.environment = reader.block
                store.save(record)
            time.sleep(0.1)
        exit_code = proc.returncode
        wall_s = round(time.perf_counter() - started, 3)
        if not stalled:
            _look(watch)  # a last look: what it lost since the one before goes in its notes
    ended_badly = cancel.is_set() or stalled is not None or exit_code != 0
    _drain(run_id, proc.pid, peers, time.time(), settle=ended_badly)
    driver = sampler.stop() if sampler is not None else None
    for peer in peers:
        peer.stop()
    if ended_badly:  # a job that succeeded renamed its outputs
        for path in sweep_temp_outputs(setup.storage_root, run_id):
            print(f"removed {path}: a temporary output the run left unfinished", flush=True)

    record.ended, record.wall_s, record.exit_code = now_iso(), wall_s, exit_code
    record.environment = reader.wait()  # a run that ended first still gets its block
    if record.environment is not None:
        record.environment["input"] = environment.read_input(run_dir)
    record.notes = watch.notes
    if stalled is not None and not cancel.is_set():
        record.status, record.error = "failed", stalled
    elif cancel.is_set():
        record.status = "cancelled"
        record.cancel_requested = _cancel_reason(store, run_id)
        record.error = record.cancel_requested or "cancelled (the supervisor was signalled)"
    elif exit_code == 0:
        record.status = "succeeded"
    else:
        record.status = "failed"
        record.error = _error_from(run_dir, exit_code)
        if watch.server_lost:  # the job saw only its session break: say why it did
            record.error = f"{watch.server_lost} (the job: {record.error})"
    if driver is not None:
        _record_peaks(record, run_dir, peaks, driver, [p for p in peers if p.error])
    record.children = [r.id for r in store.all() if r.parent == run_id]
    store.save(record)
    return 0


def _look(watch: StallWatch) -> str | None:
    """One look of the stall rule; a look that fails (an answer of a shape never seen) is
    said in ``supervisor.log`` and skipped: it must not end the supervisor, the run's only
    recorder."""
    try:
        return watch.tick()
    except Exception as exc:
        print(f"clusterkit: the stall check failed ({type(exc).__name__}: {exc}); skipped",
              file=sys.stderr, flush=True)  # fmt: skip
        return None


class BlockReader:
    """The record's environment block (:func:`_environment`), read on a thread of the
    supervisor while the job runs: its time is none of the job's (``wall_s`` runs from the
    job's start to its end whatever the thread does) and its CPU is the supervisor's, a
    process without the run's marker, so no run sample counts it (the node's CPU does).

    The supervisor, the record's only writer, asks :meth:`take` between looks and writes
    :attr:`block` with the record once it is read; :meth:`wait` waits for it at the run's
    end. A block that cannot be read is said in ``supervisor.log`` and left None."""

    def __init__(self, setup: RunSetup, env: dict[str, str], *,
                 timeout_s: float = environment.READ_TIMEOUT_S) -> None:  # fmt: skip
        self.block: dict[str, Any] | None = None
        self.timeout_s = timeout_s
        self._done = threading.Event()
        self._taken = False
        self._thread = threading.Thread(target=self._read, args=(setup, env),
                                        name="environment", daemon=True)  # fmt: skip

    def start(self) -> BlockReader:
        self._thread.start()
        return self

    def _read(self, setup: RunSetup, env: dict[str, str]) -> None:
        try:
            self.block = _environment(setup, env)
        finally:
            self._done.set()

    def take(self) -> bool:
        """True once, when a block has been read and not yet taken (None is never taken)."""
        if self._taken or not self._done.is_set() or self.block is None:
            return False
        self._taken = True
        return True

    def wait(self) -> dict[str, Any] | None:
        """The block, once read (None: it could not be, or was not within ``timeout_s``)."""
        if not self._done.wait(self.timeout_s):
            print(f"clusterkit: the run's environment was not read within {self.timeout_s:g} s; "
                  "its record carries none", file=sys.stderr, flush=True)  # fmt: skip
            return None
        return self.block


def _environment(setup: RunSetup, env: dict[str, str]) -> dict[str, Any] | None:
    """The record's environment block (:mod:`clusterkit.runs.environment`), read here; a
    reading that fails is said in ``supervisor.log`` and the block left out (None): it must
    not end the supervisor, the run's only recorder."""
    try:
        return environment.run_block(setup.environment, node=setup.node, env=env)
    except Exception as exc:
        print(f"clusterkit: the run's environment could not be read ({type(exc).__name__}: "
              f"{exc}); its record carries none", file=sys.stderr, flush=True)  # fmt: skip
        return None


def _cancel_reason(store: FolderRunStore, run_id: str) -> str | None:
    """Why the run was asked to stop (``cancel.json``, which the canceller writes before it
    signals), or None. The supervisor is the only writer of ``record.json`` while it lives."""
    request = store.read_json(run_id, CANCEL_FILE)
    return str(request["reason"]) if request and request.get("reason") else None


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
    for name, node in nodes.items():
        shared = sorted(r.removeprefix("shared ") for r in node.get("peak_rss_by_role", {})
                        if r.startswith("shared "))  # fmt: skip
        if shared:
            record.shared_processes[name] = shared
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


def is_supervisor(proc: psutil.Process) -> bool:
    """A run supervisor: a run started from inside this one (a suite's step) is its own run,
    stopped through its own record, not killed with this run's processes."""
    try:
        return "clusterkit.runs.supervisor" in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clusterkit.runs.supervisor")
    parser.add_argument(
        "--run-dir", type=Path, required=True, help="the run's folder (record.json, setup.json)"
    )
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    return supervise_run(FolderRunStore(run_dir.parent), run_dir.name, RunSetup.load(run_dir))


if __name__ == "__main__":
    raise SystemExit(main())
