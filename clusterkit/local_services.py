"""Spark standalone (master + worker) and a Ray head as user processes on this machine.

Everything binds to 127.0.0.1: Spark through ``SPARK_LOCAL_IP`` and ``--host``; Ray through
``--node-ip-address 127.0.0.1`` together with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``. Without
that variable Ray on Linux replaces a loopback node address with the machine's own address,
and its GCS, raylet and agents then listen on every interface. With it, every Ray listener
(GCS, raylet, object manager, agents, client server, dashboard, metrics) is on loopback; the
tests check each port. Ray token authentication is on; Spark's REST submission is off.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pyspark

from clusterkit.daemons import Daemon, spawn
from clusterkit.preflight import Java, Sizing
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Endpoints:
    """How clients reach the services: what ``status`` prints and jobs are given."""

    spark_master_url: str
    spark_master_ui: str
    spark_worker_ui: str
    ray_address: str
    ray_dashboard: str
    ray_client: str

    @classmethod
    def for_spec(cls, spec: Spec, host: str = LOOPBACK) -> Endpoints:
        ports = spec.ports
        return cls(
            spark_master_url=f"spark://{host}:{ports.spark_master}",
            spark_master_ui=f"http://{host}:{ports.spark_master_ui}",
            spark_worker_ui=f"http://{host}:{ports.spark_worker_ui}",
            ray_address=f"{host}:{ports.ray_gcs}",
            ray_dashboard=f"http://{host}:{ports.ray_dashboard}",
            ray_client=f"ray://{host}:{ports.ray_client}",
        )


def spark_home() -> Path:
    """pyspark's bundled Spark distribution (bin/spark-class, jars/)."""
    return Path(pyspark.__file__).parent


def ray_executable() -> Path:
    """The ``ray`` command of this environment."""
    return Path(sys.executable).parent / "ray"


def ray_temp_dir(paths: ClusterPaths) -> Path:
    """A short temp folder for Ray: its Unix socket paths must stay under 108 bytes."""
    digest = hashlib.sha1(str(paths.root).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"ck-ray-{digest}"


def ensure_ray_token(paths: ClusterPaths) -> str:
    """The cluster's Ray token (made once, mode 0600)."""
    if not paths.ray_token.exists():
        paths.ray_token.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(paths.ray_token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    return paths.ray_token.read_text().strip()


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
    """spark-defaults.conf for the daemons: REST submission off, explicitly (CVE-2018-11770)."""
    conf_dir = paths.spark_dir / "conf"
    conf_dir.mkdir(parents=True, exist_ok=True)
    (paths.spark_dir / "work").mkdir(parents=True, exist_ok=True)
    defaults = conf_dir / "spark-defaults.conf"
    defaults.write_text(
        "# written by clusterkit up; do not edit (regenerated on every up)\n"
        "spark.master.rest.enabled  false\n"
        "spark.ui.reverseProxy      false\n"
        "spark.worker.cleanup.enabled true\n"
    )
    return defaults


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
        ensure_ray_token(paths)
        self.env = {**base_env, **spark_env(paths, java.home), **ray_client_env(paths)}
        self.spark_class = str(spark_home() / "bin" / "spark-class")

    def _spawn(self, name: str, argv: list[str]) -> Daemon:
        log = self.paths.logs / f"{name}.out"
        return spawn(name, argv, env=self.env, log=log, cwd=self.paths.root)

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
