"""Spark standalone (master + worker) and a Ray head as user processes on this machine.

Everything binds to 127.0.0.1: Spark through ``SPARK_LOCAL_IP`` and ``--host``; Ray through
``--node-ip-address 127.0.0.1`` together with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. Without
that variable Ray on Linux replaces a loopback node address with the machine's own address,
and its GCS, raylet and agents then listen on every interface. With it, every Ray listener
(GCS, raylet, object manager, agents, client server, dashboard, metrics) is on loopback; the
tests check each port. Ray token authentication is on; Spark's REST submission is off.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import pyspark

from clusterkit.core.errors import ClusterkitError, ServiceError
from clusterkit.core.files import ensure_secret, private_dir, write_json_atomic, write_text_atomic
from clusterkit.core.records import SHARED_MARKER, Daemon
from clusterkit.core.spec import Spec
from clusterkit.core.state import LOOPBACK, ClusterPaths, ClusterState, Endpoints
from clusterkit.exec import processes
from clusterkit.services import connect, preflight
from clusterkit.services.base import Provisioned, Stopped
from clusterkit.services.health import ServiceHealth, spark_master_alive, wait_healthy
from clusterkit.services.keeper_events import forgive_given_up, keeper_file, read_events
from clusterkit.services.preflight import Java, Sizing

Progress = Callable[[str], None]
#: How long ``down`` waits for the services' ports to be free once their processes ended.
PORTS_FREE_TIMEOUT_S = 15.0


def spark_home() -> Path:
    """pyspark's bundled Spark distribution (bin/spark-class, jars/)."""
    return Path(pyspark.__file__).parent


def ray_executable() -> Path:
    """The ``ray`` command of this environment."""
    return Path(sys.executable).parent / "ray"


def ray_temp_dir(paths: ClusterPaths) -> Path:
    """A short temp folder for Ray (its Unix socket paths must stay under 108 bytes), inside
    this user's 0700 folder ``/tmp/ck-UID``, checked to be theirs and not a symlink: Ray makes
    its own subfolders 0777, and a predictable name in /tmp could be made first by another."""
    digest = hashlib.sha1(str(paths.root).encode()).hexdigest()[:10]
    mine = private_dir(Path(tempfile.gettempdir()) / f"ck-{os.geteuid()}")
    return mine / f"ray-{digest}"


