"""The netns provider: the AWS topology rehearsed on this machine in network namespaces.

``up`` builds the topology (:mod:`clusterkit.rehearsal.topology`), starts the two nodes with
their sshd (:mod:`clusterkit.rehearsal.nodes`) and hands back their inventory: the master by
its address, the worker through the master. What runs on the nodes is then the playbooks'
business, exactly as on AWS. Needs Linux and root; the host's own tools (ip, sshd, iptables,
ssh-keygen) are installed from Debian's packages when missing. One rehearsal at a time: its
addresses are fixed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from clusterkit.errors import ClusterkitError
from clusterkit.inventory import Inventory, Node
from clusterkit.rehearsal import nodes, topology
from clusterkit.rehearsal.topology import Layout, RehearsalError
from clusterkit.remote import SshSettings, ensure_key
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths

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


def ensure_host_tools(say: Any = print) -> list[str]:
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
    """Two nodes in namespaces on this machine, reached over SSH like cloud instances."""

    name = "netns"

    @staticmethod
    def layout(spec_name: str) -> Layout:
        return Layout(cluster=spec_name)

    @staticmethod
    def ssh(paths: ClusterPaths) -> SshSettings:
        key = paths.root / "ssh" / "id_ed25519"
        return SshSettings("root", key, nodes.known_hosts_file(paths.root))

    @staticmethod
    def preflight() -> None:
        """One clear error when this machine cannot hold a rehearsal."""
        if sys.platform != "linux" or os.geteuid() != 0:
            raise ClusterkitError(
                "the netns provider needs Linux and root (network namespaces); run as root, "
                "or use `--provider local`"
            )

    def up(self, spec: Spec, paths: ClusterPaths, *, shared: list[Path] | None = None,
           say: Any = print) -> Inventory:  # fmt: skip
        """Build the topology and start both nodes; ``shared`` folders are seen by both at the
        same path. Not idempotent on its own: ``clusterkit up`` calls it only when the
        cluster is down (namespaces left by a crash are named and refused)."""
        self.preflight()
        ensure_host_tools(say)
        others = sorted({ns.rsplit("-", 1)[0] for ns in topology.existing_namespaces()
                         if ns.startswith("ck-")})  # fmt: skip
        if others:
            raise ClusterkitError(
                f"a rehearsal is already up ({', '.join(others)} namespaces); one at a time: "
                f"`clusterkit down` it first"
            )
        layout = self.layout(spec.name)
        ssh = self.ssh(paths)
        ensure_key(ssh.key)
        say(f"building the topology: {', '.join(layout.namespaces)}")
        topology.build(layout)
        try:
            topology.verify_routes(layout)  # nothing of the rehearsal leaves this machine
            for name in nodes.NODES:
                target = nodes.node(layout, name, paths.root)
                nodes.prepare(target, authorized_key=Path(f"{ssh.key}.pub").read_text())
                nodes.start(layout, target, shared=shared or [])
                say(f"node {name} answers SSH on {target.address}")
            nodes.write_known_hosts(layout, paths.root)
        except BaseException:
            topology.destroy(layout)
            raise
        return self.inventory(spec.name)

    def inventory(self, cluster: str) -> Inventory:
        layout = self.layout(cluster)
        master = Node("master", layout.master, ("master",), ssh_host=layout.master)
        worker = Node("worker", layout.worker, ("worker",), ssh_host=layout.worker,
                      jump_host=layout.master)  # fmt: skip
        return Inventory(cluster=cluster, provider=self.name, nodes=(master, worker))

    def ansible_inventory(self, cluster: str, paths: ClusterPaths) -> dict[str, Any]:
        return nodes.ansible_inventory(self.layout(cluster), paths.root, key=self.ssh(paths).key)

    def down(self, paths: ClusterPaths, cluster: str | None = None) -> list[str]:
        """End every node process, remove namespaces, link and route, and the nodes' folders
        (their roots, with everything the playbooks installed). Idempotent."""
        name = cluster or paths.root.name
        removed = topology.destroy(self.layout(name))
        node_dir = nodes.nodes_dir(paths.root)
        if node_dir.exists():
            shutil.rmtree(node_dir)
            removed.append(f"folder {node_dir}")
        return removed

    def describe(self, spec: Spec, paths: ClusterPaths) -> Inventory | None:
        present = topology.existing_namespaces() & set(self.layout(spec.name).namespaces)
        return self.inventory(spec.name) if present else None
