"""Operating a remote cluster's nodes from here: a shell, a command on every node, a copy to
every node, and local tunnels to the dashboards. Fabric/paramiko throughout (the worker
through the master as jump host, host keys checked); no ssh command lines are built.

A node that does not answer is named in a NodeUnreachable error; a node name the cluster
does not have, or a file that is not there, is a BadInput (exit code 2).
"""

from __future__ import annotations

import posixpath
import shlex
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from clusterkit.errors import BadInput, ClusterkitError
from clusterkit.remote import NodeUnreachable, SshSettings, connect, free_port

if TYPE_CHECKING:
    from clusterkit.cluster import Cluster
    from clusterkit.inventory import Node

#: (node, stream "out" or "err", one line of output without its newline)
OnLine = Callable[[str, str, str], None]


def remote_nodes(cluster: Cluster, only: str | None = None) -> list[Node]:
    """The cluster's nodes (or the one called ``only``); refused for a local cluster."""
    if not cluster.is_remote:
        raise ClusterkitError(
            f"cluster {cluster.name!r} is local (provider local): its one node is this "
            f"machine; run the command here, its services are on 127.0.0.1"
        )
    nodes = cluster.inventory.nodes
    if only is None:
        return list(nodes)
    found = [n for n in nodes if n.name == only]
    if not found:
        known = ", ".join(n.name for n in nodes)
        raise BadInput(f"cluster {cluster.name!r} has no node {only!r}; its nodes: {known}")
    return found


def _ssh(cluster: Cluster) -> SshSettings:
    return SshSettings.from_dict(cluster.state["ssh"])


class _Lines:
    """A file-like sink for fabric's output streams that hands on whole lines."""

    def __init__(self, node: str, stream: str, on_line: OnLine, lock: threading.Lock) -> None:
        self.node, self.stream, self.on_line, self.lock = node, stream, on_line, lock
        self.pending = ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        with self.lock:
            for line in lines:
                self.on_line(self.node, self.stream, line)

    def flush(self) -> None:
        if self.pending:
            with self.lock:
                self.on_line(self.node, self.stream, self.pending)
            self.pending = ""


@dataclass
class NodeResult:
    node: str
    exit_code: int | None  # None: the node did not answer
    error: str | None = None


def exec_on_nodes(cluster: Cluster, command: str, *, on_line: OnLine, node: str | None = None,
                  timeout_s: float | None = None) -> list[NodeResult]:  # fmt: skip
    """Run the shell ``command`` on every node (or one) at once, each line of output handed
    to ``on_line`` as it comes; one result per node, in inventory order."""
    targets = remote_nodes(cluster, node)
    lock = threading.Lock()

    def one(target: Node) -> NodeResult:
        out, err = (_Lines(target.name, s, on_line, lock) for s in ("out", "err"))
        try:
            with connect(cluster.inventory, target.name, _ssh(cluster)) as conn:
                result = conn.run(command, warn=True, hide=True, in_stream=False, pty=False,
                                  out_stream=out, err_stream=err, timeout=timeout_s)  # fmt: skip
        except NodeUnreachable as exc:
            return NodeResult(target.name, None, str(exc))
        except Exception as exc:  # invoke's CommandTimedOut, a dropped connection
            return NodeResult(target.name, None, f"node {target.name}: {exc}")
        finally:
            out.flush()
            err.flush()
        return NodeResult(target.name, int(result.exited))

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(one, targets))


def copy_to_nodes(cluster: Cluster, source: Path, destination: str, *,
                  node: str | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Copy a local file or folder to ``destination`` on every node (or one), in parallel.

    Like ``scp -r``: into ``destination`` when it is a folder there, else as that name.
    Modes are kept. Returns each node's written paths."""
    if not source.exists():
        raise BadInput(f"{source}: no such file or folder here; give a path on this machine")
    targets = remote_nodes(cluster, node)

    def one(target: Node) -> list[str]:
        with connect(cluster.inventory, target.name, _ssh(cluster)) as conn:
            sftp = conn.sftp()
            base = destination
            if _is_dir(sftp, destination):
                base = posixpath.join(destination, source.name)
            return _put(sftp, source, base)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        futures = {t.name: pool.submit(one, t) for t in targets}
        return {name: future.result() for name, future in futures.items()}


def _is_dir(sftp: Any, path: str) -> bool:
    try:
        return stat.S_ISDIR(sftp.stat(path).st_mode)
    except FileNotFoundError:
        return False


def _put(sftp: Any, source: Path, target: str) -> list[str]:
    if source.is_dir():
        if not _is_dir(sftp, target):
            sftp.mkdir(target, mode=source.stat().st_mode & 0o7777)
        written = []
        for child in sorted(source.iterdir()):
            written += _put(sftp, child, posixpath.join(target, child.name))
        return written
    sftp.put(str(source), target)
    sftp.chmod(target, source.stat().st_mode & 0o7777)
    return [target]


def shell(cluster: Cluster, node: str, command: list[str] | None = None) -> int:
    """An interactive login shell on ``node`` (or ``command`` on a terminal there); its exit
    code. The worker is reached through the master."""
    remote_nodes(cluster, node)
    with connect(cluster.inventory, node, _ssh(cluster)) as conn:
        if command:
            return int(conn.run(shlex.join(command), pty=True, warn=True).exited)
        return int(conn.shell().exited)


@dataclass(frozen=True)
class Tunnel:
    name: str  # the endpoint's key, e.g. spark_master_ui
    local_url: str
    remote: str  # host:port as the cluster knows it


def dashboards(cluster: Cluster) -> list[tuple[str, str, int]]:
    """Every web endpoint of the cluster (name, host, port): the Spark master and worker
    UIs, the Ray dashboard, and any other http endpoint the provider recorded (HDFS's)."""
    found = []
    for name, url in cluster.state["endpoints"].items():
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.hostname and parts.port:
            found.append((name, parts.hostname, parts.port))
    return found


def _local_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1 (bookmarks keep working), else any."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


@contextmanager
def tunnels(cluster: Cluster) -> Iterator[list[Tunnel]]:
    """Local forwards on 127.0.0.1, through the master, to every dashboard; open while the
    block runs. The dashboards themselves stay on the nodes' private addresses."""
    remote_nodes(cluster)  # refused for a local cluster
    master = cluster.inventory.driver().name
    with ExitStack() as stack:
        conn = stack.enter_context(connect(cluster.inventory, master, _ssh(cluster)))
        opened = []
        for name, host, port in dashboards(cluster):
            here = _local_port(port)
            stack.enter_context(
                conn.forward_local(local_port=here, remote_port=port, remote_host=host)
            )
            opened.append(Tunnel(name, f"http://127.0.0.1:{here}", f"{host}:{port}"))
        yield opened
