"""The AWS topology of the source project, rehearsed in Linux network namespaces.

Named namespaces stand for the cloud (``ip netns list`` shows them, prefixed ``ck-``):

- ``ck-NAME-master``: the master, in the *public* subnet (on AWS: the instance with the only
  public IP, and the NAT instance of the private subnet);
- ``ck-NAME-worker-1`` ... ``-worker-N``: the workers, in the *private* subnet (a bridge in
  the router, so workers reach each other directly), with no other address;
- ``ck-NAME-router``: the VPC's router and route tables. The public subnet's default route
  leads to the internet gateway (``outside`` and the operator); the private subnet's goes to
  the master's interface (policy routing: ``from <private> lookup <table>``), like the AWS
  private route table ``0.0.0.0/0 -> master ENI``. The operator side and the internet have no
  way into the private subnet (``prohibit`` rules), as private IPs are not routable on AWS;
- ``ck-NAME-outside``: the internet, a namespace with one address.

This shell, the operator's side, gets one link to the router and one route: to the master's
address. Every other range the rehearsal uses (the VPC, the outside) gets an ``unreachable``
route here, so a packet to any rehearsal address but the master's is refused by this
machine's own kernel ("No route to host") instead of following its default route off the
machine. Each rehearsal owns its own unreachable routes (a metric of its own), so a range
stays guarded while any rehearsal that uses it exists. Every address is in a private range;
no namespace has a route to a real network. Nothing here makes the master a NAT: the
playbooks' ``nat`` role does that, as on AWS.

Contract: :func:`build` creates everything or, on any failure, removes what it created and
raises ``RehearsalError`` naming the command; :func:`verify_routes` raises ``RehearsalError``
naming every address this shell would send elsewhere than the rehearsal's link or the
unreachable routes; :func:`destroy` is idempotent, ends every process left in the namespaces
first, and returns what it removed. :func:`add_worker` and :func:`remove_worker` grow and
shrink a built topology by one worker namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.inventory import worker_name

ROLES = ("master", "router", "outside")  # and one namespace per worker
PRIVATE_TABLE = 100  # the private subnet's route table in the router


class RehearsalError(ClusterkitError):
    """The rehearsal topology could not be built or checked."""


@dataclass(frozen=True)
class Layout:
    """Names and addresses of one rehearsal cluster (all in private ranges)."""

    cluster: str
    vpc: str = "10.40.0.0/16"
    public_subnet: str = "10.40.1.0/24"
    private_subnet: str = "10.40.2.0/24"
    router_public: str = "10.40.1.1"
    master: str = "10.40.1.10"
    router_private: str = "10.40.2.1"
    workers: int = 1
    operator_link: str = "172.30.0.0/30"  # this shell .1, the router .2
    outside_subnet: str = "172.30.1.0/24"  # the router .1, outside .10

    def ns(self, role: str) -> str:
        return f"ck-{self.cluster}-{role}"

    @classmethod
    def found(cls, cluster: str) -> Layout:
        """The layout of ``cluster`` with as many workers as it has namespaces (at least 1)."""
        return cls(cluster=cluster, workers=max(1, len(existing_workers(cluster))))

    @property
    def worker_names(self) -> list[str]:
        return [worker_name(i) for i in range(1, self.workers + 1)]

    @property
    def node_names(self) -> list[str]:
        return ["master", *self.worker_names]

    @property
    def namespaces(self) -> list[str]:
        return [self.ns(role) for role in (*ROLES, *self.worker_names)]

    @property
    def worker(self) -> str:
        """The first worker's address."""
        return self.worker_address(1)

    def worker_address(self, index: int) -> str:
        """Worker ``index``'s address: .10 for worker-1, .11 for worker-2, ..."""
        return str(ipaddress.ip_network(self.private_subnet)[9 + index])

    @property
    def operator_ip(self) -> str:
        return str(ipaddress.ip_network(self.operator_link)[1])

    @property
    def router_operator_ip(self) -> str:
        return str(ipaddress.ip_network(self.operator_link)[2])

    @property
    def router_outside_ip(self) -> str:
        return str(ipaddress.ip_network(self.outside_subnet)[1])

    @property
    def outside(self) -> str:
        return str(ipaddress.ip_network(self.outside_subnet)[10])

    @property
    def host_link(self) -> str:
        """The operator side's interface (15 characters at most, unique per cluster)."""
        return "ckop" + hashlib.sha1(self.cluster.encode()).hexdigest()[:8]

    def address_of(self, node: str) -> str:
        if node == "worker" or re.fullmatch(r"worker-[1-9][0-9]*", node):
            return self.worker_address(_worker_index(node))
        return {"master": self.master, "outside": self.outside}[node]

    @property
    def addresses(self) -> dict[str, str]:
        """Every address of the rehearsal, by what holds it."""
        return {
            "master": self.master,
            **{name: self.address_of(name) for name in self.worker_names},
            "outside": self.outside,
            "router (public subnet)": self.router_public,
            "router (private subnet)": self.router_private,
            "router (outside)": self.router_outside_ip,
            "router (operator link)": self.router_operator_ip,
            "this shell (operator link)": self.operator_ip,
        }

    @property
    def guarded_ranges(self) -> list[str]:
        """The ranges this shell must never route off the machine: every range the rehearsal
        uses but the operator link (which is this shell's own link to the router)."""
        used = [self.vpc, self.public_subnet, self.private_subnet, self.outside_subnet]
        networks = [ipaddress.IPv4Network(cidr) for cidr in used]
        return [str(n) for n in ipaddress.collapse_addresses(networks)]

    @property
    def route_metric(self) -> int:
        """The metric of this rehearsal's unreachable routes: its own, so that two rehearsals
        over the same ranges each hold (and remove) their own route."""
        return 1_000_000 + int(hashlib.sha1(self.cluster.encode()).hexdigest()[:5], 16)


