"""The playbooks checked without running them: syntax, ansible-lint's production profile,
every template rendered by Ansible for the example inventory (a master and two workers,
worker-2 larger) and parsed (Hadoop's XML, Spark's and Ray's settings with the private
addresses, sshd's drop-in, checked by sshd itself), the rendered systemd units verified by
systemd-analyze, the master's key authorized from its address only, Ray's metrics port closed
but on loopback, the memory budget of a t2.large and of each node from its own memory, and
what `clusterkit scale` relies on to shrink (HDFS's exclude file, Spark's decommissioning)."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from clusterkit.core.state import ClusterPaths
from clusterkit.services import connect, drain

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
#: The example inventory's nodes and their private addresses
WORKERS = {"worker-1": "10.0.2.10", "worker-2": "10.0.2.11"}
NODES = {"master": "10.0.1.10", **WORKERS}


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_syntax_check_with_the_example_inventory():
    proc = _run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example.yml",
                "playbooks/site.yml")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


@pytest.mark.tools
def test_ansible_lint_production_profile():
    proc = _run(str(BIN / "ansible-lint"), "--profile", "production", "playbooks/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_role_has_defaults_argument_specs_and_metadata():
    roles = sorted((ROOT / "playbooks" / "roles").iterdir())
    assert {r.name for r in roles} == {
        "common",
        "ssh",
        "nat",
        "firewall",
        "java",
        "python",
        "hadoop",
        "spark",
        "ray",
        "idle_guard",
    }
    for role in roles:
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        options = specs["argument_specs"]["main"]["options"]
        assert set(defaults) == set(options), role.name  # every tunable declared, and only those
        assert all(o.get("description") for o in options.values()), role.name


def test_hosts_template_for_the_example_inventory():  # plain Jinja2, no Ansible
    inventory = yaml.safe_load((ROOT / "inventory" / "example.yml").read_text())["all"]
    hostvars = {h: v for group in inventory["children"].values()
                for h, v in group["hosts"].items()}  # fmt: skip
    env = Environment(loader=FileSystemLoader(ROOT / "playbooks/roles/common/templates"),
                      undefined=StrictUndefined)  # fmt: skip
    text = env.get_template("hosts.j2").render(
        ansible_managed="managed", groups={"all": list(hostvars)}, hostvars=hostvars
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "10.0.1.10 master" in lines
    assert "10.0.2.10 worker-1" in lines and "10.0.2.11 worker-2" in lines
    assert not [line for line in lines if line.startswith("127.0.1.1")]


def test_every_node_maps_every_node_to_its_private_address(rendered):
    for host in NODES:  # the master's /etc/hosts and each worker's, as Ansible renders them
        lines = (rendered / host / "hosts").read_text().splitlines()
        cluster = [line for line in lines if line.startswith("10.")]
        assert cluster == [f"{address} {name}" for name, address in NODES.items()], host


T2_LARGE_MB = 7982  # what a t2.large reports as ansible_memtotal_mb (8 GiB less the kernel's)
#: worker-2's clusterkit_node_memory_mb in the example inventory (an m5.xlarge's 16 GiB)
M5_XLARGE_MB = 15798


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    hadoop_home = out / "hadoop"  # systemd-analyze wants every ExecStart to exist
    (hadoop_home / "bin").mkdir(parents=True)
    (hadoop_home / "bin" / "hdfs").write_text("#!/bin/sh\n")
    (hadoop_home / "bin" / "hdfs").chmod(0o755)
    facts = {
        "out_dir": str(out), "roles_dir": str(ROOT / "playbooks" / "roles"),
        "ansible_memtotal_mb": T2_LARGE_MB, "ansible_processor_vcpus": 2,
        "ansible_architecture": "x86_64", "ansible_distribution": "Debian",
        "ansible_python": {"version": {"major": sys.version_info.major,
                                       "minor": sys.version_info.minor}},
        "python_venv": sys.prefix, "hadoop_home": str(hadoop_home),
        # what clusterkit passes (services/playbooks.py's playbook_vars)
        "spark_connect_conf": connect.server_conf(port=15002, driver_host="{{ spark_local_ip }}"),
    }  # fmt: skip
    proc = _run(str(BIN / "ansible-playbook"), "-i", "inventory/example.yml",
                "tests/playbooks/render_templates.yml", "-e", json.dumps(facts))  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return out


def _xml(path: Path) -> dict[str, str]:
    root = ET.parse(path).getroot()
    return {p.findtext("name"): p.findtext("value") for p in root.iter("property")}  # type: ignore[misc]


def test_hadoop_xml_is_valid_and_binds_to_the_private_addresses(rendered):
    for host, address in NODES.items():
        core = _xml(rendered / host / "core-site.xml")
        hdfs = _xml(rendered / host / "hdfs-site.xml")
        assert core["fs.defaultFS"] == "hdfs://10.0.1.10:9000"
        assert hdfs["dfs.namenode.rpc-bind-host"] == address
        assert hdfs["dfs.datanode.address"] == f"{address}:9866"
        assert hdfs["dfs.namenode.http-address"] == "10.0.1.10:9870"
    assert "ExecStart=" in (rendered / "master" / "hdfs.service").read_text()
    assert "hdfs namenode" in (rendered / "master" / "hdfs.service").read_text()
    for host in WORKERS:
        assert "hdfs datanode" in (rendered / host / "hdfs.service").read_text()


def test_hdfs_can_decommission_datanodes_from_an_exclude_file(rendered):
    defaults = yaml.safe_load((ROOT / "playbooks/roles/hadoop/defaults/main.yml").read_text())
    exclude = f"{defaults['hadoop_conf_dir']}/{defaults['hadoop_exclude_file']}"
    assert exclude == "/etc/clusterkit/hadoop/dfs.exclude" == drain.HDFS_EXCLUDE  # scale's
    for host in NODES:
        assert _xml(rendered / host / "hdfs-site.xml")["dfs.hosts.exclude"] == exclude
    # kept on the master, empty at first and never overwritten (clusterkit scale writes it)
    keep = _task("hadoop", "ansible.builtin.copy")
    assert keep["dest"] == "{{ hadoop_conf_dir }}/{{ hadoop_exclude_file }}"
    assert keep["content"] == "" and keep["force"] is False
    assert keep["when"] == "inventory_hostname in groups['masters']"


def test_spark_and_ray_settings_carry_the_private_addresses(rendered):
    for host, address in NODES.items():
        env = (rendered / host / "spark-env.sh").read_text()
        assert f"export SPARK_LOCAL_IP={address}" in env
        assert "export SPARK_MASTER_HOST=10.0.1.10" in env
        assert "JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64" in env
        defaults = (rendered / host / "spark-defaults.conf").read_text()
        assert "spark.master.rest.enabled      false" in defaults
        assert "spark.eventLog.enabled         true" in defaults
        assert "spark.authenticate             true" in defaults
        assert "spark.network.crypto.enabled   true" in defaults
        assert "spark.ui.killEnabled           false" in defaults
        ray = (rendered / host / "ray.service").read_text()
        assert f"--node-ip-address {address}" in ray
        assert "RAY_AUTH_MODE=token" in ray
        # HDFS is on in the example inventory (AWS): Ray's pyarrow finds libhdfs and the jars
        hadoop = rendered / "hadoop"  # the fixture's hadoop_home
        assert f"Environment=HADOOP_HOME={hadoop}\n" in ray
        assert f"Environment=ARROW_LIBHDFS_DIR={hadoop}/lib/native\n" in ray
        assert "Environment=JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64\n" in ray
        # `ray start --block` outlives `ray stop`: the stop ends it too (SIGINT: a clean exit)
        stop = next(ln for ln in ray.splitlines() if ln.startswith("ExecStop="))
        assert stop.startswith("ExecStop=/bin/sh -c '") and " stop; /bin/kill -INT" in stop
        assert '"$MAINPID"' in stop
    head = (rendered / "master" / "ray.service").read_text()
    assert "--head" in head and "--dashboard-host 10.0.1.10" in head
    for host, address in WORKERS.items():
        assert "--address 10.0.1.10:6379" in (rendered / host / "ray.service").read_text()
        worker = (rendered / host / "spark-worker.service").read_text()
        assert f"--host {address}" in worker and "spark://10.0.1.10:7077" in worker


def _spark_defaults(path: Path) -> dict[str, str]:
    pairs = [line.split(None, 1) for line in path.read_text().splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    return {pair[0]: pair[1].strip() if len(pair) == 2 else "" for pair in pairs}


def test_spark_workers_decommission_gracefully(rendered):
    """clusterkit scale sends a worker SIGPWR before removing it: its executors finish their
    tasks and move their shuffle and cached blocks to the others."""
    for host in NODES:  # the daemons and every driver read it
        conf = _spark_defaults(rendered / host / "spark-defaults.conf")
        assert conf["spark.decommission.enabled"] == "true", host
        assert conf["spark.storage.decommission.enabled"] == "true", host
        assert conf["spark.storage.decommission.shuffleBlocks.enabled"] == "true", host
        assert conf["spark.storage.decommission.rddBlocks.enabled"] == "true", host


def test_the_spark_connect_server_listens_on_loopback_and_gives_executors_back(rendered):
    unit = (rendered / "master" / "spark-connect.service").read_text()
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert "--conf spark.connect.grpc.binding.address=127.0.0.1" in start
    assert "--conf spark.connect.grpc.binding.port=15002" in start
    assert "--conf spark.driver.host=10.0.1.10" in start  # executors on the workers reach it
    assert "--conf spark.dynamicAllocation.enabled=true" in start
    assert "--conf spark.dynamicAllocation.shuffleTracking.enabled=true" in start
    assert "--conf spark.executor.cores=2 --conf spark.executor.memory=3192m" in start
    assert "--master spark://10.0.1.10:7077" in start
    assert "EnvironmentFile=/etc/clusterkit/spark/spark-connect.env" in unit
    assert "TOKEN" not in start.upper()  # the token is never on the command line


@pytest.mark.tools
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_analyze_verifies_the_rendered_units(rendered):
    units = sorted([*rendered.glob("*/*.service"), *rendered.glob("*/*.timer"),
                    *rendered.glob("*/loop/*.service")])  # fmt: skip
    # hdfs, spark-master, spark-worker, spark-connect, ray on each of the three hosts; the
    # idle guard's oneshot, timer and loop on the master
    assert len(units) == 5 * len(NODES) + 3 == 18
    for unit in units:
        proc = _run("systemd-analyze", "verify", str(unit))
        assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
            unit,
            proc.stdout + proc.stderr,
        )


def _budget(rendered: Path, host: str) -> dict[str, int]:
    return json.loads((rendered / host / "budget.json").read_text())


def _on_worker(budget: dict[str, int]) -> int:
    return (budget["hadoop_datanode_heap_mb"] + budget["spark_daemon_memory_mb"]
            + budget["spark_worker_memory_mb"] + budget["ray_object_store_mb"])  # fmt: skip


def test_the_memory_budget_fits_a_t2_large(rendered):
    master = _budget(rendered, "master")
    worker = _budget(rendered, "worker-1")
    assert master["node_memory_mb"] == worker["node_memory_mb"] == T2_LARGE_MB
    reserve = 1024  # the OS, sshd, and the Python processes of Ray and the jobs
    driver = 1024  # spec.nodes.driver_memory: a job's driver on the master
    on_master = (master["hadoop_namenode_heap_mb"] + master["spark_daemon_memory_mb"]
                 + master["spark_connect_driver_memory_mb"]  # the warm server's driver
                 + master["ray_object_store_mb"] + driver)  # fmt: skip
    assert on_master + reserve <= T2_LARGE_MB, master
    assert _on_worker(worker) + reserve <= T2_LARGE_MB, worker
    # below Spark's and Ray's own defaults (the whole machine less 1 GiB for the worker, 30%
    # of it for the object store), which together would not fit beside the daemons
    assert worker["spark_worker_memory_mb"] < T2_LARGE_MB - 1024, worker
    assert worker["ray_object_store_mb"] < 0.3 * T2_LARGE_MB, worker
    assert master["ray_object_store_mb"] < 0.3 * T2_LARGE_MB, master


def test_each_worker_budgets_from_its_own_memory(rendered):
    """worker-2 stands for a larger worker type: the inventory's host variable (which beats
    group_vars/all.yml's ansible_memtotal_mb) sizes its services, not worker-1's memory."""
    small, large = _budget(rendered, "worker-1"), _budget(rendered, "worker-2")
    assert (small["node_memory_mb"], large["node_memory_mb"]) == (T2_LARGE_MB, M5_XLARGE_MB)
    ratio = M5_XLARGE_MB / T2_LARGE_MB
    for key in ("spark_worker_memory_mb", "ray_object_store_mb"):
        assert large[key] > small[key], key
        assert large[key] == pytest.approx(small[key] * ratio, abs=2), key  # the same shares
    assert large["spark_worker_memory_mb"] == int(M5_XLARGE_MB * 0.40)
    assert large["ray_object_store_mb"] == int(M5_XLARGE_MB * 0.15)
    reserve = 1024
    assert _on_worker(large) + reserve <= M5_XLARGE_MB, large
    assert large["spark_worker_memory_mb"] < M5_XLARGE_MB - 1024, large
    assert large["ray_object_store_mb"] < 0.3 * M5_XLARGE_MB, large


def test_spark_connect_executors_fit_the_smallest_worker(rendered):
    """The warm server's executors are sized as a worker offers: one larger worker never
    makes them too big for the others (worker-1, the first, is the smaller here)."""
    master = _budget(rendered, "master")
    memory = master["spark_connect_executor_memory_mb"]
    cores = master["spark_connect_executor_cores"]
    offers = {host: _budget(rendered, host) for host in WORKERS}
    assert memory <= min(o["spark_worker_memory_mb"] for o in offers.values())
    assert cores <= min(o["spark_worker_cores"] for o in offers.values())
    first = offers["worker-1"]
    assert (memory, cores) == (first["spark_worker_memory_mb"], first["spark_worker_cores"])
    assert memory < offers["worker-2"]["spark_worker_memory_mb"]  # not the larger worker's
    unit = (rendered / "master" / "spark-connect.service").read_text()
    assert f"--conf spark.executor.cores={cores} --conf spark.executor.memory={memory}m" in unit


def _tasks(role: str, kind: str = "tasks") -> list[dict]:
    return yaml.safe_load((ROOT / "playbooks" / "roles" / role / kind / "main.yml").read_text())


def _task(role: str, module: str) -> dict:
    """The role's one task using ``module``; its arguments, with ``loop``/``notify`` beside."""
    found = [t for t in _tasks(role) if module in t]
    assert len(found) == 1, (role, module, found)
    return {**found[0][module], **{k: v for k, v in found[0].items() if k != module}}


