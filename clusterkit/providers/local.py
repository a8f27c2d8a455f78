"""The local provider: one node, this machine, both master and worker."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from clusterkit.core.errors import BadInput
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, storage_root_for
from clusterkit.exec.local import LocalRunner, this_machine
from clusterkit.exec.runner import CommandRunner
from clusterkit.providers.base import Progress


class LocalProvider:
    """This machine as a one-node cluster: nothing to make or remove, and its runner is this
    machine's (:class:`~clusterkit.exec.local.LocalRunner`). Its services are this machine's
    processes."""

    name = "local"
    services: Literal["processes", "playbooks"] = "processes"
    ask_before_removing = False

    def check(self, spec: Spec, paths: ClusterPaths) -> dict[str, object]:
        return {}  # the services check Java, ports and sizes

    def create(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        return self._inventory(spec.name)

    def resize(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        raise BadInput(
            f"cluster {spec.name!r} is local: this machine is its one worker, so it cannot be "
            "scaled; bring up a rehearsal (--provider netns) or an AWS cluster for more workers"
        )

    def nodes(self, name: str, paths: ClusterPaths) -> Inventory | None:
        return None  # nothing is ever made: this machine is there before and after

    def remove(
        self,
        name: str,
        paths: ClusterPaths,
        *,
        say: Progress,
        confirm: Callable[[str], bool] | None = None,
    ) -> list[str]:
        return []  # this machine stays; its services' processes are stopped by the services

    def runner(self, inventory: Inventory, node: Node, ssh: SshSettings | None) -> CommandRunner:
        return LocalRunner(node)

    def ssh_settings(self, paths: ClusterPaths) -> SshSettings | None:
        return None

    def storage_root(self, spec: Spec, paths: ClusterPaths) -> str:
        return str(storage_root_for(spec.storage.root, paths))

    def node_python(self) -> str:
        return sys.executable

    def playbook_variables(self, name: str, paths: ClusterPaths) -> dict[str, object]:
        return {}

    def host_variables(self, name: str) -> dict[str, dict[str, object]]:
        return {}

    @staticmethod
    def _inventory(name: str) -> Inventory:
        return Inventory(cluster=name, provider="local",
                         nodes=(this_machine(roles=("master", "worker")),))  # fmt: skip