def _worker_index(name: str) -> int:
    return 1 if name == "worker" else int(name.rsplit("-", 1)[1])


def existing_workers(cluster: str) -> list[str]:
    """The worker names of ``cluster`` that have a namespace, in order."""
    pattern = re.compile(rf"^ck-{re.escape(cluster)}-worker-(\d+)$")
    found = [int(m.group(1)) for ns in existing_namespaces() if (m := pattern.match(ns))]
    return [worker_name(i) for i in sorted(found)]


def _prefix(cidr: str) -> int:
    return ipaddress.ip_network(cidr).prefixlen


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    """Run one command (an argv, never a shell string); RehearsalError names it on failure."""
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise RehearsalError(
            f"`{' '.join(argv)}` failed ({proc.returncode}): {message[-1] if message else ''}"
        )
    return proc.stdout


def in_ns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]


def existing_namespaces() -> set[str]:
    out = run(["ip", "netns", "list"], check=False)
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def build(layout: Layout) -> None:
    """Create the namespaces, links, addresses and route tables of ``layout``."""
    if os.geteuid() != 0:
        raise RehearsalError(
            "the netns rehearsal needs root (network namespaces): run it as root, or use "
            "the local provider"
        )
    present = existing_namespaces() & set(layout.namespaces)
    if present:
        raise RehearsalError(
            f"namespaces {', '.join(sorted(present))} already exist: take the rehearsal "
            f"down first (`clusterkit down --cluster {layout.cluster}`)"
        )
    try:
        _build(layout)
    except BaseException:
        destroy(layout)
        raise


