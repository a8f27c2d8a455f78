"""Operating a cluster's nodes from here: a shell, a command on every node, a copy to every
node, and tunnels to the dashboards. Written once over the nodes' runners, so each works on
every provider (on the local one, the one node is this machine).

A node that does not answer is named in a NodeUnreachable error; a node name the cluster does
not have, or a file that is not there, is a BadInput (exit code 2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clusterkit.cluster import Cluster
from clusterkit.core.errors import BadInput, ClusterkitError, NodeUnreachable
from clusterkit.exec.runner import CommandRunner

#: (node, stream "out" or "err", one line of output without its newline)
OnLine = Callable[[str, str, str], None]


@dataclass
class NodeResult:
    node: str
    exit_code: int | None  # None: the node did not answer, or the command ran out of time
    error: str | None = None


def exec_on_nodes(cluster: Cluster, command: str, *, on_line: OnLine, node: str | None = None,
                  timeout_s: float | None = None) -> list[NodeResult]:  # fmt: skip
    """Run the shell ``command`` on every node (or one) at once, each line of output handed
    to ``on_line`` as it comes; one result per node, in inventory order."""
    runners = cluster.runners(node)
    lock = threading.Lock()

    def one(runner: CommandRunner) -> NodeResult:
        name = runner.node.name

        def line(stream: str, text: str) -> None:
            with lock:
                on_line(name, stream, text)

        try:
            result = runner.run(command, timeout=timeout_s, on_line=line, check=False)
        except NodeUnreachable as exc:
            return NodeResult(name, None, str(exc))
        except ClusterkitError as exc:  # out of time
            return NodeResult(name, None, f"node {name}: {exc}")
        return NodeResult(name, result.exit_code)

    with ThreadPoolExecutor(max_workers=len(runners)) as pool:
        return list(pool.map(one, runners))


def copy_to_nodes(cluster: Cluster, source: Path, destination: str, *,
                  node: str | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Copy a local file or folder to ``destination`` on every node (or one), in parallel.

    Like ``scp -r``: into ``destination`` when it is a folder there, else as that name.
    Modes are kept. Returns each node's written paths."""
    if not source.exists():
        raise BadInput(f"{source}: no such file or folder here; give a path on this machine")
    runners = cluster.runners(node)

    def put(runner: CommandRunner) -> list[str]:
        try:
            return runner.put(source, destination)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise BadInput(
                f"{destination} on node {runner.node.name}: its folder is not there or is not "
                f"a folder ({exc.strerror or exc}); give a folder that exists there"
            ) from exc

    with ThreadPoolExecutor(max_workers=len(runners)) as pool:
        futures = {r.node.name: pool.submit(put, r) for r in runners}
        return {name: future.result() for name, future in futures.items()}


def shell(cluster: Cluster, node: str, command: list[str] | None = None) -> int:
    """An interactive login shell on ``node`` (by name, or ``master`` / ``worker``; on the
    local provider, both are this machine), or ``command`` on a terminal there; its exit
    code."""
    return cluster.runner(node).shell(command)


@dataclass(frozen=True)
class Tunnel:
    name: str  # the endpoint's key, e.g. spark_master_ui
    local_url: str
    remote: str  # host:port as the cluster knows it


#: The endpoints a tunnel brings here: the web UIs, and the Spark Connect server.
TUNNELLED = ("http", "https", "sc")


def dashboards(cluster: Cluster) -> list[tuple[str, str, str, int]]:
    """Every endpoint of the cluster a client reaches (name, scheme, host, port): the Spark
    master and worker UIs, the Ray dashboard, the Spark Connect server, and any other web
    endpoint the cluster records."""
    found = []
    for name, url in vars(cluster.state.endpoints).items():
        parts = urlsplit(url)
        if parts.scheme in TUNNELLED and parts.hostname and parts.port:
            found.append((name, parts.scheme, parts.hostname, parts.port))
    return found


@contextmanager
def tunnels(cluster: Cluster) -> Iterator[list[Tunnel]]:
    """Every dashboard and the Spark Connect server reachable on 127.0.0.1 (through the
    master; on the local provider, where they are already), open while the block runs. They
    themselves stay on the nodes' private addresses (the Connect server on the master's
    loopback); a tunnel listens on the endpoint's own port when it is free here (bookmarks
    keep working)."""
    driver = cluster.driver()
    with ExitStack() as stack:
        opened = []
        for name, scheme, host, port in dashboards(cluster):
            here = stack.enter_context(driver.forward(host, port, prefer=port))
            if scheme == "sc":  # the client speaks to its token's server over a local
                here = here.replace("127.0.0.1:", "localhost:")  # channel only for localhost
            opened.append(Tunnel(name, f"{scheme}://{here}", f"{host}:{port}"))
        yield opened
