"""The rehearsal's network, built for real in namespaces: who reaches whom, and a clean teardown.

Needs root (CI runs as root); the NAT here is set by hand exactly as the playbooks' nat role
will set it, to prove the topology routes the private subnet through the master.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clusterkit.rehearsal import topology
from clusterkit.rehearsal.topology import Layout, in_ns, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

PORT = 18080
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\n"
    "except Exception as exc:\n"
    "    print('unreachable', type(exc).__name__, exc); sys.exit(1)\n"
)
SERVE = (  # socketserver's bind, not HTTPServer's: that one asks DNS for the host's name
    "import http.server, socketserver, sys\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        peer = self.client_address[0]\n"
    "        body = ('hello from ' + sys.argv[3] + ', you are ' + peer).encode()\n"
    "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers(); self.wfile.write(body)\n"
    "    def log_message(self, *a): pass\n"
    "socketserver.TCPServer((sys.argv[1], int(sys.argv[2])), H).serve_forever()\n"
)


def fetch(namespace: str | None, address: str) -> str:
    """GET http://address:PORT/ from inside ``namespace`` (None: this shell)."""
    argv = [sys.executable, "-c", FETCH, f"http://{address}:{PORT}/"]
    proc = subprocess.run(in_ns(namespace, *argv) if namespace else argv,
                          capture_output=True, text=True, timeout=20)  # fmt: skip
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def net() -> Iterator[Layout]:
    layout = Layout(cluster="ttopo")
    topology.destroy(layout)  # a previous run killed half-way
    topology.build(layout)
    servers = []
    try:
        for role in ("master", "worker", "outside"):
            address = layout.address_of(role)
            argv = in_ns(layout.ns(role), sys.executable, "-c", SERVE, address, str(PORT), role)
            servers.append(subprocess.Popen(argv))
        time.sleep(1.5)
        yield layout
    finally:
        removed = topology.destroy(layout)
        for server in servers:
            server.wait(timeout=10)  # ended by destroy, which ends every process in them
        assert len(removed) == 5


def test_namespaces_are_named_and_listed(net: Layout):
    assert set(net.namespaces) <= topology.existing_namespaces()
    assert all(ns.startswith("ck-ttopo-") for ns in net.namespaces)


def test_the_operator_reaches_the_master_and_nothing_else(net: Layout):
    assert fetch(None, net.master) == f"hello from master, you are {net.operator_ip}"
    assert fetch(None, net.worker).startswith("unreachable")
    assert fetch(None, net.outside).startswith("unreachable")
    # even with a route of its own, the router refuses the operator into the private subnet
    run(["ip", "route", "add", f"{net.worker}/32", "via", net.router_operator_ip])
    try:
        assert fetch(None, net.worker).startswith("unreachable")
    finally:
        run(["ip", "route", "del", f"{net.worker}/32"])


def test_master_and_worker_reach_each_other(net: Layout):
    assert fetch(net.ns("master"), net.worker) == f"hello from worker, you are {net.master}"
    assert fetch(net.ns("worker"), net.master) == f"hello from master, you are {net.worker}"


def test_the_worker_reaches_outside_only_through_the_masters_nat(net: Layout):
    master = net.ns("master")
    assert fetch(master, net.outside) == f"hello from outside, you are {net.master}"
    assert fetch(net.ns("worker"), net.outside).startswith("unreachable")  # no NAT yet
    # what the playbooks' nat role does on the master
    run(in_ns(master, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))
    run(in_ns(master, "sysctl", "-q", "-w", "net.ipv4.conf.all.send_redirects=0"))
    rule = ["-t", "nat", "POSTROUTING", "-s", net.private_subnet, "-o", "eth0", "-j", "MASQUERADE"]
    run(in_ns(master, "iptables", rule[0], rule[1], "-A", *rule[2:]))
    try:
        # the outside sees the master's address: the worker is behind its NAT
        assert fetch(net.ns("worker"), net.outside) == f"hello from outside, you are {net.master}"
    finally:
        run(in_ns(master, "iptables", rule[0], rule[1], "-D", *rule[2:]))
    assert fetch(net.ns("worker"), net.outside).startswith("unreachable")  # NAT off again


def test_no_namespace_has_a_route_to_a_real_network(net: Layout):
    ranges = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
    private = [ipaddress.IPv4Network(n) for n in ranges]

    def is_private(text: str) -> bool:
        net_ = ipaddress.IPv4Network(text, strict=False)
        return any(net_.subnet_of(p) for p in private)

    for namespace in net.namespaces:
        routes = run(["ip", "-n", namespace, "-4", "route", "show", "table", "all"])
        for line in routes.splitlines():
            words = line.split()
            if words[0] in ("local", "broadcast") or "dev lo" in line:
                continue
            target = words[0] if words[0] != "default" else "0.0.0.0/0"
            gateway = words[words.index("via") + 1] if "via" in words else None
            assert gateway is None or is_private(gateway), (namespace, line)
            assert target == "0.0.0.0/0" or is_private(target), (namespace, line)
    host_address = run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).split()
    real = [w.split("/")[0] for w in host_address if "/" in w and not w.startswith("172.30.")]
    for address in real:  # the machine's own network is out of reach from the cluster
        assert fetch(net.ns("outside"), address).startswith("unreachable")
        assert fetch(net.ns("worker"), address).startswith("unreachable")


def test_destroy_is_idempotent_and_leaves_nothing():
    layout = Layout(cluster="ttopo2", operator_link="172.30.2.0/30", master="10.40.1.20")
    topology.build(layout)
    with pytest.raises(topology.RehearsalError, match="already exist"):
        topology.build(layout)
    sleeper = subprocess.Popen(in_ns(layout.ns("worker"), "sleep", "600"))
    removed = topology.destroy(layout)
    assert sleeper.wait(timeout=10) != 0  # ended before its namespace went
    assert f"namespace {layout.ns('worker')}" in removed
    assert not set(layout.namespaces) & topology.existing_namespaces()
    assert not run(["ip", "link", "show", layout.host_link], check=False)
    assert layout.master not in run(["ip", "route"])
    assert topology.destroy(layout) == []
