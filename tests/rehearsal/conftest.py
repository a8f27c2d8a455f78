"""Helpers of the rehearsal tests: both nodes up through the netns provider, down after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterkit.inventory import Inventory
from clusterkit.providers.netns import NetnsProvider
from clusterkit.remote import SshSettings
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths


@contextmanager
def nodes_up(cluster: str, state: Path) -> Iterator[tuple[Inventory, SshSettings]]:
    """The topology of ``cluster`` built and both nodes started by the provider (its key
    authorized, known_hosts holding the nodes' own host keys); everything removed after."""
    provider, paths = NetnsProvider(), ClusterPaths(state)
    provider.down(paths, cluster)  # what a run killed half-way left
    inventory = provider.up(Spec(name=cluster), paths, say=lambda _: None)
    try:
        yield inventory, provider.ssh(paths)
    finally:
        provider.down(paths, cluster)
