"""The rehearsal's network, built for real in namespaces: who reaches whom, and a clean teardown.

Needs root (CI runs as root); the NAT here is set by hand exactly as the playbooks' nat role
will set it, to prove the topology routes the private subnet through the master. The layouts
here have one worker, but for the test of several (on one bridge, added and removed).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from clusterkit.providers.netns import topology
from clusterkit.providers.netns.topology import Layout, in_ns, route_of, run
from tests.rehearsal import probes
from tests.rehearsal.conftest import CLUSTERKIT

pytestmark = pytest.mark.rehearsal

PORT = 18080
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
    """GET http://address:PORT/ from inside ``namespace`` (None: this shell, and then only the
    master's address): ``answer BODY``, ``refused``, ``unreachable ERRNO`` or ``timeout``."""
    return probes.fetch(namespace, address, PORT)


@pytest.fixture(scope="module")
def net() -> Iterator[Layout]:
    layout = Layout(cluster="ttopo")
    topology.destroy(layout)  # a previous run killed half-way
    topology.build(layout)
    servers = []
    try:
        for role in ("master", "worker-1", "outside"):
            address = layout.address_of(role)
            argv = in_ns(layout.ns(role), sys.executable, "-c", SERVE, address, str(PORT), role)
            servers.append(subprocess.Popen(argv))
        time.sleep(1.5)
        yield layout
    finally:
        removed = topology.destroy(layout)
        for server in servers:
            server.wait(timeout=10)  # ended by destroy, which ends every process in them
        assert removed == [
            *(f"route unreachable {cidr}" for cidr in layout.guarded_ranges),
            f"link {layout.host_link}",
            *(f"namespace {ns}" for ns in layout.namespaces),
        ]
        assert not run(["ip", "route", "show", "metric", str(layout.route_metric)]).strip()


