"""The provider interface, in the manner of Ray's NodeProvider: nodes, not services."""

from __future__ import annotations

from typing import Protocol

from clusterkit.inventory import Inventory
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths


class Provider(Protocol):
    """Answers one question: which nodes exist, and how are they reached.

    Contract:
    - ``up`` is idempotent: nodes that exist are kept, missing ones are created; it returns
      the inventory of all of them. It raises ClusterkitError subclasses, never leaves a
      half-made node unreported.
    - ``down`` removes every node it made and everything billed for them; with nothing up
      it does nothing. Idempotent.
    - ``describe`` returns the inventory of what exists now, or None if nothing does.
    A provider knows nothing of Spark, Ray or HDFS.
    """

    name: str

    def up(self, spec: Spec, paths: ClusterPaths) -> Inventory: ...

    def down(self, paths: ClusterPaths) -> object: ...

    def describe(self, spec: Spec, paths: ClusterPaths) -> Inventory | None: ...