#: What the kit's sshd drop-in says, and nothing else (AllowUsers: root and Debian's image user)
SSHD_SETTINGS = {
    "PermitRootLogin": "prohibit-password",
    "PasswordAuthentication": "no",
    "KbdInteractiveAuthentication": "no",
    "MaxAuthTries": "3",
    "AllowUsers": "root admin",
    "X11Forwarding": "no",
    "AllowAgentForwarding": "no",
}


def _settings(text: str) -> dict[str, str]:
    lines = [line.split(None, 1) for line in text.splitlines()
             if line.strip() and not line.startswith("#")]  # fmt: skip
    assert all(len(words) == 2 for words in lines), lines
    settings = {key: value for key, value in lines}
    assert len(settings) == len(lines), lines  # no keyword twice
    return settings


def test_the_sshd_dropin_allows_keys_only_for_root_and_the_image_user(rendered):
    for host in NODES:
        assert _settings((rendered / host / "sshd-clusterkit.conf").read_text()) == SSHD_SETTINGS


def test_the_sshd_dropin_is_checked_whole_included_first_and_sshd_reloaded():
    template = _task("ssh", "ansible.builtin.template")
    assert template["dest"] == "{{ ssh_sshd_dropin }}" and template["notify"] == "Reload sshd"
    # the new drop-in in front of the main file, checked by sshd -t as one configuration
    assert 'cat "$1" {{ ssh_sshd_config }} > "$1.whole"' in template["validate"]
    assert '{{ ssh_sshd_command }} -t -f "$1.whole"' in template["validate"]
    include = _task("ssh", "ansible.builtin.lineinfile")
    assert include["line"] == "Include /etc/ssh/sshd_config.d/*.conf"
    assert include["insertbefore"] == "BOF" and include["notify"] == "Reload sshd"
    assert include["validate"] == "{{ ssh_sshd_command }} -t -f %s"
    (handler,) = _tasks("ssh", "handlers")
    assert handler["name"] == "Reload sshd"
    reload = handler["ansible.builtin.shell"]
    assert reload.startswith("{{ ssh_sshd_command }} -t &&")
    assert "systemctl reload ssh" in reload
    assert 'kill -HUP "$(cat {{ ssh_sshd_pid_file }})"' in reload
    defaults = yaml.safe_load((ROOT / "playbooks/roles/ssh/defaults/main.yml").read_text())
    assert defaults["ssh_sshd_dropin"] == "/etc/ssh/sshd_config.d/10-clusterkit.conf"


