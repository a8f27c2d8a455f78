"""The rehearsal's nodes: machines made of namespaces, reached over SSH like cloud instances.

A node is its network namespace (:mod:`clusterkit.providers.netns.topology`) plus mount, UTS and
PID namespaces of its own (``unshare``), a copy-on-write root (overlayfs over this machine's
``/``: what the host has installed is there, what the node installs stays in its ``upper``
folder) and an sshd chrooted into that root, listening on the node's address only. Its
hostname is the node's name. Mounts live in the node's private mount namespace, so they end
with it; its processes end when :func:`topology.destroy` ends the namespace's processes.

Before a node starts, :func:`prepare` writes into its upper folder what a cloud image would
have on first boot: fresh SSH host keys, the operator's key authorized for root, no DNS
resolver (the rehearsal has no DNS; lookups then fail at once instead of timing out), and
docker-systemctl-replacement as ``systemctl`` (a node has no systemd; this one starts, stops
and enables the playbooks' units from their unit files, and keeps their output for its
``journalctl -u``; it has no timers, so the idle guard's unit passes in a loop there).

Run as ``python -m clusterkit.providers.netns.nodes init NAME ADDRESS FOLDER [SHARED ...]`` inside
the node's namespaces, this module is the node's first process: it mounts the root, binds
each SHARED folder of the host at the same path (the rehearsal's storage, which stands for
HDFS), and execs sshd.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clusterkit.providers.netns.topology import Layout, RehearsalError, in_ns, run

__all__ = [
    "Node",
    "init",
    "known_hosts_file",
    "node",
    "nodes_dir",
    "prepare",
    "start",
    "write_known_hosts",
]

SSHD = "/usr/sbin/sshd"
START_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Node:
    name: str  # master | worker-1 ... worker-N
    address: str
    folder: Path  # upper/, work/, root/ and the node's log

    @property
    def upper(self) -> Path:
        return self.folder / "upper"

    @property
    def log(self) -> Path:
        return self.folder / "node.log"


def nodes_dir(state_dir: Path) -> Path:
    """Where a cluster's nodes keep their roots (one folder each)."""
    return state_dir / "nodes"


def known_hosts_file(state_dir: Path) -> Path:
    """The nodes' host keys, as :func:`write_known_hosts` writes them."""
    return state_dir / "known_hosts"


def node(layout: Layout, name: str, state_dir: Path) -> Node:
    return Node(name, layout.address_of(name), nodes_dir(state_dir) / name)


def prepare(target: Node, *, authorized_key: str) -> None:
    """Write the node's first-boot files into its upper folder (idempotent; keeps host keys)."""
    if not Path(SSHD).exists():
        raise RehearsalError(
            f"{SSHD} is missing: install openssh-server (apt-get install -y openssh-server)"
        )
    ssh_dir = target.upper / "etc" / "ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    for kind in ("ed25519", "rsa"):
        key = ssh_dir / f"ssh_host_{kind}_key"
        if not key.exists():
            # this node's own host keys, not the machine's (a copy would make nodes alike)
            run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", target.name, "-f", str(key)])
    root_ssh = target.upper / "root" / ".ssh"
    root_ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(root_ssh, 0o700)
    authorized = root_ssh / "authorized_keys"
    authorized.write_text(authorized_key.strip() + "\n")
    os.chmod(authorized, 0o600)
    _fresh_root_shell(target.upper / "root")
    (target.upper / "etc" / "hostname").write_text(target.name + "\n")
    (target.upper / "etc" / "resolv.conf").write_text("# the rehearsal has no DNS\n")
    (target.upper / "run" / "sshd").mkdir(parents=True, exist_ok=True)
    bin_dir = target.upper / "usr" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    # its journalctl (-u UNIT) runs "systemctl3.py log UNIT" from its own folder
    for name, source in (("systemctl", "systemctl3.py"), ("systemctl3.py", "systemctl3.py"),
                         ("journalctl", "journalctl3.py")):  # fmt: skip
        shutil.copyfile(_systemctl_replacement(source), bin_dir / name)
        os.chmod(bin_dir / name, 0o755)


#: root's shell start-up files on a fresh Debian machine (its /etc/skel), for the nodes
SKEL = Path("/etc/skel")


