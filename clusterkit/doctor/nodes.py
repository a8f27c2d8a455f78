"""A remote cluster's nodes (the rehearsal's and AWS's, while up): each answers over SSH with
the host key the kit pinned (``ssh``), keeps this machine's time (``clock``) and runs the
control side's Python (``pythons``).

The SSH probe is shared by every node check (:func:`probe`, made once per doctor run): each
node is tried once through a runner the provider hands out for the probe alone, the jump
hosts first and then the nodes behind them, each group at once and given at most
:data:`PROBE_TIMEOUT_S` (a node that hangs, or never answers, is given up on then; its
thread is left to end on its own, holding none of the cluster's runners). The other checks
act on the nodes that answered, through the cluster's runners, and say which they skipped.

Each check is a reading (``read_*``, from the :class:`~clusterkit.doctor.target.Target`) and
a judgement (``judge_*``, pure).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from clusterkit.core.errors import ClusterkitError, NodeUnreachable
from clusterkit.core.inventory import Node
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target

#: How long the probe waits for each group of nodes (the jump hosts, then those behind them):
#: a node that answers does within a second or two, even through its jump host.
PROBE_TIMEOUT_S = 8.0

# -- the SSH probe ----------------------------------------------------------------------------

#: What kept a node from answering.
TIMEOUT, BEHIND, ERROR = "timeout", "behind", "error"
HOST_KEY_CHANGED, HOST_KEY_UNKNOWN, KEY_REFUSED = (
    "host-key-changed",
    "host-key-unknown",
    "key-refused",
)


@dataclass(frozen=True)
class Reach:
    """One node as the probe found it: where SSH reaches it (``address``, through ``via``,
    its jump host's name), whether it ``answered`` and in how many ``seconds``; else the
    ``problem`` (one of the constants above) and ``why`` in words."""

    node: str
    address: str
    via: str | None = None
    answered: bool = False
    seconds: float = 0.0
    problem: str = ""
    why: str = ""


@dataclass(frozen=True)
class SshReading:
    """Every node's :class:`Reach`, in inventory order, and what the findings name: the
    cluster, its provider, its state folder, its known_hosts file and key, and the time each
    group of nodes was given."""

    cluster: str
    provider: str
    state_dir: str
    known_hosts: str
    key: str
    nodes: list[Reach]
    timeout_s: float = PROBE_TIMEOUT_S

    def answered(self) -> list[str]:
        """The nodes that answered, in inventory order."""
        return [r.node for r in self.nodes if r.answered]

    def silent(self) -> list[str]:
        """The nodes that did not."""
        return [r.node for r in self.nodes if not r.answered]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def classify(exc: BaseException) -> tuple[str, str]:
    """(problem, why) of a probe that raised, from the error and its causes: a host key not
    the pinned one (paramiko's BadHostKeyException), none pinned (its RejectPolicy), the
    cluster's key refused, or another error (its message)."""
    from paramiko import AuthenticationException, BadHostKeyException, SSHException

    for cause in _causes(exc):
        if isinstance(cause, BadHostKeyException):
            got, pinned = cause.key, cause.expected_key
            return HOST_KEY_CHANGED, (f"it presented {got.get_name()} {got.fingerprint}, pinned "
                                      f"{pinned.get_name()} {pinned.fingerprint}")  # fmt: skip
        if isinstance(cause, AuthenticationException):
            return KEY_REFUSED, str(cause) or "authentication failed"
        if isinstance(cause, SSHException) and "not found in known_hosts" in str(cause):
            return HOST_KEY_UNKNOWN, str(cause)
    return ERROR, str(exc) or type(exc).__name__


def _try(target: Target, node: Node, timeout_s: float) -> Reach:
    """``true`` on ``node`` through a runner of its own, closed after."""
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    state = cluster.state
    via = state.inventory.jump_node(node)
    reach = Reach(node.name, node.ssh_host or node.address, via.name if via else node.jump_host)
    runner = cluster.provider.runner(state.inventory, node, state.ssh)
    t0 = time.monotonic()
    try:
        runner.run(["true"], timeout=timeout_s)
    except (NodeUnreachable, OSError, EOFError) as exc:
        problem, why = classify(exc)
        return Reach(reach.node, reach.address, reach.via, False, 0.0, problem, why)
    except ClusterkitError:
        pass  # the node's shell answered: `true` failing there is not SSH's business
    finally:
        runner.close()
    return Reach(reach.node, reach.address, reach.via, True, round(time.monotonic() - t0, 2))


def _try_all(target: Target, nodes: list[Node], timeout_s: float) -> dict[str, Reach]:
    """Every node of ``nodes`` tried at once; those that have not answered after
    ``timeout_s`` are given up on (their threads end on their own)."""
    found: dict[str, Reach] = {}

    def _via(node: Node) -> str | None:  # the jump node by name where the inventory knows it
        jump = target.state.inventory.jump_node(node) if target.state else None
        return jump.name if jump else node.jump_host

    def one(node: Node) -> None:
        try:
            found[node.name] = _try(target, node, timeout_s)
        except Exception as exc:  # what the runner did not expect: said, not lost to the thread
            found[node.name] = Reach(node.name, node.ssh_host or node.address, _via(node),
                                     problem=ERROR, why=f"{type(exc).__name__}: {exc}")  # fmt: skip

    threads = [threading.Thread(target=one, args=(n,), daemon=True, name=f"doctor-ssh-{n.name}")
               for n in nodes]  # fmt: skip
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for node in nodes:
        if node.name not in found:
            via = f" through {_via(node)}" if node.jump_host else ""
            found[node.name] = Reach(node.name, node.ssh_host or node.address, _via(node),
                                     problem=TIMEOUT, why=f"no answer{via} within "
                                                          f"{timeout_s:g} s")  # fmt: skip
    return dict(found)


def read_ssh(target: Target, *, timeout_s: float = PROBE_TIMEOUT_S) -> SshReading:
    """Each node tried: the jump hosts, then the nodes behind those that answered (the others
    are not tried: ``behind``)."""
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    state, ssh = cluster.state, cluster.state.ssh
    assert ssh is not None  # a remote cluster's state records its SSH settings
    nodes = list(state.inventory.nodes)
    first = _try_all(target, [n for n in nodes if n.jump_host is None], timeout_s)
    answered = {n.ssh_host or n.address for n in nodes if n.name in first
                and first[n.name].answered}  # fmt: skip
    behind = [n for n in nodes if n.jump_host is not None]
    second = _try_all(target, [n for n in behind if n.jump_host in answered], timeout_s)
    for node in behind:
        if node.name not in second:
            jump = state.inventory.jump_node(node)
            name = jump.name if jump else str(node.jump_host)
            second[node.name] = Reach(node.name, node.ssh_host or node.address, name,
                                      problem=BEHIND, why=f"its jump host {name} does not "
                                                          "answer")  # fmt: skip
    found = first | second
    return SshReading(state.name, state.provider, str(cluster.paths.root),
                      str(ssh.known_hosts), str(ssh.key),
                      [found[n.name] for n in nodes], timeout_s)  # fmt: skip


def probe(target: Target) -> SshReading:
    """The SSH probe of this doctor run (:func:`read_ssh`), made once and shared."""
    return target.shared("ssh", lambda: read_ssh(target))


def judge_ssh(reading: SshReading) -> list[Finding]:
    """Per node that did not answer: its host key not the pinned one, or none pinned: FAIL
    (node-unreachable, naming the node and the known_hosts file, the runbook's KNOWN_HOSTS);
    the cluster's key refused: FAIL (lost-token-or-key, the key its FILE); no answer within
    the probe's time, another error, or its jump host silent: FAIL (node-unreachable). The
    runbook's variables: CLUSTER, PROVIDER, NODE, ADDRESS, STATE_DIR. One OK line otherwise."""
    found = []
    base = {"CLUSTER": reading.cluster, "PROVIDER": reading.provider,
            "STATE_DIR": reading.state_dir}  # fmt: skip
    for r in reading.nodes:
        if r.answered:
            continue
        where = f"{r.node} ({r.address}{f' through {r.via}' if r.via else ''})"
        data = {**base, "NODE": r.node, "ADDRESS": r.address}
        if r.problem in (HOST_KEY_CHANGED, HOST_KEY_UNKNOWN):
            said = (f"its host key is not the one pinned in {reading.known_hosts} ({r.why})"
                    if r.problem == HOST_KEY_CHANGED else
                    f"no host key is pinned for it in {reading.known_hosts}")  # fmt: skip
            found.append(fail("ssh", f"{where}: {said}: refused, nothing trusted",
                              "node-unreachable", "a node made again has new keys; else "
                              "someone may be in between: the runbook says how to tell",
                              {**data, "KNOWN_HOSTS": reading.known_hosts}))  # fmt: skip
        elif r.problem == KEY_REFUSED:
            saw = f"{where} refused the cluster's key {reading.key} ({r.why})"
            key = {"FILE": reading.key, "STATE_DIR": reading.state_dir}
            found.append(fail("ssh", saw, "lost-token-or-key", data=key))
        else:
            why = (f"did not answer SSH within {reading.timeout_s:g} s" if r.problem == TIMEOUT
                   else f"was not tried: {r.why}" if r.problem == BEHIND
                   else f"did not answer SSH: {r.why}")  # fmt: skip
            fix = ("on AWS after a network change, `clusterkit allow-ip`; else the runbook "
                   "brings the node back" if r.via is None else
                   "the runbook brings the node back")  # fmt: skip
            found.append(fail("ssh", f"{where} {why}", "node-unreachable", fix, data))
    if found:
        return found
    said = ", ".join(f"{r.node} {r.seconds:.1f} s" for r in reading.nodes)
    return [ok("ssh", f"{len(reading.nodes)} nodes answer with their pinned host keys "
                      f"({reading.known_hosts}): {said}")]  # fmt: skip


def skipped_line(check: str, skipped: list[str]) -> list[Finding]:
    """The WARN of a check that left out the nodes that do not answer SSH (the ``ssh``
    check's FAIL names them and their runbook)."""
    if not skipped:
        return []
    saw = f"{', '.join(skipped)} not checked: no SSH (see the ssh check)"
    return [warn(check, saw, "node-unreachable")]


# -- clock ------------------------------------------------------------------------------------

#: How far a node's clock may be from this machine's: WARN beyond, FAIL beyond the second.
CLOCK_WARN_S, CLOCK_FAIL_S = 2.0, 30.0
CLOCK_WHY = ("runs, logs and the idle guard are stamped by the nodes' clocks and read against "
             "this one; AWS refuses a request signed 5 minutes off")  # fmt: skip


@dataclass(frozen=True)
class ClockSample:
    """One node's clock: how far ahead of this machine's (seconds; negative: behind) within
    ``error_s`` (half the round trip it was read in), or ``why`` it could not be read."""

    node: str
    offset_s: float | None
    error_s: float = 0.0
    why: str = ""
    unreachable: bool = False  # the node stopped answering SSH (else it printed no time)


@dataclass(frozen=True)
class ClockReading:
    samples: list[ClockSample]
    skipped: list[str] = field(default_factory=list)
    cluster: str = ""


def clock_sample(node: str, read: tuple[float, str, float]) -> ClockSample:
    """A sample from (this machine's time before, the node's ``date +%s.%N``, after): the node
    against the middle of the round trip."""
    before, said, after = read
    try:
        there = float(said.strip())
    except ValueError:
        return ClockSample(node, None, why=f"`date +%s.%N` printed {said.strip()[:40]!r}")
    return ClockSample(node, round(there - (before + after) / 2, 3), round((after - before) / 2, 3))


def read_clock(target: Target) -> ClockReading:
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    reading = probe(target)
    samples = []
    for name in reading.answered():
        runner = cluster.runner(name)
        try:
            runner.run(["true"], timeout=10)  # connected first: the sample is one round trip
            before = time.time()
            said = runner.run(["date", "+%s.%N"], timeout=10).stdout
            after = time.time()
        except ClusterkitError as exc:
            lost = isinstance(exc, NodeUnreachable)
            samples.append(ClockSample(name, None, why=str(exc), unreachable=lost))
            continue
        samples.append(clock_sample(name, (before, said, after)))
    return ClockReading(samples, reading.silent(), reading.cluster)


def judge_clock(reading: ClockReading) -> list[Finding]:
    """Per node: more than :data:`CLOCK_FAIL_S` from this machine's clock: FAIL, more than
    :data:`CLOCK_WARN_S`: WARN (clock-skew, the node its NODE), saying why it matters; not
    read: WARN (node-unreachable when SSH went, else clock-skew). The nodes the probe did not
    reach: WARN (node-unreachable). One OK line otherwise."""
    found, fine = [], []
    for s in reading.samples:
        if s.offset_s is None:
            runbook = "node-unreachable" if s.unreachable else "clock-skew"
            found.append(warn("clock", f"{s.node}: its clock could not be read ({s.why})", runbook))
            continue
        off = abs(s.offset_s)
        side = "ahead of" if s.offset_s > 0 else "behind"
        saw = f"{s.node}'s clock is {off:.1f} s {side} this machine's"
        data = {"CLUSTER": reading.cluster, "NODE": s.node}
        fix = "set the clock right where it is wrong: the runbook"
        if off > CLOCK_FAIL_S:
            found.append(fail("clock", f"{saw} (over {CLOCK_FAIL_S:g} s: {CLOCK_WHY})",
                              "clock-skew", fix, data))  # fmt: skip
        elif off > CLOCK_WARN_S:
            found.append(warn("clock", f"{saw} (over {CLOCK_WARN_S:g} s: {CLOCK_WHY})",
                              "clock-skew", fix, data))  # fmt: skip
        else:
            fine.append(f"{s.node} {s.offset_s:+.2f} s")
    found += skipped_line("clock", reading.skipped)
    if found:
        return found
    spread = max((s.error_s for s in reading.samples), default=0.0)
    return [ok("clock", f"{', '.join(fine) or 'no node'} against this machine "
                        f"(±{spread:.2f} s; WARN over {CLOCK_WARN_S:g} s)")]  # fmt: skip


# -- the nodes' Python ------------------------------------------------------------------------

_VERSION = "import sys; print('.'.join(map(str, sys.version_info[:3])))"


@dataclass(frozen=True)
class NodePython:
    """The version the kit's Python on a node prints (``3.11.9``), or ``why`` it did not:
    it ran and failed (``ran``), or the command could not be run at all (SSH went)."""

    node: str
    version: str | None
    why: str = ""
    ran: bool = True


@dataclass(frozen=True)
class PythonsReading:
    """This machine's Python version, the nodes' interpreter (the playbooks' virtual
    environment) and what each node's printed; the nodes not reached; the cluster and its
    state folder (the runbook's)."""

    here: str
    python: str
    nodes: list[NodePython]
    skipped: list[str] = field(default_factory=list)
    cluster: str = ""
    state_dir: str = ""


def read_pythons(target: Target) -> PythonsReading:
    cluster = target.cluster
    assert cluster is not None  # a check of an up cluster
    reading = probe(target)
    python = cluster.state.node_python
    found = []
    for name in reading.answered():
        try:
            result = cluster.runner(name).run([python, "-c", _VERSION], timeout=30, check=False)
        except ClusterkitError as exc:
            found.append(NodePython(name, None, str(exc), ran=False))
            continue
        if result.exit_code == 0 and result.stdout.strip():
            found.append(NodePython(name, result.stdout.strip().splitlines()[-1]))
        else:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:]
            found.append(NodePython(name, None, f"exit {result.exit_code}"
                                                f"{': ' + tail[0] if tail else ''}"))  # fmt: skip
    here = ".".join(map(str, sys.version_info[:3]))
    return PythonsReading(here, python, found, reading.silent(), reading.cluster,
                          reading.state_dir)  # fmt: skip


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def judge_pythons(reading: PythonsReading) -> list[Finding]:
    """The kit's Python missing on a node, another minor version than this machine's (the
    python role refuses it), or the nodes' patch versions not one (Ray refuses a node whose
    Python differs from the head's, to the patch): FAIL (provisioning-failed, the node its
    NODE). Nodes not reached, or whose command could not run: WARN. OK otherwise, saying
    when this machine's patch version is another (Ray would refuse a driver started here;
    the kit's run on the master)."""
    found = []
    data = {"CLUSTER": reading.cluster, "STATE_DIR": reading.state_dir}
    versions = {n.node: n.version for n in reading.nodes if n.version}
    for n in reading.nodes:
        if n.version is None and not n.ran:
            found.append(warn("pythons", f"{n.node}: not checked ({n.why})", "node-unreachable"))
        elif n.version is None:
            found.append(fail("pythons", f"{n.node}: the kit's Python {reading.python} does not "
                                         f"run ({n.why})", "provisioning-failed",
                              "`clusterkit provision` installs it (the python role)",
                              {**data, "NODE": n.node}))  # fmt: skip
        elif _minor(n.version) != _minor(reading.here):
            saw = (f"{n.node} runs Python {n.version}, this machine {reading.here}: Ray needs "
                   "one minor version on every node and here")  # fmt: skip
            fix = (f"run the kit with Python {_minor(n.version)} here, or bring the cluster up "
                   "again from this one")  # fmt: skip
            found.append(fail("pythons", saw, "provisioning-failed", fix, {**data, "NODE": n.node}))
    patches = sorted(set(versions.values()))
    if not found and len(patches) > 1:
        named = "; ".join(f"{v} on {', '.join(k for k, w in versions.items() if w == v)}"
                          for v in patches)  # fmt: skip
        head = next(iter(versions.values()))  # the first node's: the master's when it answered
        first = next(k for k, v in versions.items() if v != head)
        found.append(fail("pythons", f"the nodes' Pythons differ ({named}): Ray refuses a node "
                                     "whose Python is not the head's, to the patch version",
                          "provisioning-failed", "make the nodes alike (one image), then "
                          "`clusterkit provision`", {**data, "NODE": first}))  # fmt: skip
    found += skipped_line("pythons", reading.skipped)
    if found:
        return found
    if not versions:
        return [ok("pythons", "no node to check")]
    there = patches[0]
    note = ("as here" if there == reading.here else
            f"here {reading.here}: the same minor version; Ray would refuse a driver started "
            "here, the kit's drivers run on the master")  # fmt: skip
    return [ok("pythons", f"Python {there} on {', '.join(versions)} ({note})")]
