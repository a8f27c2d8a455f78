"""Memory and CPU, per node and per run, sampled with psutil.

A run's processes are found by the marker ``CLUSTERKIT_RUN_ID=<id>`` in their environment:
the job's driver gets it from the kit, Spark executors through ``spark.executorEnv`` and Ray
workers through the runtime environment. So the same sampler finds the driver, executors and
Ray workers of a run on any node it runs on, with no knowledge of Spark or Ray.

Run on a node as ``python -m clusterkit.metrics [--run-id ID]`` it prints one JSON sample per
interval on stdout (the node's figures, and the run's with ``--run-id``): the form in which
the other nodes report to a run's supervisor (:mod:`clusterkit.metrics.peers`) and every node
to ``status`` and the console (:mod:`clusterkit.metrics.nodes`). ``--stop-processes`` ends
the run's processes on that node instead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from clusterkit.core.outputs import sweep_temp_outputs
from clusterkit.core.records import RUN_MARKER, SHARED_MARKER
from clusterkit.exec.processes import terminate_all


def node_sample(node: str | None = None, *, cpu_interval: float | None = None) -> dict[str, Any]:
    """This machine's memory and CPU now.

    CPU is measured over ``cpu_interval`` seconds, or (None) since the previous call in this
    process, which is what a periodic sampler wants (the very first such call reads 0).
    """
    cpu = psutil.cpu_percent(interval=cpu_interval)
    mem = psutil.virtual_memory()
    return {
        "node": node or socket.gethostname(),
        "cpu_percent": cpu,
        "cpu_count": psutil.cpu_count(logical=True),
        "mem_total_bytes": mem.total,
        "mem_used_bytes": mem.total - mem.available,
        "mem_percent": mem.percent,
    }


def sample_lines(on_sample: Callable[[dict[str, Any]], None]) -> Callable[[str, str], None]:
    """A runner's ``on_line`` that hands each JSON sample a node's sampler prints (stdout) to
    ``on_sample``; anything else is passed over."""

    def take(stream: str, line: str) -> None:
        if stream != "out":
            return
        try:
            sample = json.loads(line)
        except ValueError:
            return
        on_sample(sample)

    return take


class RunProcessFinder:
    """Finds the processes whose environment carries a run's marker (``marker`` set to
    ``value``; with ``value`` None, to anything: the shared processes' marker).

    A process's verdict is cached by (pid, create time, name), so a sample costs one process
    listing plus an environment read for each process that is new since the last one. A
    process is often forked first and given its environment by a later exec (raylet starts
    Ray workers so, Spark workers their executors): a "not ours" verdict is therefore cached
    only once a process is older than ``settle_s``, and a name change (most execs) is a new key.
    """

    def __init__(self, value: str | None, *, marker: str = RUN_MARKER,
                 settle_s: float = 5.0) -> None:  # fmt: skip
        self.value, self.marker = value, marker
        self.settle_s = settle_s
        self._verdicts: dict[tuple[int, float, str], bool] = {}

    def find(self) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        current: dict[tuple[int, float, str], bool] = {}
        now = time.time()
        for proc in psutil.process_iter(["create_time", "name"]):
            created = proc.info["create_time"] or 0.0
            key = (proc.pid, created, proc.info["name"] or "")
            verdict = self._verdicts.get(key)
            if verdict is None:
                try:
                    found_value = proc.environ().get(self.marker)
                    verdict = found_value is not None and self.value in (None, found_value)
                except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
                    verdict = False
            if verdict or now - created > self.settle_s:
                current[key] = verdict
            if verdict:
                found.append(proc)
        self._verdicts = current
        return found


def process_role(cmdline: list[str], default: str = "driver") -> str:
    text = " ".join(cmdline)
    if "SparkConnectServer" in text:
        return "spark-connect-server"
    if "CoarseGrainedExecutorBackend" in text:
        return "spark-executor"
    if "org.apache.spark.deploy.SparkSubmit" in text:
        return "spark-driver-jvm"
    if "pyspark.daemon" in text or "pyspark/worker" in text or "pyspark.worker" in text:
        return "spark-python-worker"
    if cmdline and cmdline[0].startswith("ray::"):
        return "ray-worker"
    if "default_worker.py" in text:
        return "ray-worker"
    return default


def run_sample(finder: RunProcessFinder, cpu_state: dict[int, psutil.Process], *,
               default_role: str = "driver", prefix: str = "run") -> dict[str, Any]:  # fmt: skip
    """Memory (RSS) and CPU of the run's processes on this node (or, with ``prefix``
    "shared", of the processes runs share), summed and by role (a process of no known role is
    ``default_role``: the driver on the driver's node)."""
    procs = finder.find()
    rss_total = 0
    cpu_total = 0.0
    by_role: dict[str, int] = {}
    alive: dict[int, psutil.Process] = {}
    ray_workers = 0
    for proc in procs:
        cached = cpu_state.get(proc.pid, proc)
        try:
            with cached.oneshot():
                rss = cached.memory_info().rss
                cpu = cached.cpu_percent(interval=None)
                role = process_role(cached.cmdline(), default_role)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        alive[proc.pid] = cached
        ray_workers += role == "ray-worker"
        rss_total += rss
        cpu_total += cpu
        by_role[role] = by_role.get(role, 0) + rss
    cpu_state.clear()
    cpu_state.update(alive)
    return {
        f"{prefix}_processes": len(alive),
        f"{prefix}_ray_workers": ray_workers,
        f"{prefix}_rss_bytes": rss_total,
        f"{prefix}_cpu_percent": round(cpu_total, 1),
        f"{prefix}_rss_by_role": by_role,
    }


def fold_shared(sample: dict[str, Any]) -> dict[str, Any]:
    """``sample`` with the shared processes it saw counted as the run's (their roles named
    ``shared ROLE``): a run that uses the Spark Connect server is charged its memory."""
    roles = dict(sample["run_rss_by_role"])
    for role, rss in sample.get("shared_rss_by_role", {}).items():
        roles[f"shared {role}"] = rss
    return {**sample, "run_rss_bytes": sample["run_rss_bytes"] + sample.get("shared_rss_bytes", 0),
            "run_rss_by_role": roles}  # fmt: skip


class Peaks:
    """The peaks of a run's samples, from one node or several (thread-safe).

    Per node: the highest run RSS, run RSS by role and node memory used of any one sample.
    For the run as a whole: the highest sum, over nodes, of each node's latest sample (the
    nodes sample on their own clocks, so a node's figure counts until its next sample).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, dict[str, Any]] = {}
        self._nodes: dict[str, dict[str, Any]] = {}
        self.peak_rss_bytes = 0
        self.peak_rss_by_role: dict[str, int] = {}

    def add(self, sample: dict[str, Any]) -> None:
        node = str(sample["node"])
        with self._lock:
            peaks = self._nodes.setdefault(node, {"node": node, "samples": 0,
                                                  "peak_rss_bytes": 0, "peak_rss_by_role": {},
                                                  "peak_node_mem_used_bytes": 0})  # fmt: skip
            peaks["samples"] += 1
            peaks["peak_rss_bytes"] = max(peaks["peak_rss_bytes"], sample["run_rss_bytes"])
            peaks["peak_node_mem_used_bytes"] = max(peaks["peak_node_mem_used_bytes"],
                                                    sample["mem_used_bytes"])  # fmt: skip
            _raise_to(peaks["peak_rss_by_role"], sample["run_rss_by_role"])
            self._latest[node] = sample
            latest = self._latest.values()
            self.peak_rss_bytes = max(self.peak_rss_bytes,
                                      sum(s["run_rss_bytes"] for s in latest))  # fmt: skip
            by_role: dict[str, int] = {}
            for other in latest:
                for role, rss in other["run_rss_by_role"].items():
                    by_role[role] = by_role.get(role, 0) + rss
            _raise_to(self.peak_rss_by_role, by_role)

    def node(self, name: str) -> dict[str, Any]:
        """One node's peaks (zeros when it sent no sample)."""
        with self._lock:
            found = self._nodes.get(name)
            if found is None:
                return {"node": name, "samples": 0, "peak_rss_bytes": 0, "peak_rss_by_role": {},
                        "peak_node_mem_used_bytes": 0}  # fmt: skip
            return {**found, "peak_rss_by_role": dict(found["peak_rss_by_role"])}

    def nodes(self) -> dict[str, dict[str, Any]]:
        """Every node's peaks, by node name."""
        return {name: self.node(name) for name in sorted(self._nodes)}


def _raise_to(peaks: dict[str, int], values: dict[str, int]) -> None:
    for key, value in values.items():
        peaks[key] = max(peaks.get(key, 0), value)


class Sampler:
    """Samples node and run figures every ``interval_s`` in a thread; keeps peaks.

    Each sample also has the figures of the processes runs share (the Spark Connect server
    and its executors: ``shared_*``); while ``uses_shared()`` says the run uses them, they
    are counted as the run's (:func:`fold_shared`). ``on_sample`` receives every sample (the
    run supervisor appends them to the run's metrics file). ``stop()`` takes one last sample
    and returns the summary.
    """

    def __init__(
        self,
        run_id: str,
        *,
        node: str,
        interval_s: float = 1.0,
        on_sample: Callable[[dict[str, Any]], None] | None = None,
        default_role: str = "driver",
        uses_shared: Callable[[], bool] = lambda: False,
    ) -> None:
        self.run_id = run_id
        self.uses_shared = uses_shared
        self.default_role = default_role
        self.node = node
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.peaks = Peaks()
        self.cpu_s = 0.0  # CPU time the sampling itself used (its thread's)
        self._finder = RunProcessFinder(run_id)
        self._shared = RunProcessFinder(None, marker=SHARED_MARKER)
        self._cpu_state: dict[int, psutil.Process] = {}
        self._shared_cpu_state: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sampler-{run_id}", daemon=True)

    def sample(self) -> dict[str, Any]:
        cpu_started = time.thread_time()
        sample = {"t": time.time(), **node_sample(self.node)}
        sample.update(run_sample(self._finder, self._cpu_state, default_role=self.default_role))
        sample.update(run_sample(self._shared, self._shared_cpu_state, prefix="shared",
                                 default_role="shared"))  # fmt: skip
        if self.uses_shared():
            sample = fold_shared(sample)
        self.cpu_s += time.thread_time() - cpu_started
        self.peaks.add(sample)
        if self.on_sample is not None:
            self.on_sample(sample)
        return sample

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.sample()
            self._stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))

    def stop(self) -> dict[str, Any]:
        """Stop sampling; the peaks of this node, as the run record keeps them."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return {**self.peaks.node(self.node), "sampler_cpu_s": round(self.cpu_s, 4)}


#: Looks, 0.5 s apart, that must find none of a settling run's processes: a Ray worker whose
#: lease was granted before its driver ended can be forked a few seconds later on a busy node.
SETTLE_LOOKS = 5


def stop_run_processes(run_id: str, *, settle: bool) -> list[int]:
    """Stop every process of this node that carries the run's marker (not this one); the
    pids stopped. With ``settle`` (a run cancelled, failed or orphaned), until none has been
    seen for 2.5 s: Ray restarts a killed worker's task in a new worker, and that one goes
    too; else (a run that ended well: only what lingers) until one more look finds none."""
    me = os.getpid()
    finder = RunProcessFinder(run_id)
    deadline = time.monotonic() + 30
    # the drivers first: a Ray driver that ends cancels its leases and Ray ends its workers;
    # workers killed under a live driver are replaced, and one killed while it starts holds
    # its CPUs until Ray's registration timeout (the next run waits for them)
    stopped = terminate_all([p for p in finder.find() if p.pid != me and not is_ray_worker(p)],
                            grace_s=5.0)  # fmt: skip
    quiet = 0
    while time.monotonic() < deadline:
        found = [p for p in finder.find() if p.pid != me]
        if found:
            stopped += terminate_all(found, grace_s=5.0)
            quiet = 0
        elif quiet >= (SETTLE_LOOKS if settle else 1) or not (stopped or settle):
            break
        else:
            quiet += 1
            time.sleep(0.5 if settle else 0.2)
    return stopped


def is_ray_worker(proc: psutil.Process) -> bool:
    try:
        return process_role(proc.cmdline()) == "ray-worker"
    except psutil.Error:
        return False


def main(argv: list[str] | None = None) -> int:
    """Node-side entry point: print a JSON sample per interval until killed, --count, or (with
    --until-stdin-closes) the end of stdin; or, with --stop-processes, end the run's processes
    here and print their pids."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run-id", help="sample this run's processes too")
    parser.add_argument("--node", default=socket.gethostname())
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0, help="stop after N samples (0: never)")
    parser.add_argument(
        "--cpu-interval",
        type=float,
        default=None,
        help="measure CPU over this many seconds (default: since the last sample)",
    )
    parser.add_argument("--out", type=Path, default=None, help="append to a file, not stdout")
    parser.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="stop when stdin ends (the SSH channel that started it closed)",
    )
    parser.add_argument("--default-role", default="driver",
                        help="a run process of no known kind (on other nodes: other)")  # fmt: skip
    parser.add_argument(
        "--stop-processes",
        action="store_true",
        help="end the run's processes on this node; print their pids",
    )
    parser.add_argument("--sweep-outputs", metavar="ROOT", default=None,
                        help="remove what the run left half-written under this storage "
                             "root (after --stop-processes, if given)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.stop_processes or args.sweep_outputs:
        if not args.run_id:
            parser.error("--stop-processes and --sweep-outputs need --run-id")
        stopped = stop_run_processes(args.run_id, settle=True) if args.stop_processes else []
        if args.sweep_outputs:  # only once nothing of the run can write any more
            for path in sweep_temp_outputs(args.sweep_outputs, args.run_id):
                print(f"removed {path}: a temporary output the run left unfinished",
                      file=sys.stderr, flush=True)  # fmt: skip
        print(json.dumps(stopped), flush=True)
        return 0
    out = open(args.out, "a") if args.out else sys.stdout  # noqa: SIM115
    stop = threading.Event()
    if args.until_stdin_closes:

        def wait_for_eof() -> None:
            sys.stdin.read()
            stop.set()

        threading.Thread(target=wait_for_eof, daemon=True).start()
    sampler = None
    if args.run_id:
        sampler = Sampler(
            args.run_id, node=args.node, interval_s=args.interval, default_role=args.default_role
        )
    if args.cpu_interval is None:
        psutil.cpu_percent(interval=None)  # the first sample's CPU is since now, not 0
    taken = 0
    try:
        while (args.count == 0 or taken < args.count) and not stop.is_set():
            started = time.monotonic()
            if sampler is not None:
                sample = sampler.sample()
            else:
                if args.cpu_interval is None and taken == 0:
                    stop.wait(min(args.interval, 0.2))
                sample = {
                    "t": time.time(),
                    **node_sample(args.node, cpu_interval=args.cpu_interval),
                }
            out.write(json.dumps(sample) + "\n")
            out.flush()
            taken += 1
            if args.count and taken >= args.count:
                break
            stop.wait(max(0.0, args.interval - (time.monotonic() - started)))
    except (KeyboardInterrupt, BrokenPipeError):
        pass  # interrupted, or whoever read the samples has gone
    return 0
