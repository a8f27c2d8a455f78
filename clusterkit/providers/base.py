"""The provider interface, in the manner of Ray's NodeProvider and SkyPilot's provision verbs:
nodes, not services.

A provider answers which nodes exist and hands out a runner per node; everything that runs
on the nodes is the services' business (this machine's processes for the local provider, the
playbooks for the others: ``services`` says which).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal, Protocol

from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths
from clusterkit.exec.runner import CommandRunner

Progress = Callable[[str], None]


class NodeProvider(Protocol):
    """Where a cluster's nodes come from and how they are reached.

    Contract:
    - ``check`` raises a ClusterkitError with the fix when this machine or account cannot
      make the nodes, and otherwise returns what it found (what ``up --dry-run`` shows: a
      cloud's account, region and list price); it makes nothing.
    - ``create`` makes the nodes (``storage`` is a folder of this machine they must all see,
      when the storage is one) and returns their inventory. On failure it raises, and what it
      made is removed by ``remove`` (the caller asks first when ``ask_before_removing``).
    - ``resize`` gives a made cluster ``spec.nodes.workers`` workers: new ones made (their
      services are the caller's business), the highest-numbered beyond it removed; returns
      the new inventory. The local provider has one worker and refuses.
    - ``nodes`` is the inventory of what exists now, or None when nothing does.
    - ``remove`` removes every node and everything billed for them, and returns what it
      removed (empty: nothing was there). Idempotent; it needs no state but the paths.
    - ``runner`` hands out the runner of one node of ``inventory``.
    A provider knows nothing of Spark, Ray or HDFS.
    """

    name: str
    services: Literal["processes", "playbooks"]
    ask_before_removing: bool

    def check(self, spec: Spec, paths: ClusterPaths) -> dict[str, object]: ...

    def create(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory: ...  # fmt: skip

    def resize(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory: ...  # fmt: skip

    def nodes(self, name: str, paths: ClusterPaths) -> Inventory | None: ...

    def remove(
        self,
        name: str,
        paths: ClusterPaths,
        *,
        say: Progress,
        confirm: Callable[[str], bool] | None = None,
    ) -> list[str]: ...

    def runner(
        self, inventory: Inventory, node: Node, ssh: SshSettings | None
    ) -> CommandRunner: ...

    def ssh_settings(self, paths: ClusterPaths) -> SshSettings | None: ...

    def storage_root(self, spec: Spec, paths: ClusterPaths) -> str: ...

    def node_python(self) -> str: ...

    def playbook_variables(self, name: str, paths: ClusterPaths) -> dict[str, object]: ...

    def host_variables(self, name: str) -> dict[str, dict[str, object]]: ...
