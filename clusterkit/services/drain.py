"""Draining workers before they are removed (``clusterkit scale`` shrinking a cluster): each
service is told first, so that nothing of a job is lost with the node.

- Spark: the worker is sent SIGPWR, Spark's graceful decommissioning (the spark role turns
  ``spark.decommission.enabled`` on): its executors finish their tasks, hand their shuffle and
  cached blocks to the others, and the master lists it DECOMMISSIONED.
- HDFS (AWS): the DataNodes are listed in the NameNode's ``dfs.hosts.exclude`` file and
  ``-refreshNodes`` starts their decommissioning, waited for until the report says
  ``Decommissioned`` (their blocks replicated elsewhere). Once the nodes are gone,
  :func:`forget_datanodes` takes them out of the file again (a new node given the same address
  later must not be decommissioned at once).
- Ray: ``ray drain-node`` on the master tells the GCS that the node goes (its tasks are
  retried elsewhere, no new ones placed there).

Each function waits for what it started and raises ServiceError naming the node, what it
waited for and the fix when that does not come.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable

from clusterkit.core.errors import ServiceError
from clusterkit.exec.runner import CommandRunner
from clusterkit.services.health import NODE_HDFS, ServiceHealth

Progress = Callable[[str], None]
#: How long a drain may take before it is given up (a worker finishing its tasks, HDFS
#: replicating the blocks it held).
DRAIN_TIMEOUT_S = 300.0
#: pkill's pattern of the Spark worker's JVM (the brackets keep it from matching the shell
#: that runs pkill, whose command line holds the pattern too)
SPARK_WORKER_PATTERN = "[o]rg.apache.spark.deploy.worker.Worker"
HDFS_EXCLUDE = "/etc/clusterkit/hadoop/dfs.exclude"
#: Spark worker states that mean it will take no more work.
SPARK_GONE = {"DECOMMISSIONED", "DEAD", "ABSENT"}


def spark_worker_states(rows: Iterable[ServiceHealth]) -> dict[str, str]:
    """Each Spark worker's state as the master lists it, by host (its address). A host listed
    twice (a worker removed, then made again at its address) is as its live entry says."""
    states: dict[str, str] = {}
    for r in rows:
        if r.name == "spark-worker":
            host, state = r.address.rsplit(":", 1)[0], str(r.info.get("state", "UNKNOWN"))
            if states.get(host, "DEAD") in SPARK_GONE:
                states[host] = state
    return states


def ray_node_ids(rows: Iterable[ServiceHealth], hosts: Iterable[str]) -> dict[str, str]:
    """The ids of the ALIVE Ray nodes on ``hosts``, by host."""
    wanted = set(hosts)
    return {
        host: str(r.info["node_id"])
        for r in rows
        if r.name == "ray-node" and r.state == "up"
        and (host := r.address.rsplit(":", 1)[0]) in wanted
    }  # fmt: skip


def decommission_spark(workers: Iterable[CommandRunner], *,
                       read_rows: Callable[[], list[ServiceHealth]], say: Progress,
                       timeout_s: float = DRAIN_TIMEOUT_S) -> None:  # fmt: skip
    """SIGPWR to the Spark worker on each node; returns once the master lists none of them
    ALIVE (a host the master no longer lists counts as gone)."""
    runners = list(workers)
    for runner in runners:
        # pkill exits 1 when no worker runs there: nothing to decommission
        runner.run(["pkill", "-PWR", "-f", SPARK_WORKER_PATTERN], check=False)
        say(f"node {runner.node.name}: Spark worker decommissioning (SIGPWR)")
    hosts = {r.node.address: r.node.name for r in runners}
    deadline = time.monotonic() + timeout_s
    while True:
        states = spark_worker_states(read_rows())
        alive = [name for host, name in hosts.items()
                 if states.get(host, "ABSENT") not in SPARK_GONE]  # fmt: skip
        if not alive:
            say(f"Spark: {', '.join(hosts.values())} decommissioned")
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"Spark still lists {', '.join(alive)} as a worker {timeout_s:.0f} s after "
                "SIGPWR; see its log (`clusterkit logs`), or give --force to remove it anyway"
            )
        time.sleep(2)


def decommission_states(report: str) -> dict[str, str]:
    """Each DataNode's ``Decommission Status`` in ``hdfs dfsadmin -report``, by address."""
    states: dict[str, str] = {}
    address = None
    for line in report.splitlines():
        if line.startswith("Name: "):
            address = line.split()[1].rsplit(":", 1)[0]
        elif line.startswith("Decommission Status") and address:
            states[address] = line.split(":", 1)[1].strip()
    return states


def _exclude(master: CommandRunner, hosts: list[str]) -> None:
    listed = "\n".join(hosts) + ("\n" if hosts else "")
    master.run(f"printf %s {shlex.quote(listed)} > {HDFS_EXCLUDE}")
    master.run(f"runuser -u hdfs -- {NODE_HDFS} dfsadmin -refreshNodes")


def decommission_datanodes(master: CommandRunner, hosts: list[str], *, say: Progress,
                           timeout_s: float = DRAIN_TIMEOUT_S) -> None:  # fmt: skip
    """List ``hosts`` in the NameNode's exclude file, refresh, and return once the report
    says each is Decommissioned (its blocks have replicas on the other DataNodes)."""
    _exclude(master, hosts)
    say(f"HDFS: decommissioning the DataNodes of {', '.join(hosts)}")
    deadline = time.monotonic() + timeout_s
    while True:
        report = master.run(f"runuser -u hdfs -- {NODE_HDFS} dfsadmin -report").stdout
        states = decommission_states(report)
        waiting = [h for h in hosts if states.get(h, "Decommissioned") != "Decommissioned"]
        if not waiting:
            say("HDFS: their blocks are replicated on the other DataNodes")
            return
        if time.monotonic() > deadline:
            raise ServiceError(
                f"HDFS has not decommissioned {', '.join(waiting)} after {timeout_s:.0f} s "
                f"({', '.join(states.get(h, '?') for h in waiting)}): the other DataNodes "
                "may lack room for their blocks; see `hdfs dfsadmin -report` on the master"
            )
        time.sleep(5)


def forget_datanodes(master: CommandRunner) -> None:
    """Empty the exclude file once the decommissioned nodes are gone, and refresh."""
    _exclude(master, [])


def drain_ray(master: CommandRunner, node_ids: dict[str, str], *, ray: str, gcs_address: str,
              token_file: str, say: Progress) -> None:  # fmt: skip
    """``ray drain-node`` for each node id (run on the master with the cluster's token):
    the GCS places nothing more there and its tasks are retried elsewhere."""
    for host, node_id in node_ids.items():
        master.run(
            [ray, "drain-node", "--address", gcs_address, "--node-id", node_id,
             "--reason", "DRAIN_NODE_REASON_PREEMPTION",
             "--reason-message", f"clusterkit scale removes {host}",
             "--deadline-remaining-seconds", "60"],
            env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": token_file},
            timeout=120,
        )  # fmt: skip
        say(f"Ray: node {host} drained")
