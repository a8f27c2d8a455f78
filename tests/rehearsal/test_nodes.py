"""Rehearsal nodes for real: namespaces, an overlay root and sshd each, reached over SSH
(the worker only through the master), each with its own host keys; nothing left after."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fabric import Connection

from clusterkit import remote
from clusterkit.inventory import Inventory
from clusterkit.rehearsal import nodes, topology
from clusterkit.rehearsal.topology import Layout, run
from clusterkit.remote import SshSettings
from tests.rehearsal.conftest import nodes_up

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


@dataclass
class Rehearsal:
    layout: Layout
    state: Path
    inventory: Inventory
    ssh: SshSettings

    def connect(self, name: str) -> AbstractContextManager[Connection]:
        """SSH as root, the worker through the master, host keys checked against the nodes'
        (the kit's own connection)."""
        return remote.connect(self.inventory, name, self.ssh)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    state = tmp_path_factory.mktemp("rehearsal")
    with nodes_up("tnode", state) as (inventory, ssh):
        yield Rehearsal(Layout(cluster="tnode"), state, inventory, ssh)


def test_each_node_is_its_own_machine(rehearsal: Rehearsal):
    for name in nodes.NODES:
        with rehearsal.connect(name) as c:
            assert c.run("hostname", hide=True, in_stream=False).stdout.strip() == name
            addresses = c.run("ip -4 -o addr show scope global", hide=True, in_stream=False).stdout
            assert rehearsal.layout.address_of(name) in addresses and addresses.count("inet ") == 1
            assert (
                "sshd" in c.run("cat /proc/1/cmdline", hide=True, in_stream=False).stdout
            )  # its own PID 1
            c.run(f"echo {name} > /root/marker", hide=True, in_stream=False)
    with rehearsal.connect("worker") as c:
        assert c.run("cat /root/marker", hide=True, in_stream=False).stdout.strip() == "worker"
    assert not Path("/root/marker").exists()  # what a node writes stays in the node


def test_the_nodes_host_keys_are_their_own(rehearsal: Rehearsal):
    keys = {
        (rehearsal.state / "nodes" / n / "upper/etc/ssh/ssh_host_ed25519_key.pub").read_text()
        for n in nodes.NODES
    }
    assert len(keys) == 2
    host = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    assert not host.exists() or host.read_text() not in keys


def test_host_keys_recorded_on_first_contact_are_the_nodes_own(rehearsal, tmp_path: Path):
    """What `up --provider aws` does once the instances exist: read each node's host key (the
    worker's through the master, whose key is then checked) into a new known_hosts; the
    keys are the ones the nodes really have, and the kit's strict connections then work."""
    from paramiko import HostKeys

    fresh = SshSettings(rehearsal.ssh.user, rehearsal.ssh.key, tmp_path / "known_hosts")
    said: list[str] = []
    found = remote.record_host_keys(rehearsal.inventory, fresh, timeout_s=30, say=said.append)
    assert [line.split(":")[0] for line in found] == ["master", "worker"]
    recorded, truth = HostKeys(str(fresh.known_hosts)), HostKeys(str(rehearsal.ssh.known_hosts))
    for node in rehearsal.inventory.nodes:
        host = node.ssh_host or node.address
        assert recorded.lookup(host), host
        for key_type, key in recorded.lookup(host).items():
            assert truth.lookup(host)[key_type] == key, (node.name, key_type)
    with remote.connect(rehearsal.inventory, "worker", fresh) as conn:
        assert conn.run("hostname", hide=True, in_stream=False).stdout.strip() == "worker"
    assert said[1].startswith("node worker answers SSH on ")


def test_host_keys_of_a_node_that_never_answers_are_named(rehearsal, tmp_path: Path):
    """An address in the rehearsal's VPC that no node holds: this machine's route table refuses
    it at once (checked first: nothing is sent), every attempt until the deadline."""
    fresh = SshSettings(rehearsal.ssh.user, rehearsal.ssh.key, tmp_path / "known_hosts")
    nobody = "10.40.3.9"
    assert topology.route_of(nobody) == "unreachable"
    gone = Inventory(
        cluster="tnode",
        provider="aws",
        nodes=(remote.Node("master", nobody, ("master",), ssh_host=nobody),),
    )
    with pytest.raises(
        remote.NodeUnreachable,
        match=r"node master \(10.40.3.9\) did not answer SSH within 6 s: .*No route to host",
    ):
        remote.record_host_keys(gone, fresh, timeout_s=6, say=lambda _: None)


def test_a_node_that_cannot_start_is_named(tmp_path: Path, rehearsal: Rehearsal):
    broken = nodes.Node("worker", "10.99.0.1", tmp_path / "broken")  # not its address
    with pytest.raises(topology.RehearsalError, match=r"node worker: sshd did not start on"):
        nodes.start(rehearsal.layout, broken)


def test_down_ends_the_nodes_and_their_mounts(tmp_path: Path):
    layout = Layout(cluster="tnode2", operator_link="172.30.2.0/30", master="10.40.1.20")
    topology.build(layout)
    key = tmp_path / "k"
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)])
    target = nodes.node(layout, "master", tmp_path)
    nodes.prepare(target, authorized_key=(tmp_path / "k.pub").read_text())
    nodes.start(layout, target)
    pids = run(["ip", "netns", "pids", layout.ns("master")]).split()
    assert pids
    topology.destroy(layout)
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    assert str(target.folder) not in mounts.stdout
