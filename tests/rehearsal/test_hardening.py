"""The rehearsal's nodes as the playbooks harden them: sshd's settings as sshd itself reads them
(``sshd -T``) and as the running sshd applies them, the master's key accepted on the worker
from the master's private address only, and Ray's metrics exporter answering on loopback only.

The rehearsal's one cluster (conftest's ``rehearsal``); nothing here changes it (the copy of
the master's key one probe makes on the worker is removed).
"""

from __future__ import annotations

import pytest

from clusterkit.providers.netns import nodes
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


@pytest.mark.parametrize("name", nodes.NODES)
def test_sshd_takes_keys_only_for_root_with_no_forwarding(rehearsal: Rehearsal, name: str):
    with rehearsal.connect(name) as c:
        settings = _sshd_settings(sh(c, f"{SSHD} -T"))
        dropin = sh(c, f"stat -c '%a %U' {DROPIN}")
        include = sh(c, "grep -m1 -v -e '^#' -e '^$' /etc/ssh/sshd_config")
    # OpenSSH before 7.0 printed prohibit-password under its old name
    assert settings["permitrootlogin"] in (["prohibit-password"], ["without-password"]), settings
    assert settings["passwordauthentication"] == ["no"], settings
    assert settings["kbdinteractiveauthentication"] == ["no"], settings
    assert settings["maxauthtries"] == ["3"], settings
    assert "root" in settings["allowusers"], settings
    assert settings["allowagentforwarding"] == ["no"], settings
    assert settings["x11forwarding"] == ["no"], settings  # over the main file's own value
    assert dropin == "644 root"
    assert include == "Include /etc/ssh/sshd_config.d/*.conf"  # the drop-ins first


def test_the_running_sshd_offers_public_keys_only(rehearsal: Rehearsal):
    """The settings are live (sshd reloaded), not only written: asked for no key, each node's
    sshd offers nothing else (Debian's default would also offer passwords)."""
    layout = rehearsal.layout
    with rehearsal.connect("master") as c:
        for address in (layout.master, layout.worker):
            result = c.run(f"{SSH} -o PubkeyAuthentication=no root@{address} true",
                           check=False, timeout=60)  # fmt: skip
            assert result.exit_code == 255, (address, result)
            assert "Permission denied (publickey)." in result.stderr, (address, result.stderr)


def test_the_masters_key_is_accepted_on_the_worker_from_the_masters_address_only(
    rehearsal: Rehearsal,
):
    layout = rehearsal.layout
    with rehearsal.connect("master") as master, rehearsal.connect("worker") as worker:
        public = sh(master, "cat /root/.ssh/id_ed25519.pub").split()
        authorized = sh(worker, "cat /root/.ssh/authorized_keys").splitlines()
        lines = [line for line in authorized if public[1] in line.split()]
        assert len(lines) == 1, authorized
        assert lines[0].startswith(f'from="{layout.master}" {public[0]} {public[1]}'), lines
        # from the master's address: accepted
        assert sh(master, f"{SSH} -i /root/.ssh/id_ed25519 root@{layout.worker} hostname") == (
            "worker"
        )
        # the same key from another address (the worker's own): refused
        copy = "/tmp/ck-hardening-master-key"
        worker.write_file(copy, master.read_bytes("/root/.ssh/id_ed25519"), mode=0o600)
        try:
            refused = worker.run(f"{SSH} -o IdentitiesOnly=yes -i {copy} root@{layout.worker} "
                                 "true", check=False, timeout=60)  # fmt: skip
        finally:
            worker.run(f"rm -f {copy}", timeout=30)
    assert refused.exit_code == 255 and "Permission denied" in refused.stderr, refused


def test_rays_metrics_exporter_answers_on_loopback_only(rehearsal: Rehearsal):
    layout = rehearsal.layout
    port = rehearsal.state.spec.ports.ray_metrics_export
    raylet = rehearsal.state.spec.ports.ray_node_manager
    for name, other in (("master", "worker"), ("worker", "master")):
        with rehearsal.connect(name) as c:
            listening = sh(c, f"ss -Hltn 'sport = :{port}'")
            rules = [line for line in sh(c, "iptables -S INPUT").splitlines()
                     if line.startswith("-A INPUT")]  # fmt: skip
            saved = sh(c, "cat /etc/iptables/rules.v4")
        assert listening, f"Ray's metrics exporter does not listen on {name}"
        # the first rule of the chain, before the cluster's networks are accepted; and saved
        first = rules[0].split()
        assert first[:4] == ["-A", "INPUT", "!", "-i"] and first[4] == "lo", rules
        assert {"--dport", str(port), "DROP"} <= set(first), rules
        assert f"--dport {port} " in saved
        address = layout.address_of(name)
        assert probes.connect(layout.ns(name), "127.0.0.1", port) == "open"
        assert probes.connect(layout.ns(other), address, port, timeout=1.5) == "timeout"
        # while the rest of the cluster's traffic flows (the raylet, from the other node)
        assert probes.connect(layout.ns(other), address, raylet) == "open"
