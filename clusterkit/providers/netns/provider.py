"""The netns provider: the AWS topology rehearsed on this machine in network namespaces.

``create`` builds the topology (:mod:`.topology`), checks that nothing of it is routed off
this machine, starts the master and ``nodes.workers`` workers with their sshd (:mod:`.nodes`)
and hands back their inventory: the master by its address, each worker through the master.
``resize`` adds or removes worker namespaces of a built rehearsal (the highest-numbered go).
What runs on the nodes is then the playbooks' business, exactly as on AWS. Needs Linux and
root; the host's own tools (ip, sshd, iptables, ssh-keygen) are installed from Debian's
packages when missing.
One rehearsal at a time: its addresses are fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import MAX_WORKERS, Spec
from clusterkit.core.state import ClusterPaths, storage_root_for
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner, ensure_key
from clusterkit.providers.base import Progress
from clusterkit.providers.netns import nodes, topology
from clusterkit.providers.netns.topology import Layout, RehearsalError

#: command -> the Debian package that has it
HOST_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "rsync": "rsync",
}
SBIN = ("/usr/sbin", "/sbin")


def _which(command: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(command, path=path)


def ensure_host_tools(say: Progress = print) -> list[str]:
    """Install the Debian packages of the host tools that are missing; returns them."""
    missing = sorted({pkg for cmd, pkg in HOST_TOOLS.items() if _which(cmd) is None})
    if not missing:
        return []
    if not _which("apt-get"):
        raise RehearsalError(f"missing on this machine: {', '.join(missing)}; install them")
    say(f"installing the rehearsal's host packages: {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *missing]):
        proc = subprocess.run(argv, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise RehearsalError(f"`{' '.join(argv)}` failed: {' '.join(tail)}")
    return missing


class NetnsProvider:
    """A master and its workers in namespaces on this machine, reached over SSH like cloud
    instances."""

    name = "netns"
    services: Literal["processes", "playbooks"] = "playbooks"
    ask_before_removing = False  # nothing is billed and nothing is lost: always removed

    @staticmethod
    def layout(name: str, workers: int | None = None) -> Layout:
        """The rehearsal ``name`` with ``workers`` workers (None: as many as it has now)."""
        return Layout.found(name) if workers is None else Layout(cluster=name, workers=workers)

    def ssh_settings(self, paths: ClusterPaths) -> SshSettings:
        return SshSettings("root", paths.ssh / "id_ed25519", nodes.known_hosts_file(paths.root))

    def check(self, spec: Spec, paths: ClusterPaths) -> dict[str, object]:
        """One clear error when this machine cannot hold a rehearsal."""
        if sys.platform != "linux" or os.geteuid() != 0:
            raise ClusterkitError(
                "the netns provider needs Linux and root (network namespaces); run as root, "
                "or use `--provider local`"
            )
        return {}

    def create(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        """Build the topology and start both nodes; ``storage`` is seen by both at the same
        path. Namespaces left by a crash, or another rehearsal, are named and refused."""
        self.check(spec, paths)
        ensure_host_tools(say)
        others = sorted({ns.removesuffix("-master") for ns in topology.existing_namespaces()
                         if ns.startswith("ck-") and ns.endswith("-master")})  # fmt: skip
        if others:
            raise ClusterkitError(
                f"a rehearsal is already up ({', '.join(others)} namespaces); one at a time: "
                f"`clusterkit down` it first"
            )
        layout = self.layout(spec.name, spec.nodes.workers)
        ssh = self.ssh_settings(paths)
        ensure_key(ssh.key)
        say(f"building the topology: {', '.join(layout.namespaces)}")
        topology.build(layout)
        try:
            topology.verify_routes(layout)  # nothing of the rehearsal leaves this machine
            self._start_nodes(layout, layout.node_names, paths, storage=storage, say=say)
        except BaseException:
            topology.destroy(layout)
            raise
        return self._inventory(layout)

    def _start_nodes(self, layout: Layout, names: list[str], paths: ClusterPaths, *,
                     storage: Path | None, say: Progress) -> None:  # fmt: skip
        """Prepare and start the nodes ``names`` of ``layout``, then write the known_hosts of
        all its nodes."""
        key = Path(f"{self.ssh_settings(paths).key}.pub").read_text()
        for name in names:
            target = nodes.node(layout, name, paths.root)
            nodes.prepare(target, authorized_key=key)
            nodes.start(layout, target, shared=[storage] if storage else [])
            say(f"node {name} answers SSH on {target.address}")
        nodes.write_known_hosts(layout, paths.root)

    def resize(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        """Give the built rehearsal ``spec.nodes.workers`` workers: new ones are made and
        started (their services are the playbooks' business), the highest-numbered beyond it
        are ended and removed with their folders. The new inventory."""
        now = self.layout(spec.name)
        if not (set(now.namespaces) & topology.existing_namespaces()):
            raise ClusterkitError(f"rehearsal {spec.name!r} has no namespaces: it is not up")
        target = self.layout(spec.name, spec.nodes.workers)
        added = [n for n in target.worker_names if n not in now.worker_names]
        made: list[str] = []
        try:
            for name in added:
                topology.add_worker(target, int(name.rsplit("-", 1)[1]))
                made.append(name)
                say(f"made namespace {target.ns(name)} on the private subnet")
            self._start_nodes(target, added, paths, storage=storage, say=say)
        except BaseException:
            for name in made:  # what this resize made, and only that
                self._remove_worker(target, name, paths)
            raise
        for name in now.worker_names[target.workers :]:
            for what in self._remove_worker(target, name, paths):
                say(f"removed {what}")
        nodes.write_known_hosts(target, paths.root)
        return self._inventory(target)

    @staticmethod
    def _remove_worker(layout: Layout, name: str, paths: ClusterPaths) -> list[str]:
        removed = topology.remove_worker(layout, name)
        folder = nodes.node(layout, name, paths.root).folder
        if folder.exists():
            shutil.rmtree(folder)
            removed.append(f"folder {folder}")
        return removed

    def _inventory(self, layout: Layout) -> Inventory:
        master = Node("master", layout.master, ("master",), ssh_host=layout.master)
        workers = tuple(
            Node(name, address, ("worker",), ssh_host=address, jump_host=layout.master)
            for name in layout.worker_names
            for address in [layout.address_of(name)]
        )
        return Inventory(cluster=layout.cluster, provider=self.name, nodes=(master, *workers))

    def nodes(self, name: str, paths: ClusterPaths) -> Inventory | None:
        layout = self.layout(name)
        present = topology.existing_namespaces() & set(layout.namespaces)
        return self._inventory(layout) if present else None

    def remove(
        self,
        name: str,
        paths: ClusterPaths,
        *,
        say: Progress,
        confirm: Callable[[str], bool] | None = None,
    ) -> list[str]:
        """End every node process, remove namespaces, links and routes, and the nodes'
        folders (their roots, with everything the playbooks installed). Idempotent."""
        removed = topology.destroy(self.layout(name))
        node_dir = nodes.nodes_dir(paths.root)
        if node_dir.exists():
            shutil.rmtree(node_dir)
            removed.append(f"folder {node_dir}")
        return removed

    def runner(self, inventory: Inventory, node: Node, ssh: SshSettings | None) -> CommandRunner:
        assert ssh is not None, "a rehearsal's state records its SSH settings"
        return SshRunner(inventory, node, ssh)

    def storage_root(self, spec: Spec, paths: ClusterPaths) -> str:
        """A folder of this machine, seen by both nodes at the same path (it stands for HDFS)."""
        return str(storage_root_for(spec.storage.root, paths))

    def node_python(self) -> str:
        """The nodes see this machine's environment through their overlay root: the python
        role finds every pinned package present there."""
        return sys.executable

    def playbook_variables(self, name: str, paths: ClusterPaths) -> dict[str, object]:
        layout = self.layout(name)
        return {
            "clusterkit_cluster_cidr": layout.vpc,
            "clusterkit_private_subnet": layout.private_subnet,
            "clusterkit_hdfs": False,  # Hadoop cannot be downloaded here
            "common_apt_update_cache": False,  # no internet: the host's packages are there
            # the systemctl stand-in has no timers: the guard's unit passes every 15 s itself
            "idle_guard_scheduler": "loop",
            "idle_guard_every_s": 15,
        }

    def host_variables(self, name: str) -> dict[str, dict[str, object]]:
        # a t2.large's memory to budget from, as on AWS (the nodes share this machine)
        # every name a node may have: asked before the nodes exist, and kept while they change
        memory = {"clusterkit_node_memory_mb": nodes.NODE_MEMORY_MB}
        names = Layout(cluster=name, workers=MAX_WORKERS).node_names
        return {n: dict(memory) for n in names}