def ray_client_env(paths: ClusterPaths) -> dict[str, str]:
    """What any Ray process of this cluster (head, driver) needs in its environment."""
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(paths.ray_token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


def spark_env(paths: ClusterPaths, java_home: Path) -> dict[str, str]:
    """What the Spark daemons and drivers of this cluster need in their environment."""
    return {
        "JAVA_HOME": str(java_home),
        "SPARK_HOME": str(spark_home()),
        "SPARK_LOCAL_IP": LOOPBACK,
        "SPARK_CONF_DIR": str(paths.spark_dir / "conf"),
        "SPARK_LOG_DIR": str(paths.logs),
        "SPARK_WORKER_DIR": str(paths.spark_dir / "work"),
        "PYSPARK_PYTHON": sys.executable,
    }


def write_spark_conf(paths: ClusterPaths) -> Path:
    """spark-defaults.conf (mode 600) for the daemons and every driver of this cluster (they
    find it through ``SPARK_CONF_DIR``): RPC authentication on with the cluster's secret, so
    that no other local user can submit; REST submission off, explicitly (CVE-2018-11770); a
    UI that cannot kill jobs."""
    defaults = spark_defaults_file(paths)
    defaults.parent.mkdir(parents=True, exist_ok=True)
    (paths.spark_dir / "work").mkdir(parents=True, exist_ok=True)
    lines = ["# written by clusterkit up; do not edit (regenerated on every up)",
             *(f"{key}  {value}" for key, value in spark_security_conf(paths).items()),
             "spark.master.rest.enabled  false",
             "spark.ui.reverseProxy  false",
             "spark.worker.cleanup.enabled  true"]  # fmt: skip
    write_text_atomic(defaults, "\n".join(lines) + "\n", mode=0o600)
    return defaults


def spark_defaults_file(paths: ClusterPaths) -> Path:
    """The cluster's spark-defaults.conf (in ``SPARK_CONF_DIR``)."""
    return paths.spark_dir / "conf" / "spark-defaults.conf"


def spark_security_conf(paths: ClusterPaths) -> dict[str, str]:
    """Spark's RPC authentication with the cluster's secret (a 0600 file made once), and a
    UI that cannot kill jobs."""
    return {
        "spark.authenticate": "true",
        "spark.authenticate.secret": ensure_secret(paths.spark_secret),
        "spark.ui.killEnabled": "false",
    }


class Launcher:
    """Starts this cluster's daemons, one method each; every method returns at once."""

    def __init__(
        self,
        spec: Spec,
        paths: ClusterPaths,
        *,
        java: Java,
        sizing: Sizing,
        base_env: Mapping[str, str],
    ) -> None:
        self.spec, self.paths, self.sizing = spec, paths, sizing
        self.endpoints = Endpoints.for_spec(spec)
        self.properties = write_spark_conf(paths)
        ensure_secret(paths.ray_token)
        self.env = {**base_env, **spark_env(paths, java.home), **ray_client_env(paths)}
        self.spark_class = str(spark_home() / "bin" / "spark-class")

    def _spawn(self, name: str, argv: list[str], **env: str) -> Daemon:
        log = self.paths.logs / f"{name}.out"
        daemon = processes.spawn(name, argv, env={**self.env, **env}, log=log, cwd=self.paths.root)
        write_json_atomic(self.paths.pids / f"{name}.json", daemon.to_dict())
        return daemon

    def spark_master(self) -> Daemon:
        ports = self.spec.ports
        return self._spawn("spark-master", [
            self.spark_class, "org.apache.spark.deploy.master.Master",
            "--host", LOOPBACK, "--port", str(ports.spark_master),
            "--webui-port", str(ports.spark_master_ui),
            "--properties-file", str(self.properties),
        ])  # fmt: skip

    def spark_worker(self) -> Daemon:
        """Start it once the master is ALIVE: a registration sent earlier is dropped and
        retried only after Spark's backoff (about 15 s)."""
        ports, sizing = self.spec.ports, self.sizing
        return self._spawn("spark-worker", [
            self.spark_class, "org.apache.spark.deploy.worker.Worker",
            "--host", LOOPBACK, "--port", str(ports.spark_worker),
            "--webui-port", str(ports.spark_worker_ui),
            "--cores", str(sizing.worker_cores), "--memory", f"{sizing.worker_memory_mb}m",
            "--work-dir", str(self.paths.spark_dir / "work"),
            "--properties-file", str(self.properties),
            self.endpoints.spark_master_url,
        ])  # fmt: skip

    def spark_connect(self) -> Daemon:
        """The Spark Connect server, on loopback, asking for the cluster's token (in its
        environment); its executors sized as the jobs' are. Start it once the worker is."""
        sizing = self.sizing
        conf = {
            **connect.server_conf(port=self.spec.ports.spark_connect, driver_host=LOOPBACK),
            "spark.executor.cores": str(sizing.worker_cores),
            "spark.executor.memory": f"{sizing.worker_memory_mb}m",
            "spark.driver.memory": f"{sizing.driver_memory_mb}m",
        }
        argv = connect.server_argv(self.spark_class, master_url=self.endpoints.spark_master_url,
                                   conf=conf, properties=str(self.properties))  # fmt: skip
        token = ensure_secret(self.paths.spark_connect_token)
        return self._spawn("spark-connect", argv, SPARK_CONNECT_AUTHENTICATE_TOKEN=token,
                           **{SHARED_MARKER: connect.SHARED})  # fmt: skip

    def keeper(self) -> Daemon:
        """The keeper (:mod:`clusterkit.services.keeper`): it starts again what ends."""
        return self._spawn(KEEPER, [sys.executable, "-m", "clusterkit.services.keeper",
                                    "--state-dir", str(self.paths.root)])  # fmt: skip

    def ray_head(self) -> Daemon:
        ports, sizing = self.spec.ports, self.sizing
        return self._spawn("ray-head", [
            str(ray_executable()), "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address", LOOPBACK, "--port", str(ports.ray_gcs),
            "--dashboard-host", LOOPBACK, "--dashboard-port", str(ports.ray_dashboard),
            "--ray-client-server-port", str(ports.ray_client),
            "--node-manager-port", str(ports.ray_node_manager),
            "--object-manager-port", str(ports.ray_object_manager),
            "--dashboard-agent-listen-port", str(ports.ray_dashboard_agent),
            "--dashboard-agent-grpc-port", str(ports.ray_dashboard_agent_grpc),
            "--runtime-env-agent-port", str(ports.ray_runtime_env_agent),
            "--metrics-export-port", str(ports.ray_metrics_export),
            "--min-worker-port", str(ports.ray_min_worker),
            "--max-worker-port", str(ports.ray_max_worker),
            "--num-cpus", str(sizing.ray_cpus),
            "--object-store-memory", str(sizing.ray_object_store_bytes),
            "--temp-dir", str(ray_temp_dir(self.paths)), "--log-style", "record",
        ])  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """What the local services will be, checked: the Java found and their sizes."""

    java: Java
    sizing: Sizing


def _log_tail(path: str, lines: int = 5) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def exited(daemons: list[Daemon]) -> list[str]:
    """A line for each daemon that is no longer running, with the end of its log."""
    return [f"{d.name} (pid {d.pid}) exited; its log {d.log} ends: {_log_tail(d.log)}"
            for d in daemons if not processes.is_alive(d)]  # fmt: skip


KEEPER = "keeper"


def keeper_daemon(paths: ClusterPaths) -> Daemon | None:
    """The keeper, by its pid file, or None."""
    try:
        return Daemon.from_dict(json.loads((paths.pids / f"{KEEPER}.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def keeper_alive(paths: ClusterPaths) -> bool:
    daemon = keeper_daemon(paths)
    return daemon is not None and processes.is_alive(daemon)


def stop_keeper(paths: ClusterPaths) -> list[int]:
    """Stop the keeper (if it runs) and wait until it has; its pid. Only its own process:
    the daemons it started again are its children, and stay."""
    daemon = keeper_daemon(paths)
    process = processes.process_of(daemon) if daemon is not None else None
    return processes.terminate_all([process], grace_s=5.0) if process is not None else []


def pid_file_daemons(paths: ClusterPaths, say: Progress | None = None) -> list[Daemon]:
    """The daemons the state folder's pid files name (one written as each is started, so a
    crash before ``cluster.json`` recorded it still leaves it findable); one that cannot be
    read is skipped (and said, with ``say``)."""
    found: list[Daemon] = []
    for pid_file in sorted(paths.pids.glob("*.json")) if paths.pids.is_dir() else []:
        try:
            found.append(Daemon.from_dict(json.loads(pid_file.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            if say is not None:
                say(f"{pid_file}: unreadable ({exc}); skipped")
    return found


def _stop_verified(spec: Spec, paths: ClusterPaths, kept: list[int],
                   daemons: list[Daemon]) -> Stopped:  # fmt: skip
    """With the keeper stopped already (its pid in ``kept``: it would start again what is
    being stopped), stop ``daemons`` (their whole trees); check that the spec's ports are
    free, remove the pid files and Ray's temp folder. ServiceError names every port still
    held and by what."""
    pids = kept + processes.stop_all([d for d in daemons if d.name != KEEPER])
    ports = sorted(spec.ports.fixed().values())
    if not processes.wait_until(lambda: not preflight.listening_ports(ports),
                                timeout_s=PORTS_FREE_TIMEOUT_S):  # fmt: skip
        holders = ", ".join(f"{p} ({preflight.port_holder(p)})"
                            for p in preflight.listening_ports(ports))  # fmt: skip
        raise ServiceError(f"cluster {spec.name!r} stopped, but ports are still listening: "
                           f"{holders}; stop those processes by hand")  # fmt: skip
    shutil.rmtree(paths.pids, ignore_errors=True)
    shutil.rmtree(ray_temp_dir(paths), ignore_errors=True)
    return Stopped(pids, ports)


class LocalServices:
    """The local provider's services: Spark's master and worker and Ray's head, started as
    this machine's processes (:class:`Launcher`), recorded in the cluster's state by pid and
    create time, and stopped for sure (every process of their trees, their ports free)."""

    def runs_dir(self, paths: ClusterPaths) -> str:
        """The run folders: in the cluster's state folder, on this machine."""
        return str(paths.runs)

    def plan(self, spec: Spec) -> dict[str, object]:
        """What ``up --dry-run`` shows: the Java found and the services' sizes, checked with
        the ports (raises the error ``up`` would raise)."""
        checked = self.check_machine(spec)
        return {"java_home": str(checked.java.home), "java_major": checked.java.major,
                "sizing": asdict(checked.sizing)}  # fmt: skip

    def check_machine_sizes(self, spec: Spec) -> Plan:
        """Java and sizes (not the ports: some of the cluster's own hold theirs)."""
        return Plan(preflight.find_java(spec.versions.java_min), preflight.size_services(spec))

    def check_machine(self, spec: Spec) -> Plan:
        """Java, sizes and free ports checked; raises the error ``up`` would raise."""
        plan = self.check_machine_sizes(spec)
        preflight.check_ports(spec)
        return plan

    def start(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
              timeout_s: float) -> None:  # fmt: skip
        """Start the services; the state (saved as each process starts, so that ``down``
        can stop them after an interrupted ``up``) records them. Returns once the worker is
        started; ServiceError names a service that exited while starting."""
        plan = self.check_machine(state.spec)
        sizing = plan.sizing
        paths.logs.mkdir(parents=True, exist_ok=True)
        say(f"starting Spark master + worker ({sizing.worker_cores} cores, "
            f"{sizing.worker_memory_mb} MiB) and Ray head ({sizing.ray_cpus} CPUs)")  # fmt: skip
        launcher = Launcher(state.spec, paths, java=plan.java, sizing=sizing,
                            base_env=os.environ)  # fmt: skip
        keeper_file(paths).unlink(missing_ok=True)  # its counts start again with it
        state.java_home, state.ray_temp_dir = str(plan.java.home), str(ray_temp_dir(paths))
        state.daemons = [launcher.spark_master(), launcher.ray_head()]
        state.save(paths)
        # the worker registers once the master is ALIVE (an earlier registration is dropped
        # and retried only after Spark's backoff, about 15 s)
        ui = state.endpoints.spark_master_ui

        def master_alive(_: list[ServiceHealth]) -> list[str]:
            return [] if spark_master_alive(ui) else [f"see {paths.logs / 'spark-master.out'}"]

        wait_healthy(lambda: [], master_alive,
                     what=f"Spark master {state.endpoints.spark_master_url}",
                     ready="ALIVE", timeout_s=timeout_s, say=say, interval_s=0.1,
                     failed=lambda: self.failed(state))  # fmt: skip
        state.daemons += [launcher.spark_worker(), launcher.spark_connect()]
        state.save(paths)
        launcher.keeper()  # from now on, what ends is started again

    def _current(self, state: ClusterState) -> list[Daemon]:
        """The daemons as the state file says now (the keeper replaces those it restarts);
        the given state's when there is no file."""
        fresh = ClusterState.load(ClusterPaths(Path(state.state_dir)))
        return fresh.daemons if fresh is not None else state.daemons

    def check(self, state: ClusterState, rows: list[ServiceHealth]) -> list[str]:
        """What is wrong besides what the services' APIs say: processes that exited, Spark
        started without RPC authentication (by an older kit: `up` restarts it with it)."""
        found = [f"{d.name} (pid {d.pid}) exited" for d in self._current(state)
                 if not processes.is_alive(d)]  # fmt: skip
        defaults = spark_defaults_file(ClusterPaths(Path(state.state_dir)))
        with contextlib.suppress(OSError):
            if "spark.authenticate" not in defaults.read_text():
                found.append("Spark runs without RPC authentication (started by an older kit)")
        return found

    def failed(self, state: ClusterState) -> str | None:
        """What no waiting mends: processes that exited, with the end of their logs (with the
        keeper running, only those it gave up on: it starts the others again)."""
        paths = ClusterPaths(Path(state.state_dir))
        daemons = self._current(state)
        if keeper_alive(paths):
            given_up = set(read_events(paths)["given_up"])
            daemons = [d for d in daemons if d.name in given_up]
        return "; ".join(exited(daemons)) or None

    def stop(self, state: ClusterState, paths: ClusterPaths, *, say: Progress) -> Stopped:
        """Stop every process the services started (their whole trees), verify their ports
        are free and remove Ray's temp folder. ServiceError names a port still held. With
        nothing started, there is nothing to stop or verify."""
        kept = stop_keeper(paths)  # first: what it starts meanwhile is then in the files
        daemons = self._current(state)
        known = {d.pid for d in daemons}
        started = daemons + [d for d in pid_file_daemons(paths, say)
                             if d.pid not in known and d.name != KEEPER]  # fmt: skip
        if not started and not kept:
            return Stopped()
        stopped = _stop_verified(state.spec, paths, kept, started)
        if state.ray_temp_dir:  # where an older kit put it, too
            shutil.rmtree(state.ray_temp_dir, ignore_errors=True)
        state.daemons = []
        return stopped

    def stop_found(self, spec: Spec, paths: ClusterPaths, *, say: Progress) -> Stopped:
        """Without a readable ``cluster.json``: stop the daemons its pid files name (each
        checked by create time, so a reused pid is left alone) and check the spec's ports.
        ServiceError names every port still held and by what."""
        kept = stop_keeper(paths)  # first: what it starts meanwhile is then in the files
        stopped = _stop_verified(spec, paths, kept, pid_file_daemons(paths, say))
        say(f"stopped {len(stopped.pids)} processes found by the pid files in {paths.pids}")
        return stopped

    def repair(self, state: ClusterState, paths: ClusterPaths, *, say: Progress,
               timeout_s: float) -> str:  # fmt: skip
        """Start again only what ended, through a fresh keeper (one it gave up on included):
        nothing that runs is stopped, so runs on it go on; what was done. With nothing of the
        cluster left, all of it."""
        had_keeper = bool(stop_keeper(paths))  # first: it may be starting something now
        if not any(processes.is_alive(d) for d in self._current(state)):
            self.start(state, paths, say=say, timeout_s=timeout_s)
            return "restarted"
        forgive_given_up(paths)  # `up` is the operator's word to try those again
        plan = self.check_machine_sizes(state.spec)
        Launcher(
            state.spec, paths, java=plan.java, sizing=plan.sizing, base_env=os.environ
        ).keeper()  # it starts again what ended, within a second
        return (
            "the keeper starts again what ended"
            if had_keeper
            else "the keeper had ended: started it again; it starts again what ended"
        )

    def provision(self, state: ClusterState, paths: ClusterPaths, *,
                  say: Progress) -> Provisioned:  # fmt: skip
        raise ClusterkitError(
            f"cluster {state.name!r} is local: there is nothing to provision (its services "
            f"are this machine's processes; `clusterkit up` restarts them)"
        )

    def job_env(self, state: ClusterState, paths: ClusterPaths) -> dict[str, str]:
        """What a job's driver needs: the cluster's Spark settings, Ray token and Spark Connect
        token (by the files' paths: the tokens are read by the jobs, never passed on)."""
        java_home = Path(state.java_home or preflight.find_java(state.spec.versions.java_min).home)
        return {**spark_env(paths, java_home), **ray_client_env(paths),
                "CLUSTERKIT_SPARK_CONNECT_TOKEN_FILE": str(paths.spark_connect_token)}  # fmt: skip
