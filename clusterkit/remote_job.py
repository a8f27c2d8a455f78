"""A run's job on a remote cluster: its driver runs on the master, reached over SSH.

``python -m clusterkit.remote_job CLUSTER RUN_ID`` is what the run's supervisor starts in
place of the job when the cluster is remote. It starts the job on the master in a session of
its own (its process group id kept in the remote run folder), streams its output here (the
supervisor writes it to the run's logs), and copies the remote run folder (result.json,
stages.json, ...) back into the local one. SIGTERM (cancel) ends the remote process group,
then this process, with the job's files still copied back. Exit code: the job's.

The connection is held for the whole run: a run that outlives its SSH session is issue 8's.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from clusterkit.cluster import open_cluster
from clusterkit.metrics import RUN_MARKER
from clusterkit.remote import SshSettings, connect, run
from clusterkit.remote_cluster import NODE_RUNS_DIR, remote_python
from clusterkit.runs import RunStore

STOP_GRACE_S = 10.0


class Cancelled(Exception):
    pass


def _on_term(signum: int, _frame: Any) -> None:
    raise Cancelled()


def job_command(python: str, job: str, params: dict[str, Any], env: dict[str, str],
                run_dir: str) -> str:  # fmt: skip
    """The shell command that starts the job in ``run_dir`` as a new session whose id (the
    job's process group) is written to ``job.pid`` first."""
    assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    inner = (f"echo $$ > job.pid; exec env {assignments} {shlex.quote(python)} -m jobs "
             f"{shlex.quote(job)} --params-json {shlex.quote(json.dumps(params))}")  # fmt: skip
    folder = shlex.quote(run_dir)
    return f"mkdir -p {folder} && cd {folder} && exec setsid sh -c {shlex.quote(inner)}"


def _stop(conn: Any, run_dir: str) -> None:
    """End the job's process group on the node: TERM, then KILL after the grace period."""
    group = f"-$(cat {shlex.quote(run_dir)}/job.pid)"
    run(conn, f"kill -TERM -- {group} 2>/dev/null || true", check=False)
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if run(conn, f"kill -0 -- {group} 2>/dev/null", check=False).exited != 0:
            return
        time.sleep(0.5)
    run(conn, f"kill -KILL -- {group} 2>/dev/null || true", check=False)


def _fetch(conn: Any, run_dir: str, local: Path) -> list[str]:
    """Copy the files of the remote run folder into ``local``; their names."""
    sftp = conn.sftp()
    fetched = []
    for name in sftp.listdir(run_dir):
        if name == "job.pid":
            continue
        sftp.get(f"{run_dir}/{name}", str(local / name))
        fetched.append(name)
    return fetched


def main(argv: list[str] | None = None) -> int:
    name, run_id = (argv if argv is not None else sys.argv[1:])[:2]
    cluster = open_cluster(name)
    record = RunStore(cluster.paths.runs).load(run_id)
    local_dir = RunStore(cluster.paths.runs).dir(run_id)
    run_dir = f"{NODE_RUNS_DIR}/{run_id}"
    env = {**cluster.job_env(), RUN_MARKER: run_id, "CLUSTERKIT_RUN_DIR": run_dir,
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    command = job_command(remote_python(cluster.state), record.job, record.params, env, run_dir)
    ssh = SshSettings.from_dict(cluster.state["ssh"])
    master = cluster.inventory.driver().name
    signal.signal(signal.SIGTERM, _on_term)
    exit_code = 1
    with connect(cluster.inventory, master, ssh) as conn:
        try:
            result = conn.run(command, warn=True, in_stream=False, pty=False,
                              out_stream=sys.stdout, err_stream=sys.stderr)  # fmt: skip
            exit_code = result.exited
        except Cancelled:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print(f"cancelled: stopping the job on {master}", file=sys.stderr, flush=True)
            with connect(cluster.inventory, master, ssh) as stopper:
                _stop(stopper, run_dir)
            exit_code = 128 + signal.SIGTERM
        with connect(cluster.inventory, master, ssh) as fetcher:
            _fetch(fetcher, run_dir, local_dir)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
