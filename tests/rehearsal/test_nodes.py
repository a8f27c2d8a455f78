"""Rehearsal nodes for real: namespaces, an overlay root and sshd each, reached over SSH
(the workers only through the master), each with its own host keys; nothing left after.

The nodes are the shared rehearsal's (conftest's ``rehearsal``), read with the kit's runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from clusterkit.core.errors import NodeUnreachable
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.exec.ssh import SshRunner, ensure_key, record_host_keys
from clusterkit.providers.netns import nodes, topology
from clusterkit.providers.netns.topology import Layout, run
from tests.rehearsal.conftest import Rehearsal, sh

pytestmark = pytest.mark.rehearsal


def test_each_node_is_its_own_machine(rehearsal: Rehearsal):
    names = rehearsal.layout.node_names  # the master and every worker
    for name in names:
        with rehearsal.connect(name) as c:
            assert sh(c, "hostname") == name
            addresses = sh(c, "ip -4 -o addr show scope global")
            assert rehearsal.layout.address_of(name) in addresses and addresses.count("inet ") == 1
            assert "sshd" in sh(c, "cat /proc/1/cmdline")  # its own PID 1
            sh(c, f"echo {name} > /root/marker")
    for name in names:  # each kept its own, though the others wrote theirs after
        with rehearsal.connect(name) as c:
            assert sh(c, "cat /root/marker") == name
    assert not Path("/root/marker").exists()  # what a node writes stays in the node


def test_the_nodes_host_keys_are_their_own(rehearsal: Rehearsal):
    keys = {
        (
            nodes.nodes_dir(rehearsal.paths.root) / n / "upper/etc/ssh/ssh_host_ed25519_key.pub"
        ).read_text()
        for n in rehearsal.layout.node_names
    }
    assert len(keys) == len(rehearsal.layout.node_names)  # no two nodes alike
    host = Path("/etc/ssh/ssh_host_ed25519_key.pub")
    assert not host.exists() or host.read_text() not in keys


def test_host_keys_recorded_on_first_contact_are_the_nodes_own(rehearsal, tmp_path: Path):
    """What `up --provider aws` does once the instances exist: read each node's host key (the
    workers' through the master, whose key is then checked) into a new known_hosts; the
    keys are the ones the nodes really have, and the kit's strict connections then work."""
    from paramiko import HostKeys

    fresh = SshSettings(rehearsal.ssh.user, rehearsal.ssh.key, tmp_path / "known_hosts")
    said: list[str] = []
    found = record_host_keys(rehearsal.inventory, fresh, timeout_s=30, say=said.append)
    names = rehearsal.layout.node_names  # master, worker-1, ...
    assert [line.split(":")[0] for line in found] == names
    recorded, truth = HostKeys(str(fresh.known_hosts)), HostKeys(str(rehearsal.ssh.known_hosts))
    for node in rehearsal.inventory.nodes:
        host = node.ssh_host or node.address
        assert recorded.lookup(host), host
        for key_type, key in recorded.lookup(host).items():
            assert truth.lookup(host)[key_type] == key, (node.name, key_type)
    for name in rehearsal.layout.worker_names:
        worker = SshRunner(rehearsal.inventory, rehearsal.inventory.node(name), fresh)
        try:
            assert sh(worker, "hostname") == name
        finally:
            worker.close()
    assert len(said) == len(names), said
    for line, name in zip(said, names, strict=True):
        assert line.startswith(f"node {name} answers SSH on "), said


def test_host_keys_of_a_node_that_never_answers_are_named(rehearsal, tmp_path: Path):
    """An address in the rehearsal's VPC that no node holds: this machine's route table refuses
    it at once (checked first: nothing is sent), every attempt until the deadline."""
    fresh = SshSettings(rehearsal.ssh.user, rehearsal.ssh.key, tmp_path / "known_hosts")
    nobody = "10.40.3.9"
    assert topology.route_of(nobody) == "unreachable"
    gone = Inventory(
        cluster="tnode",
        provider="aws",
        nodes=(Node("master", nobody, ("master",), ssh_host=nobody),),
    )
    with pytest.raises(
        NodeUnreachable,
        match=r"node master \(10.40.3.9\) did not answer SSH within 6 s: .*No route to host",
    ):
        record_host_keys(gone, fresh, timeout_s=6, say=lambda _: None)


def test_a_node_that_cannot_start_is_named(tmp_path: Path, rehearsal: Rehearsal):
    name = rehearsal.layout.worker_names[-1]  # its namespace exists; the address is not its
    broken = nodes.Node(name, "10.99.0.1", tmp_path / "broken")
    with pytest.raises(topology.RehearsalError, match=rf"node {name}: sshd did not start on"):
        nodes.start(rehearsal.layout, broken)


def test_down_ends_the_nodes_and_their_mounts(rehearsal: Rehearsal, tmp_path: Path):
    """A second topology beside the shared rehearsal's: its node's processes and mounts end
    with it, and the rehearsal's own routes stay."""
    layout = Layout(cluster="tnode2", operator_link="172.30.2.0/30", master="10.40.1.20")
    topology.build(layout)
    target = nodes.node(layout, "master", tmp_path)
    nodes.prepare(target, authorized_key=ensure_key(tmp_path / "k"))
    nodes.start(layout, target)
    pids = run(["ip", "netns", "pids", layout.ns("master")]).split()
    assert pids
    topology.destroy(layout)
    assert not any(Path(f"/proc/{p}").exists() for p in pids)
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    assert str(target.folder) not in mounts.stdout
    topology.verify_routes(rehearsal.layout)
