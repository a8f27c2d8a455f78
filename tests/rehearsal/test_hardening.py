"""The rehearsal's nodes as the playbooks harden them: sshd's settings as sshd itself reads them
(``sshd -T``) and as the running sshd applies them, the master's key accepted on each worker
from the master's private address only, and Ray's metrics exporter answering on loopback only.

The rehearsal's one cluster (conftest's ``rehearsal``, with several workers); nothing here
changes it (the copies of the master's key the probes make on the workers are removed).
"""

from __future__ import annotations

import pytest

from tests.rehearsal import probes
from tests.rehearsal.conftest import Rehearsal, sh

pytestmark = pytest.mark.rehearsal

SSHD = "/usr/sbin/sshd"
DROPIN = "/etc/ssh/sshd_config.d/10-clusterkit.conf"
#: ssh from a node with its own settings only, no host key question, no agent, no password
SSH = ("ssh -F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no "
       "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=5")  # fmt: skip


def _sshd_settings(output: str) -> dict[str, list[str]]:
    """``sshd -T``'s lines as keyword -> values (AllowUsers has a line per user)."""
    settings: dict[str, list[str]] = {}
    for line in output.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key, []).append(value)
    return settings


def test_sshd_takes_keys_only_for_root_with_no_forwarding(rehearsal: Rehearsal):
    for name in rehearsal.layout.node_names:  # the master and every worker
        with rehearsal.connect(name) as c:
            settings = _sshd_settings(sh(c, f"{SSHD} -T"))
            dropin = sh(c, f"stat -c '%a %U' {DROPIN}")
            include = sh(c, "grep -m1 -v -e '^#' -e '^$' /etc/ssh/sshd_config")
        # OpenSSH before 7.0 printed prohibit-password under its old name
        assert settings["permitrootlogin"] in (["prohibit-password"], ["without-password"]), (
            name, settings)  # fmt: skip
        assert settings["passwordauthentication"] == ["no"], (name, settings)
        assert settings["kbdinteractiveauthentication"] == ["no"], (name, settings)
        assert settings["maxauthtries"] == ["3"], (name, settings)
        assert "root" in settings["allowusers"], (name, settings)
        assert settings["allowagentforwarding"] == ["no"], (name, settings)
        assert settings["x11forwarding"] == ["no"], (name, settings)  # over the main file's
        assert dropin == "644 root", name
        assert include == "Include /etc/ssh/sshd_config.d/*.conf", name  # the drop-ins first


def test_the_running_sshd_offers_public_keys_only(rehearsal: Rehearsal):
    """The settings are live (sshd reloaded), not only written: asked for no key, each node's
    sshd offers nothing else (Debian's default would also offer passwords)."""
    layout = rehearsal.layout
    with rehearsal.connect("master") as c:
        for name in layout.node_names:
            address = layout.address_of(name)
            result = c.run(f"{SSH} -o PubkeyAuthentication=no root@{address} true",
                           check=False, timeout=60)  # fmt: skip
            assert result.exit_code == 255, (name, result)
            assert "Permission denied (publickey)." in result.stderr, (name, result.stderr)


def test_the_masters_key_is_accepted_on_each_worker_from_the_masters_address_only(
    rehearsal: Rehearsal,
):
    """On every worker: the master's key is authorized from the master's address; the same key
    used from a worker's address (its own, or another worker's over the private subnet) is
    refused."""
    layout = rehearsal.layout
    workers = {name: layout.address_of(name) for name in layout.worker_names}
    copy = "/tmp/ck-hardening-master-key"
    with rehearsal.connect("master") as master:
        public = sh(master, "cat /root/.ssh/id_ed25519.pub").split()
        private = master.read_bytes("/root/.ssh/id_ed25519")
        for name, address in workers.items():
            with rehearsal.connect(name) as worker:
                authorized = sh(worker, "cat /root/.ssh/authorized_keys").splitlines()
            lines = [line for line in authorized if public[1] in line.split()]
            assert len(lines) == 1, (name, authorized)
            assert lines[0].startswith(f'from="{layout.master}" {public[0]} {public[1]}'), (
                name, lines)  # fmt: skip
            # from the master's address: accepted
            assert sh(master, f"{SSH} -i /root/.ssh/id_ed25519 root@{address} hostname") == name
    for name in workers:  # the same key from a worker's address: refused on every worker
        with rehearsal.connect(name) as worker:
            worker.write_file(copy, private, mode=0o600)
            try:
                for target, address in workers.items():
                    probe = f"{SSH} -o IdentitiesOnly=yes -i {copy} root@{address} true"
                    refused = worker.run(probe, check=False, timeout=60)
                    assert refused.exit_code == 255, (f"{name} to {target}", refused)
                    assert "Permission denied" in refused.stderr, (f"{name} to {target}", refused)
            finally:
                worker.run(f"rm -f {copy}", timeout=30)


def test_rays_metrics_exporter_answers_on_loopback_only(rehearsal: Rehearsal):
    layout = rehearsal.layout
    port = rehearsal.state.spec.ports.ray_metrics_export
    raylet = rehearsal.state.spec.ports.ray_node_manager
    for name in layout.node_names:
        with rehearsal.connect(name) as c:
            listening = sh(c, f"ss -Hltn 'sport = :{port}'")
            rules = [line for line in sh(c, "iptables -S INPUT").splitlines()
                     if line.startswith("-A INPUT")]  # fmt: skip
            saved = sh(c, "cat /etc/iptables/rules.v4")
        assert listening, f"Ray's metrics exporter does not listen on {name}"
        # the first rule of the chain, before the cluster's networks are accepted; and saved
        first = rules[0].split()
        assert first[:4] == ["-A", "INPUT", "!", "-i"] and first[4] == "lo", (name, rules)
        assert {"--dport", str(port), "DROP"} <= set(first), (name, rules)
        assert f"--dport {port} " in saved, name
        address = layout.address_of(name)
        assert probes.connect(layout.ns(name), "127.0.0.1", port) == "open", name
        # from every other node (the workers reach each other directly, over the bridge)
        for other in layout.node_names:
            if other == name:
                continue
            seen = probes.connect(layout.ns(other), address, port, timeout=1.5)
            assert seen == "timeout", (f"{other} to {name}", seen)
            # while the rest of the cluster's traffic flows (the raylet, from the other node)
            assert probes.connect(layout.ns(other), address, raylet) == "open", (other, name)
