"""JupyterLab on the cluster's driver node (``clusterkit notebook``).

The server binds the node's loopback and asks for a random token; its kernels inherit the
cluster in their environment (``SPARK_REMOTE`` and the Connect token, Ray's address and token
settings, ``CLUSTERKIT_STORAGE``), so ``SparkSession.builder.getOrCreate()`` and
``ray.init()`` work in the first cell. Secrets travel in files (mode 600), read by the
launch script on the node: never on a command line. From here it is reached through
``runner.forward`` (an SSH tunnel to a remote master). :func:`stop_notebook` ends it; ``down``
calls it too.
"""

from __future__ import annotations

import contextlib
import secrets
import shlex
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import requests

from clusterkit.cluster import Cluster
from clusterkit.core.errors import BadInput, ClusterkitError, ServiceError

DEFAULT_PORT = 8888
START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class NotebookPaths:
    """The notebook's files on the driver node."""

    folder: str  # launch script, token, pid and log

    @property
    def script(self) -> str:
        return f"{self.folder}/launch.sh"

    @property
    def token(self) -> str:
        return f"{self.folder}/jupyter-token"

    @property
    def pid(self) -> str:
        return f"{self.folder}/server.pid"

    @property
    def log(self) -> str:
        return f"{self.folder}/server.log"


@dataclass(frozen=True)
class Notebook:
    """A running server: where it listens on the node and the URL to open here."""

    node: str
    port: int
    root_dir: str
    token: str
    local_url: str  # http://127.0.0.1:PORT/lab?token=... (through the tunnel when remote)

    @property
    def local_base(self) -> str:
        return self.local_url.split("/lab?", 1)[0]


def notebook_paths(cluster: Cluster) -> NotebookPaths:
    home = PurePosixPath(cluster.state.runs_dir).parent
    return NotebookPaths(str(home / "notebook"))


def _launch_script(cluster: Cluster, paths: NotebookPaths, *, port: int, root_dir: str) -> str:
    lines = ["#!/bin/sh", "set -e", f"echo $$ > {shlex.quote(paths.pid)}"]
    lines += cluster.user_exports()  # the kernels' environment
    lines += [
        f'export JUPYTER_TOKEN="$(cat {shlex.quote(paths.token)})"',
        f"mkdir -p {shlex.quote(root_dir)}",
        f"exec {shlex.quote(cluster.state.node_python)} -m jupyterlab --no-browser "
        f"--ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 "
        f"--ServerApp.root_dir={shlex.quote(root_dir)} --ServerApp.allow_remote_access=False "
        "--allow-root --LabApp.extension_manager=readonly "
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    return "\n".join(lines) + "\n"


def _server_pid(cluster: Cluster, paths: NotebookPaths, *, strict: bool = False) -> int | None:
    """The pid of the cluster's notebook server when it runs, else None (also when its node
    does not answer, unless ``strict``: then ClusterkitError)."""
    driver = cluster.driver()
    try:
        pid = int(driver.read_bytes(paths.pid).decode().strip())
        return pid if driver.alive(pid, marker="jupyterlab") else None
    except (FileNotFoundError, ValueError):
        return None
    except ClusterkitError:
        if strict:
            raise
        return None


def _log_tail(cluster: Cluster, paths: NotebookPaths, lines: int = 4) -> str:
    try:
        text = cluster.driver().read_bytes(paths.log).decode(errors="replace")
    except (FileNotFoundError, ClusterkitError):
        return "no log"
    return " | ".join(text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def notebook(cluster: Cluster, *, port: int = DEFAULT_PORT, root_dir: str | None = None,
             say: Callable[[str], None] = lambda _: None) -> Iterator[Notebook]:  # fmt: skip
    """Start JupyterLab on the driver node and yield it once it answers; stop it when the
    block ends. ServiceError with its log when it does not start (a port taken: use
    ``port``), BadInput when one already runs for this cluster."""
    paths = notebook_paths(cluster)
    driver = cluster.driver()
    if _server_pid(cluster, paths) is not None:
        raise BadInput(f"a notebook already runs on {cluster.state.inventory.driver().name} "
                       f"for cluster {cluster.name!r}: open it again through `clusterkit tunnel`, "
                       "or stop it with `clusterkit notebook --stop`")  # fmt: skip
    home = PurePosixPath(paths.folder).parent
    root = root_dir or str(home / "notebooks")
    if not PurePosixPath(root).is_absolute():  # from here on this machine, else the node's home
        root = str(Path(root).absolute()) if driver.local else str(home / root)
    token = secrets.token_hex(24)
    driver.write_file(paths.token, token.encode())
    driver.write_file(paths.script, _launch_script(cluster, paths, port=port, root_dir=root)
                      .encode(), mode=0o700)  # fmt: skip
    driver.run(["rm", "-f", paths.pid])
    driver.spawn(["/bin/sh", paths.script], cwd=paths.folder, log=paths.log)
    try:
        with driver.forward("127.0.0.1", port, prefer=port) as here:
            base = f"http://{here}"
            _wait_answering(cluster, paths, base, token, port=port)
            node = cluster.state.inventory.driver().name
            say(f"JupyterLab on {node} (127.0.0.1:{port}), notebooks in {root}")
            yield Notebook(node, port, root, token, f"{base}/lab?token={token}")
    finally:
        stop_notebook(cluster)


def _wait_answering(cluster: Cluster, paths: NotebookPaths, base: str, token: str, *,
                    port: int) -> None:  # fmt: skip
    """Until JupyterLab answers at ``base``; ServiceError with its log once it has exited
    (or never started) or after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    begun = time.monotonic()
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                return
        if _server_pid(cluster, paths) is None and time.monotonic() - begun > 5:
            raise ServiceError(f"JupyterLab did not start on port {port}: "
                               f"{_log_tail(cluster, paths)} (another port: --port N)")  # fmt: skip
        time.sleep(0.5)
    raise ServiceError(f"JupyterLab did not answer on port {port} in {START_TIMEOUT_S:.0f} s: "
                       f"{_log_tail(cluster, paths)}")  # fmt: skip


def wait_stopped(cluster: Cluster, *, interval_s: float = 2.0, gone_s: float = 60.0) -> None:
    """Return once the cluster's notebook server has stopped (``down`` stops it), or its node
    has not answered for ``gone_s`` (a brief SSH drop is not a stop)."""
    paths = notebook_paths(cluster)
    last_answer = time.monotonic()
    while True:
        try:
            if _server_pid(cluster, paths, strict=True) is None:
                return
            last_answer = time.monotonic()
        except ClusterkitError:
            if time.monotonic() - last_answer > gone_s:
                return
        time.sleep(interval_s)


def stop_notebook(cluster: Cluster, *, timeout_s: float = 15.0) -> bool:
    """Stop the cluster's notebook server if one runs (its kernels go with it); whether one
    ran."""
    paths = notebook_paths(cluster)
    pid = _server_pid(cluster, paths)
    if pid is None:
        return False
    driver = cluster.driver()
    driver.run(["kill", "-TERM", str(pid)], check=False)
    deadline = time.monotonic() + timeout_s
    while _server_pid(cluster, paths) is not None:
        if time.monotonic() > deadline:
            driver.run(["kill", "-KILL", f"-{pid}", str(pid)], check=False)
            break
        time.sleep(0.3)
    return True