def _fresh_root_shell(root_home: Path) -> None:
    """Give the node root's ``.bashrc`` and ``.profile`` as on a fresh machine, not this
    machine's: here they run ``pyenv init``, whose ``pyenv rehash`` takes a lock file in
    ``~/.pyenv/shims``; an SSH session ended in the middle of it (the tests end some on
    purpose) left the lock behind, and from then on every shell on that node waited 60 s for
    it before running its command."""
    for name in (".bashrc", ".profile"):
        skel = SKEL / name
        (root_home / name).write_text(skel.read_text() if skel.exists() else "")


def _systemctl_replacement(name: str = "systemctl3.py") -> Path:
    """A file of docker-systemctl-replacement (standard library only): its one-file
    systemctl, or its journalctl."""
    from importlib.resources import files

    return Path(str(files("systemctl2") / name))


def start(layout: Layout, target: Node, *, shared: Sequence[Path] = ()) -> int:
    """Start the node (its namespaces, root and sshd) detached; return once sshd listens.

    ``shared``: folders of this machine the node sees at the same path, read and written
    through (the rehearsal's storage). Returns the pid of the node's first process.
    """
    target.folder.mkdir(parents=True, exist_ok=True)
    argv = in_ns(
        layout.ns(target.name),
        "unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private",
        sys.executable, "-m", "clusterkit.providers.netns.nodes", "init",
        target.name, target.address, str(target.folder), *(str(p) for p in shared),
    )  # fmt: skip
    with open(target.log, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + START_TIMEOUT_S
    listening = in_ns(layout.ns(target.name), "ss", "-Hltn", f"src {target.address}:22")
    while not run(listening, check=False).strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = target.log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RehearsalError(
                f"node {target.name}: sshd did not start on {target.address}:22; "
                f"{target.log} ends: {' | '.join(tail)}"
            )
        time.sleep(0.1)
    return proc.pid


def init(name: str, address: str, folder: str, *shared: str) -> None:
    """The node's first process: mount its root and the shared folders, then become its sshd
    (never returns). /tmp is the overlay's too: what the host keeps there is seen, what the
    node writes there stays in the node."""
    base = Path(folder)
    root = base / "root"
    for sub in ("upper", "work", "root"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    shutil.rmtree(base / "work" / "work", ignore_errors=True)  # overlayfs' own, per mount
    subprocess.run(["hostname", name], check=True)
    options = f"lowerdir=/,upperdir={base / 'upper'},workdir={base / 'work'}"
    mounts = [
        ["mount", "-t", "overlay", "overlay", "-o", options, str(root)],
        ["mount", "-t", "proc", "proc", str(root / "proc")],
        ["mount", "-t", "sysfs", "sysfs", str(root / "sys")],
        ["mount", "--rbind", "/dev", str(root / "dev")],
    ]
    for argv in mounts:
        subprocess.run(argv, check=True)
    for path in shared:  # inside the mounted root, where the host's folder already shows
        (root / path.lstrip("/")).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", path, str(root / path.lstrip("/"))], check=True)
    os.chroot(root)
    os.chdir("/")
    os.execv(SSHD, [SSHD, "-D", "-e", "-o", f"ListenAddress={address}",
                    "-o", "PidFile=/run/sshd.pid"])  # fmt: skip


def write_known_hosts(layout: Layout, state_dir: Path) -> Path:
    """A known_hosts file of ``layout``'s nodes' own host keys (the kit made them, so it knows
    them)."""
    lines = []
    for name in layout.node_names:
        target = node(layout, name, state_dir)
        kind, key = (target.upper / "etc/ssh/ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{target.address} {kind} {key}")
    path = known_hosts_file(state_dir)
    path.write_text("\n".join(lines) + "\n")
    return path


#: What each rehearsal node is given to budget from: a t2.large's memory, as on AWS (the
#: nodes share this machine, whose whole memory each would otherwise assume).
NODE_MEMORY_MB = 8192


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "init":
        raise SystemExit(
            "usage: python -m clusterkit.providers.netns.nodes init NAME ADDRESS FOLDER "
            "[SHARED ...]"
        )
    init(*sys.argv[2:])