def _build(layout: Layout) -> None:
    L = layout
    master, router, outside = (L.ns(r) for r in ROLES)
    for namespace in (master, router, outside):
        run(["ip", "netns", "add", namespace])
        run(["ip", "-n", namespace, "link", "set", "lo", "up"])
    # links: each created inside the router with its peer moved to the other side
    links = [("pub", master, "eth0"), ("out", outside, "eth0")]
    for local, peer_ns, peer in links:
        run(["ip", "-n", router, "link", "add", local, "type", "veth", "peer", "name", peer,
             "netns", peer_ns])  # fmt: skip
    # the operator's end goes to this process's own namespace (``netns PID``)
    run(["ip", "-n", router, "link", "add", "op", "type", "veth", "peer", "name", L.host_link,
         "netns", str(os.getpid())])  # fmt: skip
    # the private subnet: a bridge in the router, each worker's link a port of it
    run(["ip", "-n", router, "link", "add", "priv", "type", "bridge"])
    addresses = [
        (router, "pub", f"{L.router_public}/{_prefix(L.public_subnet)}"),
        (router, "priv", f"{L.router_private}/{_prefix(L.private_subnet)}"),
        (router, "out", f"{L.router_outside_ip}/{_prefix(L.outside_subnet)}"),
        (router, "op", f"{L.router_operator_ip}/{_prefix(L.operator_link)}"),
        (master, "eth0", f"{L.master}/{_prefix(L.public_subnet)}"),
        (outside, "eth0", f"{L.outside}/{_prefix(L.outside_subnet)}"),
    ]
    for namespace, device, cidr in addresses:
        run(["ip", "-n", namespace, "addr", "add", cidr, "dev", device])
        run(["ip", "-n", namespace, "link", "set", device, "up"])
    run(["ip", "addr", "add", f"{L.operator_ip}/{_prefix(L.operator_link)}", "dev", L.host_link])
    run(["ip", "link", "set", L.host_link, "up"])
    # each subnet's gateway is the router; the workers' default route is the AWS one
    run(["ip", "-n", master, "route", "add", "default", "via", L.router_public])
    for index in range(1, L.workers + 1):
        _link_worker(L, index)
    run(["ip", "-n", outside, "route", "add", "default", "via", L.router_outside_ip])
    # the operator side reaches the master's address and nothing else of the cluster: the
    # rest of the rehearsal's ranges is refused here, never sent out by the default route
    run(["ip", "route", "add", f"{L.master}/32", "via", L.router_operator_ip])
    for cidr in L.guarded_ranges:
        run(["ip", "route", "add", *_unreachable(L, cidr)])
    # the router: forwards, never redirects, and keeps the route tables of the VPC
    for key in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
        run(in_ns(router, "sysctl", "-q", "-w", key))
    table = str(PRIVATE_TABLE)
    run(["ip", "-n", router, "route", "add", L.public_subnet, "dev", "pub", "table", table])
    run(["ip", "-n", router, "route", "add", L.private_subnet, "dev", "priv", "table", table])
    run(["ip", "-n", router, "route", "add", "default", "via", L.master, "table", table])
    run(["ip", "-n", router, "rule", "add", "from", L.private_subnet, "lookup", table,
         "priority", "200"])  # fmt: skip
    # private addresses are not routable from the internet or the operator's side
    for device in ("op", "out"):
        run(["ip", "-n", router, "rule", "add", "iif", device, "to", L.private_subnet,
             "prohibit", "priority", "100"])  # fmt: skip


def _link_worker(layout: Layout, index: int) -> None:
    """Worker ``index``'s namespace, its link to the private subnet's bridge, its address and
    its default route (through the router, whose private table sends it to the master)."""
    L = layout
    worker, router, port = L.ns(worker_name(index)), L.ns("router"), f"pw{index}"
    run(["ip", "netns", "add", worker])
    run(["ip", "-n", worker, "link", "set", "lo", "up"])
    run(["ip", "-n", router, "link", "add", port, "type", "veth", "peer", "name", "eth0",
         "netns", worker])  # fmt: skip
    run(["ip", "-n", router, "link", "set", port, "master", "priv"])
    run(["ip", "-n", router, "link", "set", port, "up"])
    cidr = f"{L.worker_address(index)}/{_prefix(L.private_subnet)}"
    run(["ip", "-n", worker, "addr", "add", cidr, "dev", "eth0"])
    run(["ip", "-n", worker, "link", "set", "eth0", "up"])
    run(["ip", "-n", worker, "route", "add", "default", "via", L.router_private])


def add_worker(layout: Layout, index: int) -> None:
    """Give a built topology worker ``index`` (its namespace must not exist); on failure what
    it made is removed and RehearsalError names the command."""
    namespace = layout.ns(worker_name(index))
    if namespace in existing_namespaces():
        raise RehearsalError(f"namespace {namespace} already exists")
    try:
        _link_worker(layout, index)
    except BaseException:
        remove_worker(layout, worker_name(index))
        raise
    _forget_neighbour(layout, layout.worker_address(index))


def _forget_neighbour(layout: Layout, address: str) -> None:
    """Drop what the router and the other workers remember of ``address``'s link-layer
    address: a worker made again at the address of one removed has a new MAC, and the stale
    entry would black-hole its first packets for up to a minute."""
    for namespace in (layout.ns("router"), *(layout.ns(n) for n in existing_workers(
            layout.cluster))):  # fmt: skip
        run(["ip", "-n", namespace, "neigh", "flush", "to", address], check=False)


def remove_worker(layout: Layout, name: str) -> list[str]:
    """End the processes of worker ``name``'s namespace and remove it (its link to the
    bridge goes with it); idempotent. Returns what was removed."""
    namespace = layout.ns(name)
    if namespace not in existing_namespaces():
        return []
    _delete_namespace(namespace)
    _forget_neighbour(layout, layout.address_of(name))
    return [f"namespace {namespace}"]