def _hostvars() -> dict[str, dict]:
    inventory = yaml.safe_load((ROOT / "inventory" / "example.yml").read_text())["all"]
    return {h: v for group in inventory["children"].values() for h, v in group["hosts"].items()}


def test_the_masters_key_is_authorized_on_the_workers_from_its_private_address_only():
    task = _task("ssh", "ansible.posix.authorized_key")
    assert task["loop"] == "{{ groups[ssh_from_group] }}"
    assert task["when"] == "inventory_hostname in groups[ssh_to_group]"
    defaults = yaml.safe_load((ROOT / "playbooks/roles/ssh/defaults/main.yml").read_text())
    assert (defaults["ssh_from_group"], defaults["ssh_to_group"]) == ("masters", "workers")
    options = Environment(undefined=StrictUndefined).from_string(task["key_options"])
    assert options.render(hostvars=_hostvars(), item="master") == 'from="10.0.1.10"'


def test_rays_metrics_port_is_dropped_from_every_interface_but_loopback(rendered):
    (rule,) = [{**t["ansible.builtin.iptables"], "loop": t.get("loop")} for t in _tasks("firewall")
               if t.get("ansible.builtin.iptables", {}).get("jump") == "DROP"]  # fmt: skip
    assert rule == {
        "chain": "INPUT",
        "action": "insert",  # first in the chain: before the cluster's networks are accepted
        "in_interface": "!lo",
        "protocol": "tcp",
        "destination_port": "{{ item }}",
        "jump": "DROP",
        "comment": "clusterkit loopback only",
        "loop": "{{ firewall_loopback_only_ports }}",
    }
    for host in NODES:
        ports = json.loads((rendered / host / "firewall.json").read_text())
        assert ports == {"loopback_only_ports": [6385]}
        # the port Ray's exporter listens on is the one dropped
        assert "--metrics-export-port 6385 " in (rendered / host / "ray.service").read_text()


