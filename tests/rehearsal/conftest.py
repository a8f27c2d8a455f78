"""Helpers of the rehearsal tests: both nodes up through the netns provider, down after;
a whole cluster up through the CLI for a module (``rehearsal``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fabric import Connection

from clusterkit import remote
from clusterkit.inventory import Inventory
from clusterkit.providers.netns import NetnsProvider
from clusterkit.rehearsal import topology
from clusterkit.rehearsal.topology import Layout
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


NAME = "tnet"
CLUSTERKIT = str(Path(sys.executable).parent / "clusterkit")


@dataclass
class Rehearsal:
    home: Path
    env: dict[str, str]
    layout: Layout
    up_s: float

    @property
    def paths(self) -> ClusterPaths:
        return ClusterPaths(self.home / "clusters" / NAME)

    def ck(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLUSTERKIT, *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip

    def ck_json(self, *args: str) -> Any:
        proc = self.ck(*args, "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def connect(self, name: str) -> AbstractContextManager[Connection]:
        """The kit's own SSH to a node (the worker through the master, host keys checked)."""
        state = json.loads(self.paths.state_file.read_text())
        return remote.connect(Inventory.from_dict(state["inventory"]), name,
                              SshSettings.from_dict(state["ssh"]))  # fmt: skip


def sh(c: Connection, command: str) -> str:
    return c.run(command, hide=True, in_stream=False).stdout.strip()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    home = tmp_path_factory.mktemp("netns-home")
    env = {**os.environ, "CLUSTERKIT_HOME": str(home)}
    topology.destroy(Layout(cluster=NAME))  # what a run killed half-way left
    r = Rehearsal(home, env, Layout(cluster=NAME), 0.0)
    started = time.monotonic()
    proc = r.ck("up", "--provider", "netns", "--name", NAME)
    r.up_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    try:
        yield r
    finally:
        r.ck("down", "--cluster", NAME)
        topology.destroy(r.layout)
