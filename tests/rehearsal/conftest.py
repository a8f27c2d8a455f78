"""The rehearsal's one cluster, shared by its modules: brought up through the CLI as a user
would (once, with the local cluster taken down first: the two would share 2 cores), taken
down by ``test_teardown.py`` (and, whatever happened, at the end of the session)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from clusterkit.core.inventory import Inventory, SshSettings
from clusterkit.core.state import ClusterPaths, ClusterState
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner
from clusterkit.providers.netns import topology
from clusterkit.providers.netns.topology import Layout
from tests.conftest import stop_local_clusters

NAME = "tnet"
#: The shared cluster's workers: two, so that every test sees more than one (test_scale.py
#: takes one away and gives it back)
WORKERS = 2
#: `up`'s arguments for the shared cluster (again, to repair it: the same spec): the idle
#: guard at its shortest (it only records on the rehearsal), for test_idle_guard.py
UP_ARGS = ("--provider", "netns", "--name", NAME, "--idle-minutes", "1",
           "--workers", str(WORKERS))  # fmt: skip
CLUSTERKIT = str(Path(sys.executable).parent / "clusterkit")


@dataclass
class Rehearsal:
    home: Path
    env: dict[str, str]
    layout: Layout
    up_s: float
    up_output: str

    @property
    def paths(self) -> ClusterPaths:
        return ClusterPaths(self.home / "clusters" / NAME)

    @property
    def state(self) -> ClusterState:
        state = ClusterState.load(self.paths)
        assert state is not None, "the rehearsal is down"
        return state

    @property
    def inventory(self) -> Inventory:
        return self.state.inventory

    @property
    def ssh(self) -> SshSettings:
        ssh = self.state.ssh
        assert ssh is not None
        return ssh

    def ck(self, *args: str, timeout: float = 900,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run([CLUSTERKIT, *args], env=env or self.env, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    def ck_json(self, *args: str, timeout: float = 900) -> Any:
        proc = self.ck(*args, "--json", timeout=timeout)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return json.loads(proc.stdout)

    @contextmanager
    def connect(self, name: str) -> Iterator[CommandRunner]:
        """The kit's own runner of a node (the worker through the master, host keys checked)."""
        runner = SshRunner(self.inventory, self.inventory.node(name), self.ssh)
        try:
            yield runner
        finally:
            runner.close()


def sh(runner: CommandRunner, command: str) -> str:
    """``command`` on the node; its stdout, stripped (fails on a non-zero exit)."""
    return runner.run(command, timeout=120).stdout.strip()


@pytest.fixture(scope="session")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    stop_local_clusters()
    home = tmp_path_factory.mktemp("netns-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERKIT_")}
    env["CLUSTERKIT_HOME"] = str(home)
    topology.destroy(Layout(cluster=NAME))  # what a run killed half-way left (every worker)
    started = time.monotonic()
    proc = subprocess.run([CLUSTERKIT, "up", *UP_ARGS], env=env, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    r = Rehearsal(home, env, Layout(cluster=NAME, workers=WORKERS), time.monotonic() - started,
                  proc.stdout + proc.stderr)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    try:
        yield r
    finally:
        r.ck("down", "--cluster", NAME)
        topology.destroy(r.layout)
