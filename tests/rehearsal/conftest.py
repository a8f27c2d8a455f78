"""Helpers of the rehearsal tests: a topology with both nodes started, torn down after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from clusterkit.rehearsal import nodes, topology
from clusterkit.rehearsal.topology import Layout, run


@contextmanager
def nodes_up(layout: Layout, state: Path) -> Iterator[Path]:
    """Build ``layout`` and start both nodes, authorizing a fresh operator key (its path is
    yielded; known_hosts beside it holds the nodes' host keys); everything is removed after."""
    key = state / "operator_key"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    topology.destroy(layout)  # what a run killed half-way left
    topology.build(layout)
    try:
        for name in nodes.NODES:
            target = nodes.node(layout, name, state)
            nodes.prepare(target, authorized_key=(state / "operator_key.pub").read_text())
            nodes.start(layout, target)
        nodes.write_known_hosts(layout, state)
        yield key
    finally:
        topology.destroy(layout)
