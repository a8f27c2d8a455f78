"""Doctor's checks of a remote cluster's nodes (``clusterkit/doctor/nodes.py`` and
``node_services.py``): each judgement given its readings (OK, WARN and FAIL), the pieces of the
readers that parse what the nodes print, and the SSH probe for real on loopback: a listener
that never speaks is given up on in time, and a paramiko SSH server is answered, or refused
when its host key is not the pinned one or none is pinned (no cluster, no rehearsal)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import paramiko

from clusterkit.cluster import Cluster
from clusterkit.core.errors import NodeUnreachable
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths, ClusterState, Endpoints
from clusterkit.doctor import CHECKS, Finding, Report, nodes, with_drift
from clusterkit.doctor import node_services as ns
from clusterkit.doctor.report import UNSET, shell_vars
from clusterkit.doctor.target import Target
from clusterkit.exec.ssh import ensure_key
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.netns.provider import NetnsProvider
from clusterkit.services.playbooks import PlaybookServices, _Events
from clusterkit.services.units import Unit

T = TypeVar("T")
KNOWN = "/s/known_hosts"


def _one(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def _statuses(found: list[Finding]) -> list[str]:
    return [f.status for f in found]


# -- ssh --------------------------------------------------------------------------------------


def _ssh(*reach: nodes.Reach) -> nodes.SshReading:
    return nodes.SshReading("c", "netns", "/s", KNOWN, "/s/ssh/id_ed25519", list(reach), 8.0)


MASTER = nodes.Reach("master", "10.40.1.10", None, True, 0.21)
WORKER = nodes.Reach("worker-1", "10.40.2.10", "master", True, 0.43)


def test_ssh_every_node_answering_is_one_ok_line():
    found = _one(nodes.judge_ssh(_ssh(MASTER, WORKER)))
    assert found.status == "ok" and KNOWN in found.saw
    assert "master 0.2 s, worker-1 0.4 s" in found.saw


def test_ssh_a_changed_or_unknown_host_key_fails_naming_the_node_and_known_hosts():
    why = "it presented ssh-ed25519 SHA256:new, pinned ssh-ed25519 SHA256:old"
    changed = nodes.Reach("worker-1", "10.40.2.10", "master", problem=nodes.HOST_KEY_CHANGED,
                          why=why)  # fmt: skip
    found = _one(nodes.judge_ssh(_ssh(MASTER, changed)))
    assert found.status == "fail" and found.runbook == "node-unreachable"
    assert found.saw == (f"worker-1 (10.40.2.10 through master): its host key is not the one "
                         f"pinned in {KNOWN} ({why}): refused, nothing trusted")  # fmt: skip
    assert found.data == {"CLUSTER": "c", "PROVIDER": "netns", "STATE_DIR": "/s",
                          "NODE": "worker-1", "ADDRESS": "10.40.2.10",
                          "KNOWN_HOSTS": KNOWN}  # fmt: skip
    unknown = nodes.Reach("master", "10.40.1.10", problem=nodes.HOST_KEY_UNKNOWN, why="x")
    found = nodes.judge_ssh(_ssh(unknown, WORKER))[0]
    assert found.status == "fail" and f"no host key is pinned for it in {KNOWN}" in found.saw


def test_ssh_a_refused_key_fails_naming_the_key():
    refused = nodes.Reach("master", "10.40.1.10", problem=nodes.KEY_REFUSED, why="auth failed")
    found = _one(nodes.judge_ssh(_ssh(refused, WORKER)))
    assert found.status == "fail" and found.runbook == "lost-token-or-key"
    assert found.data == {"FILE": "/s/ssh/id_ed25519", "STATE_DIR": "/s"}


def test_ssh_a_silent_master_fails_first_and_its_workers_say_why_they_were_not_tried():
    silent = nodes.Reach("master", "203.0.113.7", problem=nodes.TIMEOUT, why="no answer")
    behind = nodes.Reach("worker-1", "10.0.2.10", "master", problem=nodes.BEHIND,
                         why="its jump host master does not answer")  # fmt: skip
    first, second = nodes.judge_ssh(_ssh(silent, behind))
    assert _statuses([first, second]) == ["fail", "fail"]
    assert first.saw == "master (203.0.113.7) did not answer SSH within 8 s"
    assert "`clusterkit allow-ip`" in (first.fix or "") and "KNOWN_HOSTS" not in first.data
    assert second.saw.endswith("was not tried: its jump host master does not answer")
    assert first.data["NODE"] == "master" and second.data["NODE"] == "worker-1"
    # the runbook's steps act on the first: the master
    text = shell_vars(Report([first, second], 0.1), "node-unreachable")
    assert text is not None and text.startswith(UNSET) and "NODE=master" in text


def test_classify_reads_the_cause_of_the_runners_error():
    got, expected = paramiko.RSAKey.generate(1024), paramiko.RSAKey.generate(1024)
    bad = paramiko.BadHostKeyException("10.40.2.10", got, expected)
    try:
        raise NodeUnreachable("node worker-1 did not answer over SSH") from bad
    except NodeUnreachable as exc:
        problem, why = nodes.classify(exc)
    assert problem == nodes.HOST_KEY_CHANGED and got.fingerprint in why
    assert why == f"it presented ssh-rsa {got.fingerprint}, pinned ssh-rsa {expected.fingerprint}"
    missing = paramiko.SSHException("Server '10.40.2.10' not found in known_hosts")
    assert nodes.classify(NodeUnreachable("x")) == (nodes.ERROR, "x")
    try:
        raise NodeUnreachable("y") from missing
    except NodeUnreachable as exc:
        assert nodes.classify(exc)[0] == nodes.HOST_KEY_UNKNOWN
    try:
        raise NodeUnreachable("z") from paramiko.AuthenticationException("Authentication failed.")
    except NodeUnreachable as exc:
        assert nodes.classify(exc) == (nodes.KEY_REFUSED, "Authentication failed.")


# -- the probe for real, on loopback ----------------------------------------------------------


class _Sshd(paramiko.ServerInterface):
    """An SSH server that lets any key in and ends every command with exit 0."""

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        return paramiko.common.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.common.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def done() -> None:
            channel.send_exit_status(0)
            channel.close()

        threading.Timer(0.05, done).start()
        return True


def _serve(listener: socket.socket, host_key: paramiko.PKey | None) -> None:
    """Accept connections: with ``host_key``, speak SSH on each; without, say nothing."""
    held = []
    while True:
        try:
            sock, _ = listener.accept()
        except OSError:
            break
        held.append(sock)
        if host_key is not None:
            transport = paramiko.Transport(sock)
            transport.add_server_key(host_key)
            transport.start_server(server=_Sshd())
            held.append(transport)
    for thing in held:
        thing.close()


@contextmanager
def _listener(host_key: paramiko.PKey | None) -> Iterator[int]:
    """A port on 127.0.0.1 whose connections get an SSH server (``host_key``'s) or silence."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    thread = threading.Thread(target=_serve, args=(listener, host_key), daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _target(tmp_path: Path, port: int, known: str) -> Target:
    """An up rehearsal-like cluster of one node, the master, at 127.0.0.1:``port``."""
    paths = ClusterPaths(tmp_path / "c")
    ssh = SshSettings("root", paths.ssh / "id_ed25519", paths.root / "known_hosts")
    ensure_key(ssh.key)
    ssh.known_hosts.write_text(known)
    spec = Spec(name="c", provider="netns")
    master = Node("master", "127.0.0.1", ("master",), ssh_host=f"127.0.0.1:{port}")
    state = ClusterState(name="c", provider="netns", spec=spec, started_at="2026-12-01T10:00:00",
                         state_dir=str(paths.root), storage_root=str(paths.data),
                         inventory=Inventory("c", "netns", (master,)),
                         endpoints=Endpoints.for_spec(spec), node_python=sys.executable,
                         runs_dir="/var/lib/clusterkit/runs", ssh=ssh)  # fmt: skip
    services = PlaybookServices(variables={}, host_variables={})
    cluster = Cluster(state, paths, NetnsProvider(), services)
    return Target(tmp_path, spec, "c", paths, "netns", state, cluster)


def _host_key(folder: Path, name: str) -> paramiko.Ed25519Key:
    ensure_key(folder / name)
    return paramiko.Ed25519Key(filename=str(folder / name))


def test_the_probe_gives_up_on_a_node_that_never_speaks_in_its_time(tmp_path: Path):
    with _listener(None) as port:
        target = _target(tmp_path, port, "")
        t0 = time.monotonic()
        reading = nodes.read_ssh(target, timeout_s=1.5)
        took = time.monotonic() - t0
    reach = _one(reading.nodes)
    assert not reach.answered and reach.problem == nodes.TIMEOUT and took < 3, (reach, took)
    assert _one(nodes.judge_ssh(reading)).saw.startswith(f"master (127.0.0.1:{port}) did not")


def test_the_probe_answered_or_refused_by_the_pinned_host_key(tmp_path: Path):
    key = _host_key(tmp_path, "host")
    other = _host_key(tmp_path, "other")
    with _listener(key) as port:
        pinned, impostor = (f"[127.0.0.1]:{port} {k.get_name()} {k.get_base64()}\n"
                            for k in (key, other))  # fmt: skip
        right = nodes.read_ssh(_target(tmp_path / "a", port, pinned), timeout_s=5)
        wrong = nodes.read_ssh(_target(tmp_path / "b", port, impostor), timeout_s=5)
        none = nodes.read_ssh(_target(tmp_path / "c", port, ""), timeout_s=5)
    assert _one(right.nodes).answered, right
    assert _one(nodes.judge_ssh(right)).status == "ok"
    reach = _one(wrong.nodes)
    assert reach.problem == nodes.HOST_KEY_CHANGED and key.fingerprint in reach.why, reach
    found = _one(nodes.judge_ssh(wrong))
    assert found.status == "fail" and wrong.known_hosts in found.saw
    assert found.data["KNOWN_HOSTS"] == wrong.known_hosts and found.data["NODE"] == "master"
    assert _one(none.nodes).problem == nodes.HOST_KEY_UNKNOWN


def test_the_probe_is_made_once_per_target(tmp_path: Path):
    with _listener(None) as port:
        target = _target(tmp_path, port, "")
        made: list[nodes.SshReading] = []

        def read() -> nodes.SshReading:
            made.append(nodes.read_ssh(target, timeout_s=0.5))
            return made[-1]

        first = target.shared("ssh", read)
        again = nodes.probe(target)
    assert again is first and made == [first]


# -- clock ------------------------------------------------------------------------------------


def _clock(*offsets: float | None, skipped: list[str] | None = None) -> nodes.ClockReading:
    samples = [nodes.ClockSample(f"n{i}", off, 0.01, "" if off is not None else "exit 1")
               for i, off in enumerate(offsets)]  # fmt: skip
    return nodes.ClockReading(samples, skipped or [], "c")


def test_clock_within_two_seconds_is_ok():
    found = _one(nodes.judge_clock(_clock(0.05, -1.9)))
    assert found.status == "ok" and "n0 +0.05 s, n1 -1.90 s" in found.saw


def test_clock_off_by_more_than_2_s_warns_and_30_s_fails_saying_why():
    warned, failed = nodes.judge_clock(_clock(5.0, -45.0))
    assert warned.status == "warn" and warned.runbook == "clock-skew"
    assert warned.saw.startswith("n0's clock is 5.0 s ahead of this machine's (over 2 s")
    assert failed.status == "fail" and "45.0 s behind" in failed.saw and "over 30 s" in failed.saw
    assert "AWS refuses a request signed 5 minutes off" in failed.saw
    assert failed.data == {"CLUSTER": "c", "NODE": "n1"}


def test_clock_unread_and_skipped_nodes_warn():
    unread, skipped = nodes.judge_clock(_clock(None, skipped=["worker-1"]))
    assert unread.status == "warn" and "could not be read" in unread.saw
    assert unread.runbook == "clock-skew"  # it answered, but printed no time
    assert skipped.status == "warn" and skipped.saw.startswith("worker-1 not checked: no SSH")
    assert skipped.runbook == "node-unreachable"
    lost = nodes.ClockSample("master", None, why="lost the connection", unreachable=True)
    assert _one(nodes.judge_clock(nodes.ClockReading([lost]))).runbook == "node-unreachable"


def test_a_clock_sample_is_taken_against_the_middle_of_the_round_trip():
    sample = nodes.clock_sample("n", (100.0, "103.5\n", 101.0))
    assert sample.offset_s == 3.0 and sample.error_s == 0.5
    assert "printed '%N'" in nodes.clock_sample("n", (1.0, "%N", 2.0)).why


# -- pythons ----------------------------------------------------------------------------------


def _pythons(*versions: str | None, here: str = "3.11.9") -> nodes.PythonsReading:
    names = ["master", "worker-1", "worker-2"]
    found = [nodes.NodePython(name, v, "" if v else "exit 127: No such file or directory")
             for name, v in zip(names, versions, strict=False)]  # fmt: skip
    return nodes.PythonsReading(here, "/opt/clusterkit/venv/bin/python", found, [], "c", "/s")


def test_pythons_alike_and_as_here_are_ok():
    found = _one(nodes.judge_pythons(_pythons("3.11.9", "3.11.9")))
    assert found.status == "ok" and found.saw == "Python 3.11.9 on master, worker-1 (as here)"


def test_pythons_of_another_patch_than_here_are_ok_saying_so():
    found = _one(nodes.judge_pythons(_pythons("3.11.2", "3.11.2")))
    assert found.status == "ok" and "here 3.11.9: the same minor version" in found.saw


def test_pythons_missing_of_another_minor_or_unlike_each_other_fail():
    missing = _one(nodes.judge_pythons(_pythons("3.11.9", None)))
    assert missing.status == "fail" and missing.runbook == "provisioning-failed"
    assert "worker-1: the kit's Python /opt/clusterkit/venv/bin/python does not run" in missing.saw
    assert missing.data == {"CLUSTER": "c", "STATE_DIR": "/s", "NODE": "worker-1"}
    minor = _one(nodes.judge_pythons(_pythons("3.12.1", "3.11.9")))
    assert minor.status == "fail" and minor.saw.startswith("master runs Python 3.12.1")
    unlike = _one(nodes.judge_pythons(_pythons("3.11.9", "3.11.9", "3.11.4")))
    assert unlike.status == "fail" and unlike.data["NODE"] == "worker-2"
    assert "3.11.4 on worker-2; 3.11.9 on master, worker-1" in unlike.saw


def test_pythons_of_nodes_not_reached_warn():
    lost = nodes.NodePython("worker-2", None, "lost the connection", ran=False)
    reading = nodes.PythonsReading("3.11.9", "/p", [nodes.NodePython("master", "3.11.9"), lost],
                                   ["worker-1"])  # fmt: skip
    assert _statuses(nodes.judge_pythons(reading)) == ["warn", "warn"]


# -- nat --------------------------------------------------------------------------------------


def test_nat_reached_connected_or_refused_is_ok():
    reading = ns.NatReading([ns.NatProbe("worker-1", [("172.30.1.10:443", "refused")]),
                             ns.NatProbe("worker-2", [("s3.x:443", "no answer"),
                                                      ("pypi.org:443", "connected")])])  # fmt: skip
    found = _one(ns.judge_nat(reading))
    assert found.status == "ok" and "worker-2 -> pypi.org:443 connected" in found.saw


def test_nat_a_worker_reaching_nothing_fails_naming_provisioning():
    reading = ns.NatReading([ns.NatProbe("worker-1", [("172.30.1.10:443", "no answer")])],
                            data={"CLUSTER": "c", "STATE_DIR": "/s"})  # fmt: skip
    found = _one(ns.judge_nat(reading))
    assert found.status == "fail" and found.runbook == "provisioning-failed"
    assert "worker-1 reaches nothing beyond the master (172.30.1.10:443: no answer)" in found.saw
    assert found.data == {"CLUSTER": "c", "STATE_DIR": "/s", "NODE": "worker-1"}


def test_nat_unread_skipped_and_no_worker():
    unread = ns.NatReading([ns.NatProbe("worker-1", [], "python: not found"),
                            ns.NatProbe("worker-3", [], "lost the connection", lost=True)],
                           ["worker-2"])  # fmt: skip
    found = ns.judge_nat(unread)
    assert _statuses(found) == ["warn", "warn", "warn"]
    assert [f.runbook for f in found] == ["provisioning-failed", "node-unreachable",
                                          "node-unreachable"]  # fmt: skip
    assert _one(ns.judge_nat(ns.NatReading([]))).saw == "no worker to check"


def test_beyond_the_master_is_the_rehearsals_outside_or_aws_regions_s3_and_pip(tmp_path: Path):
    target = _target(tmp_path, 22, "")
    assert ns.beyond_the_master(target) == [("172.30.1.10", 443)]
    assert target.cluster is not None
    target.cluster.provider = AwsProvider()
    assert ns.beyond_the_master(target) == [("pypi.org", 443)]  # no region recorded
    tfvars = target.cluster.paths.root / "terraform" / "cluster.tfvars.json"
    tfvars.parent.mkdir(parents=True)
    tfvars.write_text(json.dumps({"region": "eu-west-3"}))
    assert ns.beyond_the_master(target) == [("s3.eu-west-3.amazonaws.com", 443),
                                            ("pypi.org", 443)]  # fmt: skip


# -- hdfs -------------------------------------------------------------------------------------

REPORT = """Configured Capacity: 42 (42 B)
-------------------------------------------------
Live datanodes (1):

Name: 10.0.2.10:9866 (worker-1)
Hostname: worker-1
Decommission Status : Normal

Dead datanodes (1):

Name: 10.0.2.11:9866 (worker-2)
Hostname: worker-2
"""
WORKERS = {"worker-1": "10.0.2.10", "worker-2": "10.0.2.11"}


def _hdfs(report: str = REPORT, code: int = 0, safemode: str = "Safe mode is OFF",
          workers: dict[str, str] | None = None) -> ns.HdfsReading:  # fmt: skip
    return ns.HdfsReading(True, WORKERS if workers is None else workers, report, code, safemode,
                          data={"CLUSTER": "c", "STATE_DIR": "/s"})  # fmt: skip


def test_the_report_is_read_by_section():
    assert ns.datanodes(REPORT) == {"live": {"10.0.2.10"}, "dead": {"10.0.2.11"}}


def test_hdfs_not_installed_is_ok_and_unread_warns():
    found = _one(ns.judge_hdfs(ns.HdfsReading(False)))
    assert found.status == "ok" and "not installed" in found.saw
    unread = ns.HdfsReading(True, unread="master does not answer SSH")
    assert _one(ns.judge_hdfs(unread)).status == "warn"


def test_hdfs_every_worker_live_and_out_of_safe_mode_is_ok():
    found = _one(ns.judge_hdfs(_hdfs(workers={"worker-1": "10.0.2.10"})))
    assert found.status == "ok" and found.saw.startswith("1 live DataNodes")


def test_hdfs_a_missing_datanode_or_safe_mode_fails():
    missing = _one(ns.judge_hdfs(_hdfs()))
    assert missing.status == "fail" and missing.runbook == "hdfs-safe-mode"
    assert missing.saw.startswith("worker-2 (10.0.2.11) has no live DataNode")
    assert missing.data["NODE"] == "worker-2"
    safe, _ = ns.judge_hdfs(_hdfs(safemode="Safe mode is ON"))
    assert safe.status == "fail" and "HDFS is in safe mode" in safe.saw


def test_hdfs_not_answering_or_not_installed_by_the_playbooks_fails():
    down = _one(ns.judge_hdfs(_hdfs("Call From master to master:9000 failed", code=255)))
    assert down.status == "fail" and down.runbook == "hdfs-safe-mode" and "exit 255" in down.saw
    gone = _one(ns.judge_hdfs(_hdfs("sh: 1: /opt/hadoop/bin/hdfs: not found", code=127)))
    assert gone.status == "fail" and gone.runbook == "provisioning-failed"


# -- idle -------------------------------------------------------------------------------------


def _idle(minutes: int, *found: Unit, scheduler: str = "timer") -> ns.IdleReading:
    return ns.IdleReading(minutes, "stop", scheduler, "aws", list(found), data={"CLUSTER": "c"})


TIMER = Unit("clusterkit-idle.timer", True, "active")


def test_idle_guard_asked_for_and_running_is_ok():
    found = _one(ns.judge_idle(_idle(60, TIMER, Unit("clusterkit-idle.service", True, "inactive"))))
    assert found.status == "ok" and found.saw.startswith("clusterkit-idle.timer enabled and active")
    loop = Unit("clusterkit-idle.service", True, "active")
    assert _one(ns.judge_idle(_idle(1, loop, scheduler="loop"))).status == "ok"


def test_idle_guard_missing_disabled_or_stopped_fails():
    disabled = Unit("clusterkit-idle.timer", False, "active")
    failed = Unit("clusterkit-idle.timer", True, "failed")
    for found, said in ((_idle(60), "the master has no clusterkit-idle.timer"),
                        (_idle(60, disabled), "not enabled"),
                        (_idle(60, failed), "is failed")):  # fmt: skip
        finding = _one(ns.judge_idle(found))
        assert finding.status == "fail" and finding.runbook == "provisioning-failed"
        assert said in finding.saw and "(and bills)" in finding.saw


def test_idle_guard_not_asked_for_is_ok_or_warns_when_left_installed():
    assert _one(ns.judge_idle(_idle(0))).status == "ok"
    left = _one(ns.judge_idle(_idle(0, TIMER)))
    assert left.status == "warn" and "`clusterkit provision` removes it" in (left.fix or "")
    unread = ns.IdleReading(60, "stop", "timer", "aws", None, "master does not answer SSH")
    assert _one(ns.judge_idle(unread)).status == "warn"


# -- drift ------------------------------------------------------------------------------------


def test_drift_not_asked_for_is_ok_saying_how():
    found = _one(ns.judge_drift(ns.DriftReading(False)))
    assert found.status == "ok" and "`clusterkit doctor --drift`" in found.saw


def test_drift_changes_warn_failures_fail_and_a_busy_cluster_warns():
    changed = ns.DriftReading(True, 40, {"master": 1, "worker-1": 0},
                              ["master: Masquerade the private subnet"], 70.0)  # fmt: skip
    found = _one(ns.judge_drift(changed))
    assert found.status == "warn" and found.runbook == "provisioning-failed"
    assert "1 task would change (master: Masquerade the private subnet)" in found.saw
    failed = _one(ns.judge_drift(ns.DriftReading(True, error="host worker-1, role python: x")))
    assert failed.status == "fail" and "failed in check mode" in failed.saw
    busy = _one(ns.judge_drift(ns.DriftReading(True, error="locked by pid 7", busy=True)))
    assert busy.status == "warn" and busy.runbook is None
    clean = _one(ns.judge_drift(ns.DriftReading(True, 40, {"master": 0}, [], 65.0)))
    assert clean.status == "ok" and "change nothing (40 tasks, 65 s)" in clean.saw


def test_drift_with_a_secret_missing_says_so_and_makes_none(tmp_path: Path):
    """No ray-token in the state folder: the drift reading names it, check mode does not run
    (no wheel built) and no secret is made (doctor changes nothing)."""
    target = _target(tmp_path, 1, "")
    paths = target.paths
    assert paths is not None
    paths.spark_secret.write_text("s3cret")
    reading = ns.read_drift(target)
    assert reading.lost == str(paths.ray_token) and reading.tasks == 0
    assert f"the Ray token {paths.ray_token} is missing" in (reading.error or "")
    for secret in (paths.ray_token, paths.spark_connect_token):
        assert not secret.exists()
    assert not (paths.root / "dist").exists() and not (paths.root / "ansible-check").exists()
    found = _one(ns.judge_drift(reading))
    assert (found.status, found.runbook) == ("fail", "lost-token-or-key")
    assert found.data == {"CLUSTER": "c", "STATE_DIR": str(paths.root),
                          "FILE": str(paths.ray_token)}  # fmt: skip


def test_with_drift_swaps_only_the_drift_checks_reading():
    swapped = with_drift(CHECKS)
    assert [c.name for c in swapped] == [c.name for c in CHECKS]
    changed = [(a.name, b.read) for a, b in zip(CHECKS, swapped, strict=True) if a is not b]
    assert changed == [("drift", ns.read_drift)]


def test_the_playbooks_events_name_the_tasks_that_changed():
    events = _Events(lambda _: None)
    for host, task, changed in (("master", "Masquerade", True), ("worker-1", "Install", False)):
        events.on_event({"event": "runner_on_ok", "event_data": {
            "host": host, "task": task, "res": {"changed": changed}}})  # fmt: skip
    events.on_event({"event": "playbook_on_stats",
                     "event_data": {"changed": {"master": 1}, "ok": {"master": 1}}})  # fmt: skip
    report = events.report()
    assert report.changed_tasks == ["master: Masquerade"] and report.total_changed == 1


# -- the registry -----------------------------------------------------------------------------


def test_the_remote_checks_run_on_up_remote_clusters_only():
    remote = [c for c in CHECKS if c.name in ("ssh", "clock", "pythons", "nat", "hdfs", "idle",
                                              "drift")]  # fmt: skip
    assert [c.name for c in remote] == ["ssh", "clock", "pythons", "nat", "hdfs", "idle", "drift"]
    assert all(c.kinds == {"netns", "aws"} and c.needs_up for c in remote)


def test_the_command_runs_drift_only_when_asked(tmp_path: Path, monkeypatch, capsys):
    from clusterkit import cli

    given: list[object] = []

    def run_doctor(cluster: object, **kwargs: object) -> Report:
        given.append(kwargs.get("checks"))
        return Report([], 0.0)

    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "run_doctor", run_doctor)
    assert cli.main(["doctor", "--json"]) == 0
    assert cli.main(["doctor", "--drift", "--json"]) == 0
    capsys.readouterr()
    plain, drift = given
    assert plain is None and isinstance(drift, list)
    assert [c.read for c in drift if c.name == "drift"] == [ns.read_drift]