def _sshd(*argv: str) -> subprocess.CompletedProcess[str]:
    """sshd where it finds its privilege separation folder (/run/sshd, which exists only
    while an sshd runs): here, or in a private mount namespace with a /run of its own."""
    wrap: tuple[str, ...] = ()
    if not Path("/run/sshd").is_dir():
        wrap = ("unshare", "--mount", "sh", "-c",
                'mount -t tmpfs none /run && mkdir /run/sshd && exec "$@"', "sh")  # fmt: skip
    return subprocess.run([*wrap, *argv], capture_output=True, text=True, timeout=30)


@pytest.mark.tools
@pytest.mark.skipif(not Path("/usr/sbin/sshd").exists(), reason="sshd missing")
@pytest.mark.skipif(not Path("/run/sshd").is_dir() and (sys.platform != "linux" or
                    os.geteuid() != 0), reason="sshd -t needs /run/sshd")  # fmt: skip
def test_sshd_accepts_the_dropin_and_its_settings_win(rendered, tmp_path: Path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "hk")],
                   check=True)  # fmt: skip
    main = tmp_path / "sshd_config"  # a main file that says the opposite of the drop-in
    opposite = ["PermitRootLogin yes", "PasswordAuthentication yes", "MaxAuthTries 6",
                "X11Forwarding yes", "AllowAgentForwarding yes"]  # fmt: skip
    main.write_text("\n".join([f"HostKey {tmp_path / 'hk'}", *opposite]) + "\n")
    dropin = tmp_path / "10-clusterkit.conf"
    dropin.write_text((rendered / "worker-1" / "sshd-clusterkit.conf").read_text())
    # the role's own check, as the template module runs it (%s: the new drop-in)
    validate = Environment().from_string(_task("ssh", "ansible.builtin.template")["validate"])
    check = validate.render(ssh_sshd_config=main, ssh_sshd_command="/usr/sbin/sshd")
    proc = _sshd(*shlex.split(check % dropin))
    assert proc.returncode == 0, proc.stderr
    whole = tmp_path / "whole"
    whole.write_text(dropin.read_text() + main.read_text())
    effective = _sshd("/usr/sbin/sshd", "-T", "-f", str(whole))
    assert effective.returncode == 0, effective.stderr
    lines = [line.split(" ", 1) for line in effective.stdout.splitlines()]
    values: dict[str, list[str]] = {}
    for key, value in lines:
        values.setdefault(key, []).append(value)
    assert values["permitrootlogin"][0] in ("prohibit-password", "without-password"), values
    assert values["passwordauthentication"] == ["no"] and values["maxauthtries"] == ["3"]
    assert values["x11forwarding"] == ["no"] and values["allowagentforwarding"] == ["no"]
    assert values["kbdinteractiveauthentication"] == ["no"]
    assert set(values["allowusers"]) == {"root", "admin"}
    # and the check fails a broken drop-in, which then is never written
    dropin.write_text(dropin.read_text() + "NoSuchKeyword yes\n")
    refused = _sshd(*shlex.split(check % dropin))
    assert refused.returncode != 0 and "NoSuchKeyword" in refused.stderr, refused.stderr
    assert not list(tmp_path.glob("*.whole"))  # its temporary whole file removed either way


