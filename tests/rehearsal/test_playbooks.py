"""The playbooks on the rehearsal nodes, through ansible-runner: what each role promises,
checked on the nodes; a second run changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fabric import Connection

from clusterkit import provision
from clusterkit.rehearsal import nodes
from clusterkit.rehearsal.topology import Layout, in_ns
from tests.rehearsal.conftest import nodes_up
from tests.rehearsal.test_topology import PORT, SERVE

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces need root")


def sh(c: Connection, command: str) -> str:
    return c.run(command, hide=True, in_stream=False).stdout.strip()


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Layout, Path, dict]]:
    state = tmp_path_factory.mktemp("provisioned")
    layout = Layout(cluster="tplay")
    with nodes_up(layout, state) as key:
        inventory = nodes.ansible_inventory(layout, state, key=key)
        said: list[str] = []
        report = provision.run_playbook(inventory, work_dir=state / "ansible", say=said.append)
        assert report.tasks and said and report.total_changed > 0
        yield layout, state, inventory


def connect(layout: Layout, state: Path, name: str) -> Connection:
    kwargs = {"key_filename": str(state / "operator_key"), "look_for_keys": False}
    master = Connection(layout.master, user="root", connect_kwargs=kwargs)
    if name == "master":
        return master
    return Connection(layout.worker, user="root", connect_kwargs=kwargs, gateway=master)


def test_common_maps_the_nodes_by_private_address(provisioned):
    layout, state, _ = provisioned
    for name in nodes.NODES:
        with connect(layout, state, name) as c:
            hosts = sh(c, "cat /etc/hosts")
            assert f"{layout.master} master" in hosts and f"{layout.worker} worker" in hosts
            assert "127.0.1.1" not in hosts
            assert sh(c, "hostname") == name == sh(c, "cat /etc/hostname")


def test_ssh_master_to_worker_needs_no_password(provisioned):
    layout, state, _ = provisioned
    with connect(layout, state, "master") as c:
        assert sh(c, "ssh -o BatchMode=yes worker hostname") == "worker"
        assert sh(c, f"ssh -o BatchMode=yes {layout.worker} hostname") == "worker"


def test_nat_lets_the_worker_out_through_the_master_and_is_saved(provisioned):
    layout, state, _ = provisioned
    server = subprocess.Popen(in_ns(layout.ns("outside"), sys.executable, "-c", SERVE,
                                    layout.outside, str(PORT), "outside"))  # fmt: skip
    try:
        time.sleep(1.0)
        with connect(layout, state, "worker") as c:
            url = f"http://{layout.outside}:{PORT}/"
            code = (
                f"import urllib.request as u; print(u.urlopen('{url}', timeout=3).read().decode())"
            )
            got = sh(c, f'python3 -c "{code}"')
        assert got == f"hello from outside, you are {layout.master}"
    finally:
        server.terminate()
        server.wait(timeout=10)
    with connect(layout, state, "master") as c:
        assert "MASQUERADE" in sh(c, "cat /etc/iptables/rules.v4")
        assert sh(c, "sysctl -n net.ipv4.ip_forward") == "1"
        assert sh(c, "sysctl -n net.ipv4.conf.eth0.send_redirects") == "0"
    with connect(layout, state, "worker") as c:  # the worker's own default route is left alone
        assert sh(c, "ip route show default") == f"default via {layout.router_private} dev eth0"


def test_a_second_run_changes_nothing(provisioned):
    _, state, inventory = provisioned
    report = provision.run_playbook(inventory, work_dir=state / "ansible-again")
    assert report.total_changed == 0, report.changed


def test_a_failed_task_names_host_role_and_task(provisioned, tmp_path: Path):
    inventory = provisioned[2]
    variables = {**inventory["all"]["vars"], "common_packages": ["no-such-package-ck"]}
    broken = {"all": {**inventory["all"], "vars": variables}}
    with pytest.raises(provision.ProvisionError, match=r"role common, task 'Install the base"):
        provision.run_playbook(broken, work_dir=tmp_path / "ansible")