def _delete_namespace(namespace: str) -> None:
    """End every process of ``namespace``, then delete it; RehearsalError naming the pids
    that did not end."""
    left = _end_processes(namespace)
    if left:
        raise RehearsalError(
            f"processes {left} in namespace {namespace} did not end; stop them, then "
            f"`ip netns del {namespace}`"
        )
    run(["ip", "netns", "del", namespace])


def _unreachable(layout: Layout, cidr: str) -> list[str]:
    return ["unreachable", cidr, "metric", str(layout.route_metric)]


def route_of(address: str) -> str:
    """What this shell's kernel would do with a packet to ``address`` (``ip -4 route get``):
    its route line, ``unreachable`` when the route table refuses it (unreachable or prohibit
    routes), ``blackhole`` when it drops it silently. Sends nothing."""
    proc = subprocess.run(["ip", "-4", "route", "get", address], capture_output=True,
                          text=True, timeout=10)  # fmt: skip
    if proc.returncode != 0:
        refused = ("No route to host", "Network is unreachable", "Permission denied")
        if any(word in proc.stderr for word in refused):
            return "unreachable"
        if "Invalid argument" in proc.stderr:
            return "blackhole"
        raise RehearsalError(f"`ip -4 route get {address}` failed: {proc.stderr.strip()}")
    return proc.stdout.splitlines()[0].strip()


def _device(route: str) -> str | None:
    words = route.split()
    return words[words.index("dev") + 1] if "dev" in words else None


def verify_routes(layout: Layout) -> None:
    """Check that this shell sends nothing of the rehearsal off the machine: the master's
    address (and the router's end of the operator link) go through the rehearsal's own link
    and no other device (the default route's included); every other rehearsal address, and
    the first and last of each guarded range, are unreachable. Sends nothing (route lookups
    only); raises RehearsalError naming each address that is not."""
    L = layout
    wrong = []
    linked = {"master": L.master, "router (operator link)": L.router_operator_ip}
    for what, address in L.addresses.items():
        if what == "this shell (operator link)":
            continue  # this shell's own address
        route = route_of(address)
        if what in linked:
            if _device(route) != L.host_link:
                wrong.append(f"{what} {address} goes `{route}`, not through {L.host_link}")
        elif route != "unreachable":
            wrong.append(f"{what} {address} goes `{route}`, not unreachable")
    for cidr in L.guarded_ranges:
        network = ipaddress.ip_network(cidr)
        for address in (str(network[1]), str(network[-2])):
            if address != L.master and (route := route_of(address)) != "unreachable":
                wrong.append(f"{address} (in {cidr}) goes `{route}`, not unreachable")
    if wrong:
        raise RehearsalError(
            f"rehearsal {L.cluster}: this machine's route table would send rehearsal traffic "
            f"off the machine: {'; '.join(wrong)}. Check `ip route` for a route more specific "
            f"than the rehearsal's ranges ({', '.join(L.guarded_ranges)}), or take the "
            f"rehearsal down and up again"
        )


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _end_processes(namespace: str, *, grace_s: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL, every process in ``namespace``; the pids still alive after."""
    pids = [int(p) for p in run(["ip", "netns", "pids", namespace], check=False).split()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        pids = [p for p in pids if _alive(p)]
        if not pids:
            break
    return pids


def destroy(layout: Layout) -> list[str]:
    """Remove the operator link and route and every namespace of ``layout`` (ending their
    processes first); idempotent. Returns what was removed."""
    removed = []
    run(["ip", "route", "del", f"{layout.master}/32"], check=False)
    for cidr in layout.guarded_ranges:  # this rehearsal's own; another's stays
        if run(["ip", "route", "show", "exact", cidr, "metric", str(layout.route_metric)],
               check=False).strip():  # fmt: skip
            run(["ip", "route", "del", *_unreachable(layout, cidr)])
            removed.append(f"route unreachable {cidr}")
    if run(["ip", "link", "show", layout.host_link], check=False):
        run(["ip", "link", "del", layout.host_link], check=False)
        removed.append(f"link {layout.host_link}")
    present = existing_namespaces()
    workers = [layout.ns(name) for name in existing_workers(layout.cluster)]  # all, however many
    older = layout.ns("worker")  # the one worker of a rehearsal made before they were numbered
    for namespace in dict.fromkeys([*layout.namespaces, *workers, older]):
        if namespace in present:
            _delete_namespace(namespace)
            removed.append(f"namespace {namespace}")
    return removed
