"""Checks that run before anything starts: Java, free ports, sizes that fit this machine.

Each failure raises with one line that says what is wrong and how to fix it.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from clusterkit.core.errors import PreflightError, SpecError
from clusterkit.core.spec import Spec, parse_size
from clusterkit.core.versions import locate_java

_JAVA_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')
_JAVA_FIX = "install one (apt-get install -y openjdk-17-jre-headless) or point JAVA_HOME at it"


@dataclass(frozen=True)
class Java:
    home: Path
    executable: Path
    major: int


def find_java(min_major: int) -> Java:
    """The Java that Spark will use (:func:`locate_java`); at least ``min_major``."""
    executable, why = locate_java()
    if executable is None:
        raise PreflightError(f"{why}; Spark needs Java {min_major}+: {_JAVA_FIX}")
    try:
        out = subprocess.run(
            [str(executable), "-version"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PreflightError(f"{executable} -version failed ({exc}); {_JAVA_FIX}") from exc
    match = _JAVA_VERSION.search(out.stderr + out.stdout)
    if not match:
        raise PreflightError(
            f"{executable} -version printed no version; Spark needs Java {min_major}+: {_JAVA_FIX}"
        )
    first, second = int(match.group(1)), int(match.group(2) or 0)
    major = second if first == 1 else first  # "1.8.0_392" is Java 8
    if major < min_major:
        raise PreflightError(
            f"Java {major} at {executable} is too old: Spark needs Java {min_major}+; {_JAVA_FIX}"
        )
    return Java(home=executable.parent.parent, executable=executable, major=major)


def port_listeners(ports: Iterable[int]) -> dict[int, list[int | None]]:
    """Each of ``ports`` something listens on now (any address), with the listening pids
    (None: a process of another user). psutil.AccessDenied when sockets cannot be listed."""
    wanted = set(ports)
    found: dict[int, list[int | None]] = {}
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port in wanted:
            pids = found.setdefault(conn.laddr.port, [])
            if conn.pid not in pids:
                pids.append(conn.pid)
    return found


def port_holder(port: int) -> str | None:
    """Who listens on ``port`` (e.g. "python3 (pid 123)"), "an unknown process", or None."""
    for pid in port_listeners([port]).get(port, []):
        if pid is None:
            return "a process of another user"
        try:
            return f"{psutil.Process(pid).name()} (pid {pid})"
        except psutil.NoSuchProcess:
            continue
    return None


def port_is_free(host: str, port: int) -> bool:
    """True if a server could bind ``host:port`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def check_ports(spec: Spec, host: str = "127.0.0.1") -> None:
    """Raise naming the first spec port that is taken, who holds it and how to fix it."""
    for field, port in spec.ports.fixed().items():
        if not port_is_free(host, port):
            holder = port_holder(port) or "another process"
            raise PreflightError(
                f"port {port} (ports.{field}) is in use by {holder}: stop it, or set "
                f"ports.{field} to a free port in clusterkit.yaml"
            )


def listening_ports(ports: list[int]) -> list[int]:
    """Which of ``ports`` something listens on now (any address)."""
    with contextlib.suppress(psutil.AccessDenied):
        return sorted(port_listeners(ports))
    return []


@dataclass(frozen=True)
class Sizing:
    """Resolved sizes of the local services, in cores and MiB."""

    worker_cores: int
    worker_memory_mb: int
    driver_memory_mb: int
    ray_cpus: int
    ray_object_store_bytes: int


def _cores(value: int | str, field: str, cores: int) -> int:
    """``auto`` is every core; an explicit count must fit this machine."""
    if value == "auto":
        return cores
    if int(value) > cores:
        raise SpecError(
            f"nodes.{field} = {value} is not allowed: this machine has {cores} cores; "
            f"use at most {cores}, or auto"
        )
    return int(value)


def size_services(spec: Spec) -> Sizing:
    """Resolve ``auto`` from this machine; refuse explicit sizes the machine cannot hold."""
    cores = psutil.cpu_count(logical=True) or 1
    total = psutil.virtual_memory().total
    gib = total / 1024**3
    nodes = spec.nodes
    worker_cores = _cores(nodes.worker_cores, "worker_cores", cores)
    ray_cpus = _cores(nodes.ray_cpus, "ray_cpus", cores)
    worker_memory = (
        int(total * 0.4) if nodes.worker_memory == "auto" else parse_size(nodes.worker_memory)
    )
    object_store = (
        int(total * 0.2)
        if nodes.ray_object_store_memory == "auto"
        else parse_size(nodes.ray_object_store_memory)
    )
    driver = parse_size(nodes.driver_memory)
    for field, size in (
        ("worker_memory", worker_memory),
        ("ray_object_store_memory", object_store),
        ("driver_memory", driver),
    ):
        if size > total * 0.9:
            raise SpecError(
                f"nodes.{field} = {getattr(nodes, field)} is not allowed: this machine has "
                f"{gib:.1f} GiB; use at most {int(gib * 0.9 * 1024)}m, or auto"
            )
    return Sizing(
        worker_cores=worker_cores,
        worker_memory_mb=worker_memory // 1024**2,
        driver_memory_mb=driver // 1024**2,
        ray_cpus=ray_cpus,
        ray_object_store_bytes=object_store,
    )
