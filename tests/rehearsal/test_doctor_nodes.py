"""Doctor's remote checks on the rehearsal's cluster, and the remote runbooks rehearsed there
(:func:`tests.runbooks.rehearse.rehearse`: the incident provoked, doctor naming the runbook, the
page's ``bash steps`` run as written, doctor clean after):

- node-unreachable: worker-1's firewall drops SSH (a rule inserted in its network namespace);
  doctor gives up on it in its probe's time and names it; the page's steps load the rules the
  firewall role saved, as a boot would.
- node-unreachable, a changed host key: worker-1's pinned key replaced by another in the
  cluster's known_hosts; doctor refuses it, naming the node and the file; the page's
  ``bash host-key`` blocks read the key the node presents through the master and pin it.
- provisioning-failed (``slow``): the master's masquerade rule removed; ``doctor --drift``
  names the nat role's task, ``nat`` the workers; the page's step (``clusterkit provision``)
  puts it back, and the playbooks in check mode then change nothing.

Each restores the shared rehearsal whatever happens (the tests after it use it).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import paramiko
import pytest

from clusterkit.exec.ssh import ensure_key
from clusterkit.providers.netns.topology import in_ns
from tests.rehearsal.conftest import Rehearsal, sh
from tests.runbooks.pages import blocks, page_of, steps
from tests.runbooks.rehearse import doctor, kit_env, naming, rehearse, run_block

pytestmark = pytest.mark.rehearsal

WORKER = "worker-1"
#: What the incident inserts first in the worker's INPUT chain (and the cleanup deletes).
SSH_DROP = ["INPUT", "-p", "tcp", "--dport", "22", "-j", "DROP"]


def _env(rehearsal: Rehearsal) -> dict[str, str]:
    """The rehearsal's environment with the system's sbin folders on PATH, as in root's shell
    (the node-unreachable steps run ``ip`` and ``iptables-restore``)."""
    path = rehearsal.env.get("PATH", os.defpath).split(os.pathsep)
    extra = [p for p in ("/usr/sbin", "/sbin") if p not in path]
    return {**rehearsal.env, "PATH": os.pathsep.join([*path, *extra])}


def _others_fine(report: dict[str, Any], *, but: str) -> None:
    """Every finding not about ``but`` is OK, but the lines that say ``but`` was not checked."""
    for finding in report["checks"]:
        if finding["status"] == "ok" or but in finding["saw"]:
            continue
        raise AssertionError(f"a finding not about {but}: {finding}")


def _drop_ssh(rehearsal: Rehearsal, *, on: bool) -> None:
    """Insert the incident's rule in the worker's INPUT chain, or delete every copy of it."""
    ns = rehearsal.layout.ns(WORKER)
    if on:
        subprocess.run(in_ns(ns, "iptables", "-I", *SSH_DROP), check=True, timeout=30)
        return
    while subprocess.run(in_ns(ns, "iptables", "-D", *SSH_DROP), capture_output=True,
                         timeout=30).returncode == 0:  # fmt: skip
        pass


def test_a_worker_whose_firewall_drops_ssh_is_named_and_its_runbook_brings_it_back(
    rehearsal: Rehearsal, tmp_path: Path
):
    env = _env(rehearsal)
    saved = rehearsal.paths.root / "nodes" / WORKER / "upper" / "etc" / "iptables" / "rules.v4"
    assert saved.exists(), f"the firewall role saved no rules for {WORKER} at {saved}"
    _drop_ssh(rehearsal, on=True)
    try:
        t0 = time.monotonic()
        code, report = doctor(kit_env(env), tmp_path)
        took = time.monotonic() - t0
        assert code == 1 and took < 40, (code, took)  # the probe gave up in its 8 s, no hang
        [finding] = naming(report, "ssh", "node-unreachable")
        address = rehearsal.layout.address_of(WORKER)
        assert (
            finding["saw"] == f"{WORKER} ({address} through master) did not answer SSH within 8 s"
        )
        assert finding["data"] == {"CLUSTER": rehearsal.state.name, "PROVIDER": "netns",
                                   "STATE_DIR": str(rehearsal.paths.root), "NODE": WORKER,
                                   "ADDRESS": address}  # fmt: skip
        _others_fine(report, but=WORKER)  # the other nodes checked, WORKER said left out
        left_out = {f["check"] for f in report["checks"] if f["status"] == "warn"}
        assert {"clock", "pythons", "nat"} <= left_out, report["checks"]
        done = rehearse("node-unreachable", "ssh", env=env, cwd=tmp_path)
        assert done.finding["data"]["NODE"] == WORKER
        assert all(f["status"] == "ok" for f in done.report["checks"]), done.report["checks"]
    finally:
        _drop_ssh(rehearsal, on=False)
    with rehearsal.connect(WORKER) as c:  # as the firewall role left it
        assert "clusterkit ssh" in sh(c, "iptables -S INPUT")


def _fingerprint(line: str) -> str:
    kind, data = line.split()[:2]
    assert kind == "ssh-ed25519", line
    return str(paramiko.Ed25519Key(data=base64.b64decode(data)).fingerprint)


def test_a_worker_whose_pinned_key_changed_is_refused_by_name_and_pinned_again(
    rehearsal: Rehearsal, tmp_path: Path
):
    known = rehearsal.ssh.known_hosts
    original = known.read_bytes()
    address = rehearsal.layout.address_of(WORKER)
    own = (rehearsal.paths.root / "nodes" / WORKER / "upper" / "etc" / "ssh" /
           "ssh_host_ed25519_key.pub").read_text()  # fmt: skip
    impostor = ensure_key(tmp_path / "impostor")
    lines = original.decode().splitlines()
    assert sum(line.startswith(f"{address} ") for line in lines) == 1, lines
    pinned = [f"{address} {' '.join(impostor.split()[:2])}" if line.startswith(f"{address} ")
              else line for line in lines]  # fmt: skip
    known.write_text("\n".join(pinned) + "\n")
    new, old = Path(f"{known}.new"), Path(f"{known}.old")
    env = kit_env(rehearsal.env)
    try:
        t0 = time.monotonic()
        code, report = doctor(env, tmp_path)
        assert code == 1 and time.monotonic() - t0 < 40
        [finding] = naming(report, "ssh", "node-unreachable")
        assert finding["status"] == "fail" and finding["saw"].startswith(
            f"{WORKER} ({address} through master): its host key is not the one pinned in {known}"
        )
        assert f"it presented ssh-ed25519 {_fingerprint(own)}" in finding["saw"]
        assert f"pinned ssh-ed25519 {_fingerprint(impostor)}" in finding["saw"]
        assert finding["data"]["KNOWN_HOSTS"] == str(known) and finding["data"]["NODE"] == WORKER
        # the steps for an outage stop at once: a changed key is not one
        first = steps(page_of("node-unreachable"))[0]
        argv = ["bash", "-euo", "pipefail", "-c", first]
        refused = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True,
                                 timeout=120)  # fmt: skip
        assert refused.returncode != 0 and "does not answer" not in refused.stdout
        # the host-key blocks: the key the node presents, read through the master, compared
        # with the node's own (the operator's check), then pinned
        look, pin = [text for _, text in blocks(page_of("node-unreachable"), "bash host-key")]
        run_block(look, env, tmp_path)
        [presented] = new.read_text().splitlines()
        assert presented.startswith(f"{address} ") and _fingerprint(
            presented.split(None, 1)[1]) == _fingerprint(own)  # fmt: skip
        run_block(pin, env, tmp_path)
        assert not new.exists() and not old.exists()
        code, after = doctor(env, tmp_path)
        assert code == 0 and not naming(after, "ssh"), after["checks"]
    finally:
        known.write_bytes(original)
        new.unlink(missing_ok=True)
        old.unlink(missing_ok=True)


@pytest.mark.slow  # about 5 min: the playbooks twice in check mode and once for real
@pytest.mark.timeout(1800)
def test_the_masters_nat_removed_is_named_and_provision_puts_it_back(
    rehearsal: Rehearsal, tmp_path: Path
):
    layout = rehearsal.layout
    masquerade = (f"POSTROUTING -s {layout.private_subnet} -o eth0 "
                  f"-m comment --comment 'clusterkit nat' -j MASQUERADE")  # fmt: skip
    with rehearsal.connect("master") as c:
        sh(c, f"iptables -t nat -D {masquerade}")
    try:
        drift = rehearsal.ck("doctor", "--drift", "--json", timeout=900)
        report = _json(drift)
        [nat_fail, *_] = naming(report, "nat", "provisioning-failed")
        assert nat_fail["status"] == "fail" and nat_fail["data"]["NODE"] == layout.worker_names[0]
        assert "reaches nothing beyond the master" in nat_fail["saw"]
        [drifted] = naming(report, "drift", "provisioning-failed")
        assert drifted["status"] == "warn", drifted
        # the rule and its saving alone: nothing else drifted (the pip task's check mode
        # answers truly)
        assert drifted["saw"].startswith(
            "2 tasks would change (master: Masquerade the private subnet; master: Save the "
            "firewall rules)"), drifted["saw"]  # fmt: skip
        rehearse("provisioning-failed", "nat", env=rehearsal.env, cwd=tmp_path)
        again = _json(rehearsal.ck("doctor", "--drift", "--json", timeout=900))
        [clean] = [f for f in again["checks"] if f["check"] == "drift"]
        assert clean["status"] == "ok" and "change nothing" in clean["saw"], clean["saw"]
        assert again["ok"] is True, again["checks"]
    finally:
        with rehearsal.connect("master") as c:  # on again, exactly as the role made it
            if c.run(f"iptables -t nat -C {masquerade}", check=False).exit_code != 0:
                sh(c, f"iptables -t nat -A {masquerade}")


def _json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """``doctor --json``'s report (it exits 1 when a check fails)."""
    assert proc.stdout, proc.stderr[-3000:]
    found: dict[str, Any] = json.loads(proc.stdout)
    return found