def _guard_exec_start(unit: Path) -> list[str]:
    lines = [ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart=")]
    assert len(lines) == 1, unit
    words = shlex.split(lines[0].removeprefix("ExecStart="))
    assert words[1:3] == ["-m", "clusterkit.idle.guard"], words
    return words[3:]


def test_the_idle_guards_units_run_the_guard_as_it_parses_them(rendered):
    from clusterkit.idle.guard import _config_every

    master = rendered / "master"
    for host in WORKERS:  # the master only
        assert not (rendered / host / "clusterkit-idle.service").exists(), host
    timer = configparser.ConfigParser(strict=False)
    timer.read(master / "clusterkit-idle.timer")
    assert timer["Timer"]["OnUnitActiveSec"] == "1min"
    assert timer["Timer"]["Unit"] == "clusterkit-idle.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    oneshot = (master / "clusterkit-idle.service").read_text()
    assert "Type=oneshot" in oneshot and "[Install]" not in oneshot  # the timer starts it
    config, once, _ = _config_every(_guard_exec_start(master / "clusterkit-idle.service"))
    assert once
    assert (config.idle_minutes, config.action) == (60, "stop")
    # every worker's private address (it stops them, then the master)
    assert config.workers == ("10.0.2.10", "10.0.2.11")
    assert "--workers 10.0.2.10,10.0.2.11 " in oneshot
    assert str(config.ssh_key) == "/root/.ssh/id_ed25519"  # the ssh role's key of root
    assert config.spark_master_ui == "http://10.0.1.10:8080"
    assert config.ray_dashboard == "http://10.0.1.10:8265"
    assert config.private_cidr == "10.0.0.0/16"
    assert str(config.runs_dir) == "/var/lib/clusterkit/runs"
    assert str(config.ray_token_file) == "/etc/clusterkit/ray-token"
    loop_unit = master / "loop" / "clusterkit-idle.service"
    assert "Type=simple" in loop_unit.read_text()
    assert "WantedBy=multi-user.target" in loop_unit.read_text()
    config, once, every = _config_every(_guard_exec_start(loop_unit))
    assert not once and every == 60


def test_the_idle_guard_role_follows_the_spec():
    from clusterkit.core.spec import parse_spec
    from clusterkit.services.playbooks import playbook_vars

    tasks = _tasks("idle_guard")
    install, remove = (t for t in tasks if "block" in t)
    assert install["when"] == "idle_guard_minutes | int > 0"
    assert remove["when"] == "idle_guard_minutes | int == 0"  # off: the units go
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    assert site[-1]["hosts"] == "masters"
    assert [r["role"] for r in site[-1]["roles"]] == ["idle_guard"]  # last, on the master
    cases = {("aws", None): (60, "stop"), ("netns", None): (0, "record"),
             ("netns", 1): (1, "record"), ("aws", 0): (0, "stop")}  # fmt: skip
    for (provider, minutes), expected in cases.items():
        spec = parse_spec({"provider": provider, "idle_guard": {"idle_minutes": minutes}})
        variables = playbook_vars(spec, ClusterPaths(Path("/nonexistent")), python="/p",
                                  wheel=Path("/w.whl"))  # fmt: skip
        assert (variables["idle_guard_minutes"], variables["idle_guard_action"]) == expected


def test_the_nodes_get_torch_from_pytorchs_cpu_index():
    """torch is pinned as installed here (2.13.0+cpu): PyPI has no such file, so the python
    role's pip is given PyTorch's CPU index; pins without a local label need none."""
    from clusterkit.core.spec import parse_spec
    from clusterkit.services.playbooks import node_requirements, pip_extra_index_urls, playbook_vars

    pins = node_requirements()
    torch = [p for p in pins if p.startswith("torch==")]
    assert len(torch) == 1 and torch[0].startswith("torch==2.13.0"), pins
    assert any(p.startswith("ray[") and "train" in p for p in pins), pins
    assert pip_extra_index_urls(["torch==2.13.0+cpu", "numpy==2.1.0"]) == (
        "https://download.pytorch.org/whl/cpu")  # fmt: skip
    assert pip_extra_index_urls(["torch==2.13.0", "numpy==2.1.0"]) == ""
    variables = playbook_vars(parse_spec({"provider": "aws"}), ClusterPaths(Path("/nonexistent")),
                              python="/p", wheel=Path("/w.whl"))  # fmt: skip
    cpu_build = "+cpu" in torch[0]  # as installed here (the CPU build on the kit's machines)
    assert variables["python_pip_extra_index_url"] == (
        "https://download.pytorch.org/whl/cpu" if cpu_build else "")  # fmt: skip
    task = next(t for t in _tasks("python") if "ansible.builtin.pip" in t)
    # no extra_args: with them the pip module's check mode always says "changed"
    assert "extra_args" not in task["ansible.builtin.pip"], task
    assert "PIP_EXTRA_INDEX_URL" in task["environment"], task