def test_up_refuses_a_route_table_that_would_send_rehearsal_traffic_out(tmp_path):
    """A more specific route for the private subnet (here to lo: harmless) beats the guard:
    `up --provider netns` fails loudly, names the worker's address, and leaves nothing.
    First in the module: `up` refuses while another rehearsal (the ``net`` fixture) is up."""
    layout = Layout(cluster="tbroken", operator_link="172.30.3.0/30", master="10.40.1.30")
    bad = ["10.40.2.0/24", "dev", "lo"]
    run(["ip", "route", "add", *bad])
    try:
        proc = subprocess.run(
            [CLUSTERKIT, "up", "--provider", "netns", "--name", "tbroken"],
            env={**os.environ, "CLUSTERKIT_HOME": str(tmp_path)},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        run(["ip", "route", "del", *bad])
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "would send rehearsal traffic off the machine" in out, out
    assert f"worker-1 {layout.worker} goes `{layout.worker} dev lo" in out, out
    assert "Traceback" not in out, out
    assert not set(layout.namespaces) & topology.existing_namespaces()
    assert not run(["ip", "route", "show", "metric", str(layout.route_metric)]).strip()


def test_namespaces_are_named_and_listed(net: Layout):
    assert set(net.namespaces) <= topology.existing_namespaces()
    assert all(ns.startswith("ck-ttopo-") for ns in net.namespaces)


def test_this_shell_routes_only_the_master_into_the_rehearsal(net: Layout):
    """The guard: from this shell, `ip -4 route get` of every rehearsal address but the
    master's is unreachable (nothing is sent); the master's goes through the rehearsal's link,
    never the default route's device. Only then is the master probed."""
    default = topology.run(["ip", "-4", "route", "show", "default"]).split()
    default_dev = default[default.index("dev") + 1] if "dev" in default else None
    for what, address in net.addresses.items():
        route = route_of(address)
        if what in ("master", "router (operator link)"):
            assert f" dev {net.host_link} " in f" {route} ", (what, route)
            assert f" dev {default_dev} " not in f" {route} ", (what, route)
        elif what == "this shell (operator link)":
            assert route.startswith(f"local {address} dev lo"), route
        else:
            assert route == "unreachable", (what, address, route)
    for cidr in ("10.40.0.1", "10.40.255.254", "172.30.1.254"):  # anywhere in the ranges
        assert route_of(cidr) == "unreachable", cidr
    topology.verify_routes(net)  # the same check, as `up --provider netns` runs it
    assert fetch(None, net.master) == f"answer hello from master, you are {net.operator_ip}"
    assert probes.connect(None, net.master, PORT + 1) == "refused"  # nothing listens there


def test_a_broken_route_table_is_named_by_the_guard(net: Layout):
    own = ["ip", "route", "del", "unreachable", net.vpc, "metric", str(net.route_metric)]
    run(own)  # as if the guard route had been removed by hand (nothing is sent here)
    try:
        with pytest.raises(topology.RehearsalError) as raised:
            topology.verify_routes(net)
        message = str(raised.value)
        assert f"worker-1 {net.worker} goes `{net.worker} via" in message, message
        assert f"router (public subnet) {net.router_public} goes" in message, message
        assert f"outside {net.outside}" not in message  # its range is still guarded
    finally:
        run(["ip", "route", "add", *own[3:]])
    topology.verify_routes(net)


def test_the_router_keeps_the_internet_and_the_operator_out_of_the_private_subnet(net: Layout):
    outside = net.ns("outside")
    assert fetch(outside, net.master) == f"answer hello from master, you are {net.outside}"
    # the internet's packets to the private subnet are refused by the router (prohibit)
    assert fetch(outside, net.worker) == "unreachable EHOSTUNREACH"
    rules = run(["ip", "-n", net.ns("router"), "rule", "show"])
    for device in ("op", "out"):  # the same rule keeps the operator's side out
        assert f"from all to {net.private_subnet} iif {device} prohibit" in rules, rules


def test_master_and_worker_reach_each_other(net: Layout):
    hello = f"answer hello from worker-1, you are {net.master}"
    assert fetch(net.ns("master"), net.worker) == hello
    hello = f"answer hello from master, you are {net.worker}"
    assert fetch(net.ns("worker-1"), net.master) == hello


def test_the_worker_reaches_outside_only_through_the_masters_nat(net: Layout):
    master = net.ns("master")
    assert fetch(master, net.outside) == f"answer hello from outside, you are {net.master}"
    # no forwarding on the master yet: it drops what the worker sends through it
    assert fetch(net.ns("worker-1"), net.outside) == "timeout"
    # what the playbooks' nat role does on the master
    run(in_ns(master, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"))
    run(in_ns(master, "sysctl", "-q", "-w", "net.ipv4.conf.all.send_redirects=0"))
    rule = ["-t", "nat", "POSTROUTING", "-s", net.private_subnet, "-o", "eth0", "-j", "MASQUERADE"]
    run(in_ns(master, "iptables", rule[0], rule[1], "-A", *rule[2:]))
    try:
        # the outside sees the master's address: the worker is behind its NAT
        assert (fetch(net.ns("worker-1"), net.outside)
                == f"answer hello from outside, you are {net.master}")  # fmt: skip
    finally:
        run(in_ns(master, "iptables", rule[0], rule[1], "-D", *rule[2:]))
    # forwarded but not masqueraded: a packet from a private address leaving the public
    # subnet is routed by the private route table back to the master, never to the outside
    assert fetch(net.ns("worker-1"), net.outside) == "unreachable EHOSTUNREACH"
    run(in_ns(master, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"))


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
    assert real
    for address in real:  # the machine's own network is out of reach from the cluster:
        # the router has no route to it; the worker's packets go to the master, which drops
        # what it does not forward
        assert fetch(net.ns("outside"), address) == "unreachable ENETUNREACH"
        assert fetch(net.ns("worker-1"), address) == "timeout"


def test_destroy_is_idempotent_and_leaves_the_other_rehearsals_guard(net: Layout):
    layout = Layout(cluster="ttopo2", operator_link="172.30.2.0/30", master="10.40.1.20")
    assert layout.guarded_ranges == net.guarded_ranges  # the same ranges, two owners
    topology.build(layout)
    with pytest.raises(topology.RehearsalError, match="already exist"):
        topology.build(layout)
    topology.verify_routes(layout)
    sleeper = subprocess.Popen(in_ns(layout.ns("worker-1"), "sleep", "600"))
    removed = topology.destroy(layout)
    assert sleeper.wait(timeout=10) != 0  # ended before its namespace went
    assert f"namespace {layout.ns('worker-1')}" in removed
    assert [r for r in removed if r.startswith("route")] == [
        f"route unreachable {cidr}" for cidr in layout.guarded_ranges
    ]
    assert not set(layout.namespaces) & topology.existing_namespaces()
    assert not run(["ip", "link", "show", layout.host_link], check=False)
    assert layout.master not in run(["ip", "route"])
    assert not run(["ip", "route", "show", "metric", str(layout.route_metric)]).strip()
    topology.verify_routes(net)  # the rehearsal still up keeps its own guard routes
    assert route_of(layout.master) == "unreachable"  # and now covers the gone master too
    assert topology.destroy(layout) == []


def test_workers_share_the_private_subnet_and_come_and_go(net: Layout):
    """A layout of two workers beside ``net`` (its own operator link and master address):
    each worker out of this shell's reach, worker-1 reaching worker-2 directly (a neighbour
    on the router's bridge, not through a gateway); a third worker added to the built
    topology and removed again, its processes ended; destroy removes every worker's
    namespace, added ones too. Nothing is sent from this shell: route lookups only."""
    layout = Layout(cluster="ttopo3", workers=2, operator_link="172.30.4.0/30",
                    master="10.40.1.40")  # fmt: skip
    assert layout.guarded_ranges == net.guarded_ranges
    topology.destroy(layout)  # a previous run killed half-way
    topology.build(layout)
    server = None
    try:
        assert layout.worker_names == ["worker-1", "worker-2"]
        assert set(layout.namespaces) <= topology.existing_namespaces()
        assert topology.existing_workers("ttopo3") == ["worker-1", "worker-2"]
        w1, w2, w3 = (layout.worker_address(i) for i in (1, 2, 3))
        assert (w1, w2, w3) == ("10.40.2.10", "10.40.2.11", "10.40.2.12")
        topology.verify_routes(layout)
        for address in (w1, w2, w3):  # refused here, the one to come included
            assert route_of(address) == "unreachable", address
        ports = run(["ip", "-n", layout.ns("router"), "-o", "link", "show", "master", "priv"])
        assert {line.split(":")[1].strip().split("@")[0] for line in ports.splitlines()} == {
            "pw1", "pw2"}  # fmt: skip

        argv = in_ns(layout.ns("worker-2"), sys.executable, "-c", SERVE, w2, str(PORT),
                     "worker-2")  # fmt: skip
        server = subprocess.Popen(argv)
        deadline = time.monotonic() + 10
        while probes.connect(layout.ns("worker-2"), w2, PORT) != "open":
            assert time.monotonic() < deadline, "worker-2's server did not start"
            time.sleep(0.2)
        assert fetch(layout.ns("worker-1"), w2) == f"answer hello from worker-2, you are {w1}"
        route = run(["ip", "-n", layout.ns("worker-1"), "-4", "route", "get", w2])
        assert route.startswith(f"{w2} dev eth0 src {w1}") and " via " not in route, route
        neighbour = run(["ip", "-n", layout.ns("worker-1"), "neigh", "show", w2])
        assert neighbour.startswith(f"{w2} dev eth0 lladdr "), neighbour
        assert fetch(layout.ns("outside"), w2) == "unreachable EHOSTUNREACH"  # the router's

        topology.add_worker(layout, 3)
        assert topology.existing_workers("ttopo3") == ["worker-1", "worker-2", "worker-3"]
        assert Layout.found("ttopo3").worker_names == ["worker-1", "worker-2", "worker-3"]
        with pytest.raises(topology.RehearsalError, match="already exists"):
            topology.add_worker(layout, 3)
        assert fetch(layout.ns("worker-3"), w2) == f"answer hello from worker-2, you are {w3}"
        assert route_of(w3) == "unreachable"
        sleeper = subprocess.Popen(in_ns(layout.ns("worker-3"), "sleep", "600"))
        assert topology.remove_worker(layout, "worker-3") == [
            f"namespace {layout.ns('worker-3')}"]  # fmt: skip
        assert sleeper.wait(timeout=10) != 0  # ended before its namespace went
        assert topology.existing_workers("ttopo3") == ["worker-1", "worker-2"]
        assert not run(["ip", "-n", layout.ns("router"), "link", "show", "pw3"], check=False)
        assert topology.remove_worker(layout, "worker-3") == []  # idempotent
        assert fetch(layout.ns("worker-1"), w2) == f"answer hello from worker-2, you are {w1}"

        topology.add_worker(layout, 3)  # again, and left for destroy
    finally:
        removed = topology.destroy(layout)  # a layout of 2 workers: the third found anyway
        if server is not None:
            server.wait(timeout=10)  # ended by destroy
    assert {f"namespace {layout.ns(f'worker-{i}')}" for i in (1, 2, 3)} <= set(removed)
    assert not [ns for ns in topology.existing_namespaces() if ns.startswith("ck-ttopo3-")]
    assert not run(["ip", "link", "show", layout.host_link], check=False)
    assert not run(["ip", "route", "show", "metric", str(layout.route_metric)]).strip()
    topology.verify_routes(net)  # the other rehearsal keeps its own guard routes
    assert topology.destroy(layout) == []
