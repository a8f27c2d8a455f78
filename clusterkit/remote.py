"""SSH to a cluster's nodes (fabric/paramiko): connections, commands, and local tunnels.

A node with a ``jump_host`` (a private worker) is reached through that host, the way
``ssh -J`` does. Host keys are checked against the cluster's known_hosts file; an unknown or
changed key is refused (paramiko's RejectPolicy), never silently accepted. Errors name the
node and its address and say what to do.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterkit.errors import ClusterkitError
from clusterkit.inventory import Inventory, Node

CONNECT_TIMEOUT_S = 10.0
# paramiko logs a refused channel on its own as well; the kit's error names the node instead
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class NodeUnreachable(ClusterkitError):
    """A node's SSH did not answer or refused the kit's key."""


@dataclass(frozen=True)
class SshSettings:
    """How the kit logs in: the user, its private key, and the nodes' known host keys."""

    user: str
    key: Path
    known_hosts: Path

    def to_dict(self) -> dict[str, str]:
        return {"user": self.user, "key": str(self.key), "known_hosts": str(self.known_hosts)}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> SshSettings:
        return cls(data["user"], Path(data["key"]), Path(data["known_hosts"]))


def connection(inventory: Inventory, node: Node, ssh: SshSettings) -> Any:
    """A fabric Connection to ``node`` (not yet opened), through its jump host if it has one."""
    from fabric import Connection
    from paramiko import RejectPolicy

    def make(host: str, gateway: Any = None) -> Any:
        conn = Connection(
            host,
            user=ssh.user,
            gateway=gateway,
            connect_timeout=CONNECT_TIMEOUT_S,
            connect_kwargs={"key_filename": str(ssh.key), "look_for_keys": False,
                            "allow_agent": False},
        )  # fmt: skip
        conn.client.load_host_keys(str(ssh.known_hosts))
        conn.client.set_missing_host_key_policy(RejectPolicy())
        return conn

    gateway = make(node.jump_host) if node.jump_host else None
    return make(node.ssh_host or node.address, gateway)


@contextmanager
def connect(inventory: Inventory, name: str, ssh: SshSettings) -> Iterator[Any]:
    """An open connection to the node called ``name``; NodeUnreachable names it otherwise."""
    node = next((n for n in inventory.nodes if n.name == name), None)
    if node is None:
        known = ", ".join(n.name for n in inventory.nodes)
        raise ClusterkitError(f"cluster {inventory.cluster!r} has no node {name!r}: {known}")
    conn = connection(inventory, node, ssh)
    try:
        conn.open()
    except Exception as exc:
        conn.close()
        jump = next((n.name for n in inventory.nodes
                     if node.jump_host in (n.address, n.ssh_host)), node.jump_host)  # fmt: skip
        via = f" through {jump}" if node.jump_host else ""
        raise NodeUnreachable(
            f"node {name} ({node.ssh_host or node.address}{via}) of cluster "
            f"{inventory.cluster!r} did not answer over SSH: {exc}; check that it is up "
            f"(`clusterkit status`)"
        ) from exc
    try:
        yield conn
    finally:
        conn.close()


def run(conn: Any, command: str, *, check: bool = True, timeout: float | None = 60) -> Any:
    """Run ``command`` on an open connection; the result has stdout, stderr and exited."""
    result = conn.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
    if check and result.exited != 0:
        raise ClusterkitError(
            f"`{command}` failed on {conn.host} (exit {result.exited}): "
            f"{(result.stderr or result.stdout).strip()[-300:]}"
        )
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def tunnels(conn: Any, targets: list[tuple[str, int]]) -> Iterator[list[str]]:
    """Local forwards through ``conn`` to each (host, port): yields ``127.0.0.1:PORT`` each,
    in order. The far ends are reached from the node, so they may be private addresses."""
    with ExitStack() as stack:
        local = []
        for host, port in targets:
            here = free_port()
            stack.enter_context(
                conn.forward_local(local_port=here, remote_port=port, remote_host=host)
            )
            local.append(f"127.0.0.1:{here}")
        yield local


def ensure_key(key: Path) -> str:
    """An ed25519 key pair at ``key`` and ``key``.pub (made when missing, mode 600); returns
    the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = key.with_name(key.name + ".pub")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        # mode 600 from the start: the private key is never readable by others, even briefly
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(pem)
        line = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        pub.write_text(line.decode() + " clusterkit\n")
    return pub.read_text().strip()


def _server_key(sock: Any, timeout: float) -> Any:
    """The host key an SSH server presents on ``sock`` (no login is tried)."""
    from paramiko import Transport

    transport = Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def record_host_keys(inventory: Inventory, ssh: SshSettings, *, timeout_s: float = 300.0,
                     say: Any = lambda _: None) -> list[str]:  # fmt: skip
    """Wait until every node answers SSH and write their host keys to ``ssh.known_hosts``
    (trust on first use, right after the nodes were made). Nodes with a jump host are read
    through it, with the jump host's key already checked. Returns lines 'node: key type'."""
    import time

    from paramiko import HostKeys

    deadline = time.monotonic() + timeout_s
    ssh.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    ssh.known_hosts.touch(mode=0o600)
    found: list[str] = []
    ordered = sorted(inventory.nodes, key=lambda n: n.jump_host is not None)  # jump hosts first
    for node in ordered:
        host = node.ssh_host or node.address
        while True:
            try:
                if node.jump_host is None:
                    with socket.create_connection((host, 22), timeout=CONNECT_TIMEOUT_S) as sock:
                        key = _server_key(sock, CONNECT_TIMEOUT_S)
                else:
                    jump = next(n for n in inventory.nodes
                                if node.jump_host in (n.address, n.ssh_host))  # fmt: skip
                    with connect(inventory, jump.name, ssh) as conn:
                        channel = conn.client.get_transport().open_channel(
                            "direct-tcpip", (host, 22), ("127.0.0.1", 0),
                            timeout=CONNECT_TIMEOUT_S,
                        )  # fmt: skip
                        key = _server_key(channel, CONNECT_TIMEOUT_S)
                break
            except Exception as exc:  # not up yet: refused, reset, timed out, auth
                if time.monotonic() > deadline:
                    raise NodeUnreachable(
                        f"node {node.name} ({host}) did not answer SSH within {timeout_s:.0f} s: "
                        f"{exc}; check the instance in the EC2 console"
                    ) from exc
                time.sleep(5)
        keys = HostKeys(str(ssh.known_hosts))
        keys.pop(host, None)  # a node made again at the same address has new keys
        keys.add(host, key.get_name(), key)
        keys.save(str(ssh.known_hosts))
        found.append(f"{node.name}: {key.get_name()}")
        say(f"node {node.name} answers SSH on {host}; its {key.get_name()} host key recorded")
    return found
