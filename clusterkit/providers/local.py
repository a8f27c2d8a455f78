"""The local provider: one node, this machine, both master and worker."""

from __future__ import annotations

import socket

from clusterkit.inventory import Inventory, Node
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths

LOOPBACK = "127.0.0.1"


class LocalProvider:
    """This machine as a one-node cluster. Nothing to create or destroy: up and down are
    idempotent by construction; the services are started by :mod:`clusterkit.local_services`."""

    name = "local"

    def up(self, spec: Spec, paths: ClusterPaths) -> Inventory:
        return self._inventory(spec)

    def down(self, paths: ClusterPaths) -> None:
        return None

    def describe(self, spec: Spec, paths: ClusterPaths) -> Inventory | None:
        return self._inventory(spec) if paths.state_file.exists() else None

    @staticmethod
    def _inventory(spec: Spec) -> Inventory:
        node = Node(name=socket.gethostname(), address=LOOPBACK, roles=("master", "worker"))
        return Inventory(cluster=spec.name, provider="local", nodes=(node,))
