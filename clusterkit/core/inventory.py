"""Nodes, their roles and how to reach them: what a provider hands to everything after it.

A node with an ``ssh_host`` is reached over SSH (through its ``jump_host`` when it has one: a
private worker is reached through the master); a node without one is this machine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.core.errors import BadInput

#: ``worker`` names the first worker, as before clusters had more than one
WORKER_ALIASES = {"worker": "worker-1", "worker-1": "worker"}


def worker_name(index: int) -> str:
    """The name of the ``index``-th worker (1-based): worker-1 ... worker-N."""
    return f"worker-{index}"


@dataclass(frozen=True)
class Node:
    name: str
    address: str  # the node's address inside the cluster (its private IP)
    roles: tuple[str, ...]
    ssh_host: str | None = None  # None: this machine, no SSH
    jump_host: str | None = None  # reach ssh_host through this one (private workers)


@dataclass(frozen=True)
class SshSettings:
    """How the kit logs in to a cluster's nodes: the user, its private key, and the nodes'
    known host keys (nothing else: no agent, no ~/.ssh/config)."""

    user: str
    key: Path
    known_hosts: Path

    def to_dict(self) -> dict[str, str]:
        return {"user": self.user, "key": str(self.key), "known_hosts": str(self.known_hosts)}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> SshSettings:
        return cls(data["user"], Path(data["key"]), Path(data["known_hosts"]))


@dataclass(frozen=True)
class Inventory:
    cluster: str
    provider: str
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    def driver(self) -> Node:
        """The node that runs job drivers and holds the runs: the master."""
        for node in self.nodes:
            if "master" in node.roles:
                return node
        raise LookupError(f"cluster {self.cluster} has no master node")

    def workers(self) -> tuple[Node, ...]:
        """The nodes with the worker role, in the inventory's order (worker-1 first)."""
        return tuple(node for node in self.nodes if "worker" in node.roles)

    def node(self, name: str) -> Node:
        """The node called ``name``; else its alias (``worker`` is ``worker-1``, and the
        other way round in a cluster made before workers were numbered); else the one node
        with the role ``name`` (``master`` and ``worker`` name this machine on the local
        provider); BadInput listing the cluster's nodes otherwise."""
        for wanted in (name, WORKER_ALIASES.get(name)):
            for node in self.nodes:
                if node.name == wanted:
                    return node
        holders = [node for node in self.nodes if name in node.roles]
        if len(holders) == 1:
            return holders[0]
        known = ", ".join(n.name for n in self.nodes)
        raise BadInput(f"cluster {self.cluster!r} has no node {name!r}; its nodes: {known}")

    def jump_node(self, node: Node) -> Node | None:
        """The node ``node`` is reached through (None: reached directly)."""
        if node.jump_host is None:
            return None
        return next((n for n in self.nodes if node.jump_host in (n.address, n.ssh_host)), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        nodes = tuple(Node(**{**n, "roles": tuple(n["roles"])}) for n in data.get("nodes", ()))
        return cls(cluster=data["cluster"], provider=data["provider"], nodes=nodes)
