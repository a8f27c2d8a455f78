"""Nodes, their roles and how to reach them: what a provider hands to everything after it.

Later this round-trips to Ansible inventory files in ``inventory/``; the local provider has a
single node that is both master and worker.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Node:
    name: str
    address: str
    roles: tuple[str, ...]
    ssh_host: str | None = None  # None: this machine, no SSH
    jump_host: str | None = None  # reach ssh_host through this one (private workers)


@dataclass(frozen=True)
class Inventory:
    cluster: str
    provider: str
    nodes: tuple[Node, ...] = field(default_factory=tuple)

    def driver(self) -> Node:
        """The node that runs job drivers: the master."""
        for node in self.nodes:
            if "master" in node.roles:
                return node
        raise LookupError(f"cluster {self.cluster} has no master node")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Inventory:
        nodes = tuple(Node(**{**n, "roles": tuple(n["roles"])}) for n in data.get("nodes", ()))
        return cls(cluster=data["cluster"], provider=data["provider"], nodes=nodes)
